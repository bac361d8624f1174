-- 0002_turn: static TURN users and relay usage.

-- Static long-term-credential users (RFC 8489 §9.2). Only the long-term key is kept:
-- hex MD5(name ":" realm ":" password) — what coturn's turnadmin -k stores — never the
-- password. A key is tied to its realm; changing --realm needs the users' passwords again.
CREATE TABLE turn_users (
    name       TEXT    NOT NULL,
    realm      TEXT    NOT NULL,
    key_md5    TEXT    NOT NULL CHECK (length(key_md5) = 32 AND key_md5 NOT GLOB '*[^0-9a-f]*'),
    created_at INTEGER NOT NULL,
    PRIMARY KEY (name, realm),
    CHECK (length(name) BETWEEN 1 AND 128 AND instr(name, ':') = 0)
) STRICT;

-- One row per ended allocation: who relayed what, from where, for how long.
CREATE TABLE relay_usage (
    id               INTEGER PRIMARY KEY AUTOINCREMENT,
    username         TEXT    NOT NULL,
    realm            TEXT    NOT NULL,
    client_address   TEXT    NOT NULL,  -- ip:port as the relay saw it
    client_transport TEXT    NOT NULL CHECK (client_transport IN ('udp', 'tcp', 'tls')),
    relayed_address  TEXT    NOT NULL,  -- ip:port (both, comma-separated, for dual-stack)
    started_at       INTEGER NOT NULL,
    ended_at         INTEGER NOT NULL,
    end_reason       TEXT    NOT NULL,  -- 'expired', 'refresh-0', 'disconnected', 'shutdown'
    packets_to_peer  INTEGER NOT NULL DEFAULT 0,
    bytes_to_peer    INTEGER NOT NULL DEFAULT 0,
    packets_to_client INTEGER NOT NULL DEFAULT 0,
    bytes_to_client  INTEGER NOT NULL DEFAULT 0
) STRICT;

CREATE INDEX relay_usage_user_time ON relay_usage(username, started_at);
CREATE INDEX relay_usage_end_time ON relay_usage(ended_at);

-- Allocations that are live right now; the relay replaces the rows as they change.
CREATE TABLE relay_allocations (
    id               TEXT    NOT NULL PRIMARY KEY,
    username         TEXT    NOT NULL,
    realm            TEXT    NOT NULL,
    client_address   TEXT    NOT NULL,
    client_transport TEXT    NOT NULL,
    relayed_address  TEXT    NOT NULL,
    started_at       INTEGER NOT NULL,
    expires_at       INTEGER NOT NULL
) STRICT;

CREATE VIEW relay_usage_overview AS
SELECT id, username, client_address, client_transport, relayed_address,
       datetime(started_at, 'unixepoch') AS started,
       datetime(ended_at, 'unixepoch')   AS ended,
       ended_at - started_at             AS seconds,
       end_reason,
       packets_to_peer, bytes_to_peer, packets_to_client, bytes_to_client
  FROM relay_usage;

CREATE VIEW relay_usage_by_user AS
SELECT username, count(*) AS allocations,
       sum(bytes_to_peer) AS bytes_to_peer, sum(bytes_to_client) AS bytes_to_client,
       datetime(max(ended_at), 'unixepoch') AS last_ended
  FROM relay_usage GROUP BY username;

CREATE VIEW relay_allocations_live AS
SELECT id, username, client_address, client_transport, relayed_address,
       datetime(started_at, 'unixepoch') AS started,
       datetime(expires_at, 'unixepoch') AS expires
  FROM relay_allocations;
