-- 0004_sessions: brokered sessions (offer/answer/trickle) and per-peer event streams.

CREATE TABLE sessions (
    id               TEXT    NOT NULL PRIMARY KEY,  -- 128 random bits, URL-safe
    caller           TEXT    NOT NULL REFERENCES peers(id) ON DELETE CASCADE,
    callee           TEXT    NOT NULL REFERENCES peers(id) ON DELETE CASCADE,
    mode             TEXT    NOT NULL CHECK (mode IN ('auto', 'p2p', 'relay')),
    description      TEXT    CHECK (description IS NULL OR length(description) <= 256),
    state            TEXT    NOT NULL CHECK (state IN ('offered', 'answered', 'closed', 'expired')),
    offer            TEXT    NOT NULL,
    answer           TEXT,
    version          INTEGER NOT NULL DEFAULT 1,    -- the ETag; grows with every change
    created_at       INTEGER NOT NULL,
    updated_at       INTEGER NOT NULL,
    offer_expires_at INTEGER NOT NULL               -- an offer nobody answered by then expires
) STRICT;

CREATE INDEX sessions_by_caller ON sessions(caller, created_at);
CREATE INDEX sessions_by_callee ON sessions(callee, created_at);
CREATE INDEX sessions_pending ON sessions(state, offer_expires_at);

-- Durable events, one stream per peer: kept until the peer has seen them (a later cursor)
-- or they expire. The id is the stream cursor (SSE id, long-poll `after`).
CREATE TABLE events (
    id         INTEGER PRIMARY KEY AUTOINCREMENT,
    peer_id    TEXT    NOT NULL REFERENCES peers(id) ON DELETE CASCADE,
    type       TEXT    NOT NULL CHECK (type IN ('offer', 'answer', 'candidates', 'closed', 'expired')),
    session_id TEXT,
    data       TEXT    NOT NULL,  -- JSON
    created_at INTEGER NOT NULL,
    expires_at INTEGER NOT NULL
) STRICT;

CREATE INDEX events_by_peer ON events(peer_id, id);
CREATE INDEX events_by_expiry ON events(expires_at);

CREATE VIEW sessions_overview AS
SELECT id, caller, callee, mode, state, description,
       datetime(created_at, 'unixepoch') AS created, datetime(updated_at, 'unixepoch') AS updated,
       length(offer) AS offer_bytes, length(answer) AS answer_bytes
  FROM sessions;

CREATE VIEW events_pending AS
SELECT peer_id, count(*) AS events, min(id) AS oldest_id, datetime(min(created_at), 'unixepoch') AS oldest
  FROM events GROUP BY peer_id;
