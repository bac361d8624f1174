import Crypto
import Foundation
import GRDB
import Wire

/// LoginToken is a bearer token as handed to a peer once: 256 random bits, URL-safe text.
/// The database keeps only its SHA-256 (a fast hash is right for a random 256-bit secret, and
/// lets a request find its row by index).
package struct LoginToken: Sendable, Equatable {
    package var token: String
    package var expiresAt: Date
}

extension SwitchboardDatabase {
    package static func tokenHash(_ token: String) -> String {
        hexString(SHA256.hash(data: Array(token.utf8)))
    }

    /// Issues a token for a peer whose key was just verified, and records the login.
    package func issueToken(for id: PeerID, lifetime: Int, source: String?) async throws -> LoginToken {
        let token = Base64URL.encode(randomBytes(32))
        let now = unixNow
        let expires = now + Int64(lifetime)
        try await write { db in
            try db.cachedStatement(sql: "INSERT INTO login_tokens (token_hash, peer_id, created_at, expires_at, source) VALUES (?, ?, ?, ?, ?)").execute(arguments: [Self.tokenHash(token), id.rawValue, now, expires, source])
            try db.cachedStatement(sql: "UPDATE peers SET last_login_at = ?, last_seen_at = ? WHERE id = ?").execute(arguments: [now, now, id.rawValue])
            try Self.audit(db, at: now, actor: .http, action: "login.ok", peer: id, source: source)
        }
        return LoginToken(token: token, expiresAt: Date(timeIntervalSince1970: TimeInterval(expires)))
    }

    /// Records a failed login; the peer ID is kept only if it is a valid one (it may not exist).
    package func recordLoginFailure(peerID: String, source: String?) async throws {
        let now = unixNow
        let id = try? PeerID(peerID)
        try await write { db in
            try Self.audit(db, at: now, actor: .http, action: "login.fail", peer: id, source: source)
        }
    }

    /// The ID of the enabled peer a live token belongs to, or nil (unknown, expired, revoked,
    /// disabled). Every API request asks this, so it reads only the two rows it needs, on the
    /// writer's warm cache (see `readOnWriter`).
    package func peerID(forToken token: String) throws -> String? {
        let hash = Self.tokenHash(token)
        let now = unixNow
        return try readOnWriter { db in
            try String.fetchOne(db.cachedStatement(sql: """
                SELECT p.id FROM login_tokens t JOIN peers p ON p.id = t.peer_id
                 WHERE t.token_hash = ? AND t.expires_at > ? AND p.disabled = 0
                """), arguments: [hash, now])
        }
    }

    /// Revokes one token (logout). Returns false when it was not live.
    @discardableResult
    package func revokeToken(_ token: String) async throws -> Bool {
        let hash = Self.tokenHash(token)
        let now = unixNow
        return try await write { db in
            guard let peerID = try String.fetchOne(db.cachedStatement(sql: "SELECT peer_id FROM login_tokens WHERE token_hash = ?"), arguments: [hash]) else { return false }
            try db.cachedStatement(sql: "DELETE FROM login_tokens WHERE token_hash = ?").execute(arguments: [hash])
            try Self.audit(db, at: now, actor: .http, action: "logout", peer: try? PeerID(peerID))
            return true
        }
    }

    /// Deletes expired tokens, `batch` per transaction; returns how many.
    @discardableResult
    package func purgeExpiredTokens(batch: Int = 1000) async throws -> Int {
        try await deleteInBatches("login_tokens", key: "token_hash", where: "expires_at <= ?", [unixNow], batch: batch)
    }
}
