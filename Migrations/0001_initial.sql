-- 0001_initial: peer registry, login tokens, audit log, admin views.
--
-- Times are INTEGER Unix seconds (UTC); the *_overview / recent_* views show them as
-- 'YYYY-MM-DD HH:MM:SS' for people reading the live file with the sqlite3 CLI.
-- Secrets are never stored: peers.key_hash and login_tokens.token_hash hold hashes only.

CREATE TABLE peers (
    id             TEXT    NOT NULL PRIMARY KEY
                   CHECK (length(id) BETWEEN 1 AND 64 AND id NOT GLOB '*[^A-Za-z0-9._-]*'),
    key_hash       TEXT    NOT NULL,
    disabled       INTEGER NOT NULL DEFAULT 0 CHECK (disabled IN (0, 1)),
    created_at     INTEGER NOT NULL,
    key_changed_at INTEGER NOT NULL,
    last_login_at  INTEGER,
    last_seen_at   INTEGER
) STRICT;

CREATE TABLE peer_groups (
    peer_id    TEXT NOT NULL REFERENCES peers(id) ON DELETE CASCADE,
    group_name TEXT NOT NULL
               CHECK (length(group_name) BETWEEN 1 AND 64 AND group_name NOT GLOB '*[^A-Za-z0-9._-]*'),
    PRIMARY KEY (peer_id, group_name)
) STRICT, WITHOUT ROWID;

CREATE INDEX peer_groups_by_group ON peer_groups(group_name, peer_id);

CREATE TABLE login_tokens (
    token_hash   TEXT    NOT NULL PRIMARY KEY,
    peer_id      TEXT    NOT NULL REFERENCES peers(id) ON DELETE CASCADE,
    created_at   INTEGER NOT NULL,
    expires_at   INTEGER NOT NULL,
    source       TEXT,
    last_used_at INTEGER
) STRICT;

CREATE INDEX login_tokens_by_peer ON login_tokens(peer_id);
CREATE INDEX login_tokens_by_expiry ON login_tokens(expires_at);

-- Disabling a peer or changing its key revokes its tokens, whoever makes the change
-- (the CLI, the HTTP API, or an admin's UPDATE in sqlite3).
CREATE TRIGGER peers_revoke_tokens
AFTER UPDATE OF disabled, key_hash ON peers
WHEN NEW.disabled = 1 OR NEW.key_hash IS NOT OLD.key_hash
BEGIN
    DELETE FROM login_tokens WHERE peer_id = NEW.id;
END;

-- Append-only history. peer_id is not a foreign key: entries outlive the peer they name.
CREATE TABLE audit_log (
    id      INTEGER PRIMARY KEY AUTOINCREMENT,
    at      INTEGER NOT NULL,
    actor   TEXT    NOT NULL,  -- 'cli', 'http', 'system'
    action  TEXT    NOT NULL,  -- e.g. 'peer.add', 'peer.disable', 'login.ok', 'login.fail'
    peer_id TEXT,
    source  TEXT,              -- client address for network actions
    detail  TEXT               -- JSON object with anything else worth keeping
) STRICT;

CREATE INDEX audit_log_by_peer ON audit_log(peer_id, at);
CREATE INDEX audit_log_by_action ON audit_log(action, at);

CREATE VIEW peers_overview AS
SELECT p.id,
       CASE p.disabled WHEN 1 THEN 'disabled' ELSE 'enabled' END           AS status,
       (SELECT group_concat(group_name, ',')
          FROM (SELECT group_name FROM peer_groups g
                 WHERE g.peer_id = p.id ORDER BY group_name))               AS groups,
       datetime(p.created_at, 'unixepoch')                                  AS created,
       datetime(p.key_changed_at, 'unixepoch')                              AS key_changed,
       datetime(p.last_login_at, 'unixepoch')                               AS last_login,
       datetime(p.last_seen_at, 'unixepoch')                                AS last_seen,
       (SELECT count(*) FROM login_tokens t
         WHERE t.peer_id = p.id AND t.expires_at > unixepoch())             AS live_tokens
  FROM peers p;

CREATE VIEW group_members AS
SELECT g.group_name AS group_name, g.peer_id AS peer_id,
       CASE p.disabled WHEN 1 THEN 'disabled' ELSE 'enabled' END AS status
  FROM peer_groups g JOIN peers p ON p.id = g.peer_id;

CREATE VIEW recent_audit AS
SELECT id, datetime(at, 'unixepoch') AS at, actor, action, peer_id, source, detail
  FROM audit_log
 ORDER BY id DESC
 LIMIT 200;

CREATE VIEW login_failures_24h AS
SELECT peer_id, source, count(*) AS failures, datetime(max(at), 'unixepoch') AS last_failure
  FROM audit_log
 WHERE action = 'login.fail' AND at > unixepoch() - 86400
 GROUP BY peer_id, source
 ORDER BY failures DESC;
