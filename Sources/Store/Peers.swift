import Foundation
import GRDB

/// Peer is one row of the registry as the rest of Switchboard sees it (never the key hash).
package struct Peer: Sendable, Equatable, Codable {
    package var id: String
    package var groups: [String]
    package var disabled: Bool
    package var createdAt: Date
    package var keyChangedAt: Date
    package var lastLoginAt: Date?
    package var lastSeenAt: Date?
}

/// Who made a change, as written to the audit log.
package enum Actor: String, Sendable {
    case cli
    case http
    case system
}

extension SwitchboardDatabase {
    /// Adds a peer with a new key and returns the key; only its hash is stored.
    /// The peer, its groups and the audit entry are written in one transaction.
    package func addPeer(_ id: PeerID, groups: [GroupName] = [], actor: Actor = .cli) throws -> PeerKey {
        let key = PeerKey.generate()
        let hash = KeyHash.make(for: key)
        let now = unixNow
        let groupNames = Set(groups.map(\.rawValue)).sorted()
        try writeWaiting { db in
            if try Self.exists(db, id) { throw StoreError.peerExists(id.rawValue) }
            try db.cachedStatement(sql: """
                    INSERT INTO peers (id, key_hash, disabled, created_at, key_changed_at)
                    VALUES (?, ?, 0, ?, ?)
                    """).execute(arguments: [id.rawValue, hash, now, now])
            for group in groupNames {
                try db.cachedStatement(sql: "INSERT INTO peer_groups (peer_id, group_name) VALUES (?, ?)").execute(arguments: [id.rawValue, group])
            }
            try Self.audit(db, at: now, actor: actor, action: "peer.add", peer: id,
                           detail: ["groups": groupNames.joined(separator: ",")])
        }
        return key
    }

    /// Replaces a peer's key and returns the new one. Its login tokens are revoked
    /// (by the `peers_revoke_tokens` trigger).
    package func rotateKey(_ id: PeerID, actor: Actor = .cli) throws -> PeerKey {
        let key = PeerKey.generate()
        let hash = KeyHash.make(for: key)
        let now = unixNow
        try writeWaiting { db in
            try db.cachedStatement(sql: "UPDATE peers SET key_hash = ?, key_changed_at = ? WHERE id = ?").execute(arguments: [hash, now, id.rawValue])
            guard db.changesCount == 1 else { throw StoreError.peerNotFound(id.rawValue) }
            try Self.audit(db, at: now, actor: actor, action: "peer.rotate-key", peer: id)
        }
        return key
    }

    /// Disables or enables a peer. Disabling revokes its login tokens.
    /// Returns false when the peer was already in that state (nothing is written then).
    @discardableResult
    package func setDisabled(_ id: PeerID, _ disabled: Bool, actor: Actor = .cli) throws -> Bool {
        let now = unixNow
        return try writeWaiting { db in
            guard let current = try Bool.fetchOne(db.cachedStatement(sql: "SELECT disabled FROM peers WHERE id = ?"), arguments: [id.rawValue])
            else { throw StoreError.peerNotFound(id.rawValue) }
            guard current != disabled else { return false }
            try db.cachedStatement(sql: "UPDATE peers SET disabled = ? WHERE id = ?").execute(arguments: [disabled, id.rawValue])
            try Self.audit(db, at: now, actor: actor,
                           action: disabled ? "peer.disable" : "peer.enable", peer: id)
            return true
        }
    }

    /// Removes a peer with its groups and tokens; its audit history stays.
    package func removePeer(_ id: PeerID, actor: Actor = .cli) throws {
        let now = unixNow
        try writeWaiting { db in
            try db.cachedStatement(sql: "DELETE FROM peers WHERE id = ?").execute(arguments: [id.rawValue])
            guard db.changesCount == 1 else { throw StoreError.peerNotFound(id.rawValue) }
            try Self.audit(db, at: now, actor: actor, action: "peer.remove", peer: id)
        }
    }

    /// One peer, or nil.
    package func peer(_ id: PeerID) throws -> Peer? {
        try pool.read { db in
            try Self.fetchPeers(db, where: "WHERE p.id = ?", arguments: [id.rawValue]).first
        }
    }

    /// Every peer, ordered by ID.
    package func peers() throws -> [Peer] {
        try pool.read { db in try Self.fetchPeers(db, where: "", arguments: []) }
    }

    /// Checks a peer's key. Returns the peer when the ID exists, is enabled and the key
    /// matches; nil otherwise, without saying which of those failed.
    package func verifyKey(_ id: PeerID, key: String) throws -> Peer? {
        let row = try pool.read { db in
            try Row.fetchOne(db.cachedStatement(sql: "SELECT key_hash, disabled FROM peers WHERE id = ?"), arguments: [id.rawValue])
        }
        guard let row else {
            // Spend the same work as a real check so timing does not tell IDs apart.
            _ = KeyHash.verify(key, against: Self.decoyHash)
            return nil
        }
        let hash: String = row["key_hash"]
        let disabled: Bool = row["disabled"]
        guard KeyHash.verify(key, against: hash), !disabled else { return nil }
        return try peer(id)
    }

    private static let decoyHash = KeyHash.make(for: PeerKey.generate())

    /// The newest audit entries, newest first.
    package func auditLog(limit: Int = 100) throws -> [AuditEntry] {
        try pool.read { db in
            try Row.fetchAll(db.cachedStatement(sql: "SELECT id, at, actor, action, peer_id, source, detail FROM audit_log ORDER BY id DESC LIMIT ?"), arguments: [limit]).map { row in
                AuditEntry(
                    id: row["id"], at: Date(timeIntervalSince1970: TimeInterval(row["at"] as Int64)),
                    actor: row["actor"], action: row["action"], peerID: row["peer_id"],
                    source: row["source"], detail: row["detail"])
            }
        }
    }

    // MARK: - Helpers

    static func exists(_ db: Database, _ id: PeerID) throws -> Bool {
        try Bool.fetchOne(db.cachedStatement(sql: "SELECT EXISTS (SELECT 1 FROM peers WHERE id = ?)"), arguments: [id.rawValue]) ?? false
    }

    static func audit(
        _ db: Database, at: Int64, actor: Actor, action: String, peer: PeerID?,
        source: String? = nil, detail: [String: String] = [:]
    ) throws {
        let detailJSON: String? =
            if detail.isEmpty { nil } else {
                String(decoding: try JSONSerialization.data(withJSONObject: detail, options: [.sortedKeys]),
                       as: UTF8.self)
            }
        try db.cachedStatement(sql: "INSERT INTO audit_log (at, actor, action, peer_id, source, detail) VALUES (?, ?, ?, ?, ?, ?)").execute(arguments: [at, actor.rawValue, action, peer?.rawValue, source, detailJSON])
    }

    static func fetchPeers(_ db: Database, where clause: String, arguments: StatementArguments) throws -> [Peer] {
        let rows = try Row.fetchAll(db.cachedStatement(sql: """
                SELECT p.id, p.disabled, p.created_at, p.key_changed_at, p.last_login_at, p.last_seen_at,
                       (SELECT group_concat(group_name, ',') FROM
                          (SELECT group_name FROM peer_groups g WHERE g.peer_id = p.id ORDER BY group_name)
                       ) AS groups
                  FROM peers p \(clause)
                 ORDER BY p.id
                """), arguments: arguments)
        return rows.map { row in
            let groups: String? = row["groups"]
            return Peer(
                id: row["id"],
                groups: groups.map { $0.split(separator: ",").map(String.init) } ?? [],
                disabled: row["disabled"],
                createdAt: date(row["created_at"])!,
                keyChangedAt: date(row["key_changed_at"])!,
                lastLoginAt: date(row["last_login_at"]),
                lastSeenAt: date(row["last_seen_at"]))
        }
    }

    private static func date(_ seconds: Int64?) -> Date? {
        seconds.map { Date(timeIntervalSince1970: TimeInterval($0)) }
    }
}

/// AuditEntry is one row of the append-only audit log.
package struct AuditEntry: Sendable, Equatable {
    package var id: Int64
    package var at: Date
    package var actor: String
    package var action: String
    package var peerID: String?
    package var source: String?
    package var detail: String?
}

/// PeerCounts is the registry's size, for the metrics endpoint.
package struct PeerCounts: Sendable, Equatable {
    package var enabled: Int
    package var disabled: Int
}

extension SwitchboardDatabase {
    package func peerCounts() async throws -> PeerCounts {
        try await pool.read { db in
            let row = try Row.fetchOne(db.cachedStatement(sql: "SELECT count(*) FILTER (WHERE disabled = 0), count(*) FILTER (WHERE disabled = 1) FROM peers"))
            return PeerCounts(enabled: row?[0] ?? 0, disabled: row?[1] ?? 0)
        }
    }
}
