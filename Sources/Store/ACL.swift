import Foundation
import GRDB

/// ACLSubject is one side of an ACL rule: a peer or a group.
package enum ACLSubject: Sendable, Hashable, CustomStringConvertible {
    case peer(PeerID)
    case group(GroupName)

    /// Parses `peer:NAME` or `group:NAME`.
    package init(parsing text: String) throws(StoreError) {
        let parts = text.split(separator: ":", maxSplits: 1, omittingEmptySubsequences: false)
        guard parts.count == 2 else { throw .invalidACLSubject(text) }
        switch parts[0] {
        case "peer": self = .peer(try PeerID(String(parts[1])))
        case "group": self = .group(try GroupName(String(parts[1])))
        default: throw .invalidACLSubject(text)
        }
    }

    var kind: String {
        switch self { case .peer: "peer"; case .group: "group" }
    }

    var name: String {
        switch self { case .peer(let id): id.rawValue; case .group(let group): group.rawValue }
    }

    package var description: String { "\(kind):\(name)" }
}

/// ACLRule is one row of `acl_rules`.
package struct ACLRule: Sendable, Equatable {
    package enum Action: String, Sendable { case allow, deny }
    package var id: Int64
    package var action: Action
    package var from: String
    package var to: String
    package var createdAt: Date
}

extension SwitchboardDatabase {
    package func addACLRule(_ action: ACLRule.Action, from: ACLSubject, to: ACLSubject, actor: Actor = .cli) throws -> Int64 {
        let now = unixNow
        return try writeWaiting { db in
            let existing = try Int64.fetchOne(db, sql: """
                SELECT id FROM acl_rules WHERE action = ? AND from_kind = ? AND from_name = ? AND to_kind = ? AND to_name = ?
                """, arguments: [action.rawValue, from.kind, from.name, to.kind, to.name])
            if let existing { return existing }
            try db.cachedStatement(sql: """
                INSERT INTO acl_rules (action, from_kind, from_name, to_kind, to_name, created_at) VALUES (?, ?, ?, ?, ?, ?)
                """).execute(arguments: [action.rawValue, from.kind, from.name, to.kind, to.name, now])
            let id = db.lastInsertedRowID
            try Self.audit(db, at: now, actor: actor, action: "acl.\(action.rawValue)", peer: nil,
                           detail: ["from": from.description, "to": to.description, "rule": "\(id)"])
            return id
        }
    }

    package func removeACLRule(id: Int64, actor: Actor = .cli) throws {
        let now = unixNow
        try writeWaiting { db in
            try db.cachedStatement(sql: "DELETE FROM acl_rules WHERE id = ?").execute(arguments: [id])
            guard db.changesCount == 1 else { throw StoreError.aclRuleNotFound(id) }
            try Self.audit(db, at: now, actor: actor, action: "acl.remove", peer: nil, detail: ["rule": "\(id)"])
        }
    }

    package func aclRules() throws -> [ACLRule] {
        try pool.read { db in
            try Row.fetchAll(db.cachedStatement(sql: "SELECT * FROM acl_rules ORDER BY id")).map { row in
                ACLRule(id: row["id"], action: ACLRule.Action(rawValue: row["action"]) ?? .deny,
                        from: "\(row["from_kind"] as String):\(row["from_name"] as String)",
                        to: "\(row["to_kind"] as String):\(row["to_name"] as String)",
                        createdAt: Date(timeIntervalSince1970: TimeInterval(row["created_at"] as Int64)))
            }
        }
    }

    /// Whether `from` may reach `to`: both exist and are enabled, no deny rule matches, and
    /// the ACL is open, they share a group, or an allow rule matches.
    package func mayReach(from: PeerID, to: PeerID, open: Bool) async throws -> Bool {
        try readInPlace { db in try Self.mayReach(db, from: from, to: to, open: open) }
    }

    static func mayReach(_ db: Database, from: PeerID, to: PeerID, open: Bool) throws -> Bool {
        let matches = """
            ((r.from_kind = 'peer' AND r.from_name = :from)
              OR (r.from_kind = 'group' AND r.from_name IN (SELECT group_name FROM peer_groups WHERE peer_id = :from)))
            AND ((r.to_kind = 'peer' AND r.to_name = :to)
              OR (r.to_kind = 'group' AND r.to_name IN (SELECT group_name FROM peer_groups WHERE peer_id = :to)))
            """
        let sql = """
            SELECT
              (SELECT count(*) FROM peers WHERE id IN (:from, :to) AND disabled = 0) = (CASE WHEN :from = :to THEN 1 ELSE 2 END)
              AND NOT EXISTS (SELECT 1 FROM acl_rules r WHERE r.action = 'deny' AND \(matches))
              AND (:open
                   OR EXISTS (SELECT 1 FROM peer_groups a JOIN peer_groups b ON a.group_name = b.group_name
                               WHERE a.peer_id = :from AND b.peer_id = :to)
                   OR EXISTS (SELECT 1 FROM acl_rules r WHERE r.action = 'allow' AND \(matches)))
            """
        return try Bool.fetchOne(db.cachedStatement(sql: sql), arguments: ["from": from.rawValue, "to": to.rawValue, "open": open])
            ?? false
    }

    /// Marks peers as seen (presence), each at its own time, `chunk` peers per transaction:
    /// a transaction holds the write lock, and a thousand updates in one would hold it for
    /// milliseconds while requests wait to write.
    package func touch(_ seen: [(id: PeerID, at: Date)], chunk: Int = 100) async throws {
        for start in stride(from: 0, to: seen.count, by: max(1, chunk)) {
            let part = seen[start..<min(seen.count, start + max(1, chunk))]
            try await write { db in
                let update = try db.cachedStatement(sql: "UPDATE peers SET last_seen_at = max(coalesce(last_seen_at, 0), ?) WHERE id = ?")
                for (id, at) in part {
                    try update.execute(arguments: [Int64(at.timeIntervalSince1970.rounded(.down)), id.rawValue])
                }
            }
        }
    }
}
