-- 0003_acl: who may reach whom.
--
-- Peers that share a group may reach each other (unless `--acl open`, where everyone may).
-- Rules add to that: 'allow' opens a direction between a peer or group and another, 'deny'
-- closes one and beats every allow and every shared group. Rules are directional: FROM may
-- reach TO (look up, call); a callee answers within the session it was offered.
CREATE TABLE acl_rules (
    id         INTEGER PRIMARY KEY AUTOINCREMENT,
    action     TEXT    NOT NULL CHECK (action IN ('allow', 'deny')),
    from_kind  TEXT    NOT NULL CHECK (from_kind IN ('peer', 'group')),
    from_name  TEXT    NOT NULL CHECK (length(from_name) BETWEEN 1 AND 64 AND from_name NOT GLOB '*[^A-Za-z0-9._-]*'),
    to_kind    TEXT    NOT NULL CHECK (to_kind IN ('peer', 'group')),
    to_name    TEXT    NOT NULL CHECK (length(to_name) BETWEEN 1 AND 64 AND to_name NOT GLOB '*[^A-Za-z0-9._-]*'),
    created_at INTEGER NOT NULL,
    UNIQUE (action, from_kind, from_name, to_kind, to_name)
) STRICT;

CREATE INDEX acl_rules_from ON acl_rules(from_kind, from_name);

CREATE VIEW acl_overview AS
SELECT id, action, from_kind || ':' || from_name AS "from", to_kind || ':' || to_name AS "to",
       datetime(created_at, 'unixepoch') AS created
  FROM acl_rules ORDER BY id;
