-- 0005_streams: live streams the media edge ingests (RTP over UDP) and plays out (WHEP),
-- and its viewers: the live ones and one row per ended viewer.

CREATE TABLE streams (
    name        TEXT    NOT NULL PRIMARY KEY
                        CHECK (length(name) BETWEEN 1 AND 64 AND name NOT GLOB '*[^A-Za-z0-9._-]*'),
    video_port  INTEGER CHECK (video_port IS NULL OR video_port BETWEEN 1 AND 65535),
    audio_port  INTEGER CHECK (audio_port IS NULL OR audio_port BETWEEN 1 AND 65535),
    -- hex SHA-256 of the optional bearer token viewers must present (never the token)
    token_sha256 TEXT   CHECK (token_sha256 IS NULL OR (length(token_sha256) = 64 AND token_sha256 NOT GLOB '*[^0-9a-f]*')),
    created_at  INTEGER NOT NULL,
    CHECK (video_port IS NOT NULL OR audio_port IS NOT NULL),
    CHECK (video_port IS NULL OR audio_port IS NULL OR video_port <> audio_port)
) STRICT;

CREATE UNIQUE INDEX streams_video_port ON streams(video_port) WHERE video_port IS NOT NULL;
CREATE UNIQUE INDEX streams_audio_port ON streams(audio_port) WHERE audio_port IS NOT NULL;

-- Viewers playing right now; the media edge replaces the rows every few seconds.
CREATE TABLE media_viewers (
    id             TEXT    NOT NULL PRIMARY KEY,
    stream         TEXT    NOT NULL,
    remote_address TEXT,              -- ip:port once ICE has picked one
    state          TEXT    NOT NULL,  -- 'ice', 'dtls', 'playing'
    started_at     INTEGER NOT NULL,
    packets_sent   INTEGER NOT NULL DEFAULT 0,
    bytes_sent     INTEGER NOT NULL DEFAULT 0,
    nacks          INTEGER NOT NULL DEFAULT 0,
    retransmitted  INTEGER NOT NULL DEFAULT 0,
    plis           INTEGER NOT NULL DEFAULT 0,
    packets_lost   INTEGER NOT NULL DEFAULT 0,  -- from the viewer's receiver reports
    jitter         INTEGER NOT NULL DEFAULT 0,  -- video, RTP timestamp units
    updated_at     INTEGER NOT NULL
) STRICT;

-- One row per ended viewer.
CREATE TABLE media_viewer_history (
    id             INTEGER PRIMARY KEY AUTOINCREMENT,
    viewer         TEXT    NOT NULL,
    stream         TEXT    NOT NULL,
    remote_address TEXT,
    started_at     INTEGER NOT NULL,
    ended_at       INTEGER NOT NULL,
    end_reason     TEXT    NOT NULL,  -- 'deleted', 'consent', 'ice-timeout', 'dtls-failed', 'stream-removed', 'shutdown'
    packets_sent   INTEGER NOT NULL DEFAULT 0,
    bytes_sent     INTEGER NOT NULL DEFAULT 0,
    nacks          INTEGER NOT NULL DEFAULT 0,
    retransmitted  INTEGER NOT NULL DEFAULT 0,
    plis           INTEGER NOT NULL DEFAULT 0,
    packets_lost   INTEGER NOT NULL DEFAULT 0
) STRICT;

CREATE INDEX media_viewer_history_stream ON media_viewer_history(stream, ended_at);

CREATE VIEW streams_overview AS
SELECT s.name, s.video_port, s.audio_port, s.token_sha256 IS NOT NULL AS token_required,
       (SELECT count(*) FROM media_viewers v WHERE v.stream = s.name) AS viewers,
       (SELECT coalesce(sum(bytes_sent), 0) FROM media_viewers v WHERE v.stream = s.name)
     + (SELECT coalesce(sum(bytes_sent), 0) FROM media_viewer_history h WHERE h.stream = s.name) AS bytes_sent,
       (SELECT coalesce(sum(nacks), 0) FROM media_viewers v WHERE v.stream = s.name)
     + (SELECT coalesce(sum(nacks), 0) FROM media_viewer_history h WHERE h.stream = s.name) AS nacks,
       (SELECT coalesce(sum(plis), 0) FROM media_viewers v WHERE v.stream = s.name)
     + (SELECT coalesce(sum(plis), 0) FROM media_viewer_history h WHERE h.stream = s.name) AS plis,
       datetime(s.created_at, 'unixepoch') AS created
  FROM streams s;

CREATE VIEW media_viewers_overview AS
SELECT id, stream, remote_address, state, datetime(started_at, 'unixepoch') AS started,
       packets_sent, bytes_sent, nacks, retransmitted, plis, packets_lost, jitter
  FROM media_viewers;
