import Crypto
import Foundation
import GRDB
import Wire

/// TURNUser is a static long-term-credential user of the relay (never its password).
package struct TURNUser: Sendable, Equatable {
    package var name: String
    package var realm: String
    package var createdAt: Date
}

extension SwitchboardDatabase {
    /// Static TURN user names: 1–128 printable characters without ":" (which marks TURN REST
    /// usernames) or control characters.
    package static func isValidTURNUserName(_ name: String) -> Bool {
        (1...128).contains(name.utf8.count) && !name.contains(":")
            && name.unicodeScalars.allSatisfy { $0.value >= 0x20 && $0.value != 0x7F }
    }

    /// The long-term key as coturn stores it: hex MD5(name:realm:password).
    package static func turnKeyHex(name: String, realm: String, password: String) -> String {
        hexString(Insecure.MD5.hash(data: Array("\(name):\(realm):\(password)".utf8)))
    }

    package func addTURNUser(name: String, realm: String, password: String, actor: Actor = .cli) throws {
        guard Self.isValidTURNUserName(name) else { throw StoreError.invalidTURNUserName(name) }
        guard !password.isEmpty else { throw StoreError.emptyPassword }
        let now = unixNow
        try writeWaiting { db in
            let exists = try Bool.fetchOne(
                db, sql: "SELECT EXISTS (SELECT 1 FROM turn_users WHERE name = ? AND realm = ?)",
                arguments: [name, realm]) ?? false
            if exists { throw StoreError.turnUserExists(name) }
            try db.execute(
                sql: "INSERT INTO turn_users (name, realm, key_md5, created_at) VALUES (?, ?, ?, ?)",
                arguments: [name, realm, Self.turnKeyHex(name: name, realm: realm, password: password), now])
            try Self.audit(db, at: now, actor: actor, action: "turn-user.add", peer: nil,
                           detail: ["name": name, "realm": realm])
        }
    }

    package func removeTURNUser(name: String, realm: String, actor: Actor = .cli) throws {
        let now = unixNow
        try writeWaiting { db in
            try db.execute(sql: "DELETE FROM turn_users WHERE name = ? AND realm = ?", arguments: [name, realm])
            guard db.changesCount == 1 else { throw StoreError.turnUserNotFound(name) }
            try Self.audit(db, at: now, actor: actor, action: "turn-user.remove", peer: nil,
                           detail: ["name": name, "realm": realm])
        }
    }

    package func turnUsers() throws -> [TURNUser] {
        try pool.read { db in
            try Row.fetchAll(db, sql: "SELECT name, realm, created_at FROM turn_users ORDER BY realm, name").map {
                TURNUser(name: $0["name"], realm: $0["realm"],
                         createdAt: Date(timeIntervalSince1970: TimeInterval($0["created_at"] as Int64)))
            }
        }
    }

    /// Every static user's long-term key in `realm`, for the relay's in-memory copy.
    package func turnUserKeys(realm: String) async throws -> [String: [UInt8]] {
        try await pool.read { db in
            var keys: [String: [UInt8]] = [:]
            for row in try Row.fetchAll(db, sql: "SELECT name, key_md5 FROM turn_users WHERE realm = ?",
                                        arguments: [realm]) {
                let hex: String = row["key_md5"]
                var bytes: [UInt8] = []
                var index = hex.startIndex
                while index < hex.endIndex {
                    let next = hex.index(index, offsetBy: 2)
                    bytes.append(UInt8(hex[index..<next], radix: 16) ?? 0)
                    index = next
                }
                keys[row["name"]] = bytes
            }
            return keys
        }
    }
}

/// RelayUsage is one ended allocation, as written to `relay_usage`.
package struct RelayUsage: Sendable, Equatable {
    package var username: String
    package var realm: String
    package var clientAddress: String
    package var clientTransport: String
    package var relayedAddress: String
    package var startedAt: Date
    package var endedAt: Date
    package var endReason: String
    package var packetsToPeer: Int
    package var bytesToPeer: Int
    package var packetsToClient: Int
    package var bytesToClient: Int

    package init(username: String, realm: String, clientAddress: String, clientTransport: String,
                 relayedAddress: String, startedAt: Date, endedAt: Date, endReason: String,
                 packetsToPeer: Int, bytesToPeer: Int, packetsToClient: Int, bytesToClient: Int) {
        self.username = username
        self.realm = realm
        self.clientAddress = clientAddress
        self.clientTransport = clientTransport
        self.relayedAddress = relayedAddress
        self.startedAt = startedAt
        self.endedAt = endedAt
        self.endReason = endReason
        self.packetsToPeer = packetsToPeer
        self.bytesToPeer = bytesToPeer
        self.packetsToClient = packetsToClient
        self.bytesToClient = bytesToClient
    }
}

/// LiveAllocation is a row of `relay_allocations`: an allocation that exists now.
package struct LiveAllocation: Sendable, Equatable {
    package var id: String
    package var username: String
    package var realm: String
    package var clientAddress: String
    package var clientTransport: String
    package var relayedAddress: String
    package var startedAt: Date
    package var expiresAt: Date

    package init(id: String, username: String, realm: String, clientAddress: String, clientTransport: String,
                 relayedAddress: String, startedAt: Date, expiresAt: Date) {
        self.id = id
        self.username = username
        self.realm = realm
        self.clientAddress = clientAddress
        self.clientTransport = clientTransport
        self.relayedAddress = relayedAddress
        self.startedAt = startedAt
        self.expiresAt = expiresAt
    }
}

extension SwitchboardDatabase {
    /// Applies a batch of relay changes in one transaction: live rows upserted, ended
    /// allocations moved from `relay_allocations` to `relay_usage`.
    package func recordRelayChanges(live: [LiveAllocation], ended: [(id: String, usage: RelayUsage)]) async throws {
        guard !live.isEmpty || !ended.isEmpty else { return }
        try await write(timeout: Self.housekeepingTimeout) { db in
            for allocation in live {
                try db.execute(
                    sql: """
                        INSERT INTO relay_allocations
                            (id, username, realm, client_address, client_transport, relayed_address, started_at, expires_at)
                        VALUES (?, ?, ?, ?, ?, ?, ?, ?)
                        ON CONFLICT (id) DO UPDATE SET expires_at = excluded.expires_at
                        """,
                    arguments: [allocation.id, allocation.username, allocation.realm, allocation.clientAddress,
                                allocation.clientTransport, allocation.relayedAddress,
                                Int64(allocation.startedAt.timeIntervalSince1970),
                                Int64(allocation.expiresAt.timeIntervalSince1970)])
            }
            for (id, usage) in ended {
                try db.execute(sql: "DELETE FROM relay_allocations WHERE id = ?", arguments: [id])
                try db.execute(
                    sql: """
                        INSERT INTO relay_usage
                            (username, realm, client_address, client_transport, relayed_address, started_at, ended_at,
                             end_reason, packets_to_peer, bytes_to_peer, packets_to_client, bytes_to_client)
                        VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
                        """,
                    arguments: [usage.username, usage.realm, usage.clientAddress, usage.clientTransport,
                                usage.relayedAddress, Int64(usage.startedAt.timeIntervalSince1970),
                                Int64(usage.endedAt.timeIntervalSince1970), usage.endReason,
                                usage.packetsToPeer, usage.bytesToPeer, usage.packetsToClient, usage.bytesToClient])
            }
        }
    }

    /// Forgets live rows a previous run left (a crash leaves them; they ended with it).
    package func clearLiveAllocations() async throws {
        try await write(timeout: Self.housekeepingTimeout) { db in try db.execute(sql: "DELETE FROM relay_allocations") }
    }

    package func relayUsage() throws -> [RelayUsage] {
        try pool.read { db in
            try Row.fetchAll(db, sql: "SELECT * FROM relay_usage ORDER BY id").map { row in
                RelayUsage(
                    username: row["username"], realm: row["realm"], clientAddress: row["client_address"],
                    clientTransport: row["client_transport"], relayedAddress: row["relayed_address"],
                    startedAt: Date(timeIntervalSince1970: TimeInterval(row["started_at"] as Int64)),
                    endedAt: Date(timeIntervalSince1970: TimeInterval(row["ended_at"] as Int64)),
                    endReason: row["end_reason"], packetsToPeer: row["packets_to_peer"],
                    bytesToPeer: row["bytes_to_peer"], packetsToClient: row["packets_to_client"],
                    bytesToClient: row["bytes_to_client"])
            }
        }
    }
}
