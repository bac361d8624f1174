import Crypto
import Foundation

/// STUNCredentials derives the keys that MESSAGE-INTEGRITY is computed with (RFC 8489 §9).
///
/// Passwords are used as their UTF-8 bytes; RFC 8489 asks for OpaqueString (RFC 8265)
/// preparation, which changes nothing for ASCII — and TURN REST passwords are base64.
public enum STUNCredentials {
    /// Long-term key: MD5(username ":" realm ":" password) (RFC 8489 §9.2.2).
    public static func longTermKey(username: String, realm: String, password: String) -> [UInt8] {
        Array(Insecure.MD5.hash(data: Array("\(username):\(realm):\(password)".utf8)))
    }

    /// Long-term key with PASSWORD-ALGORITHM SHA-256 (RFC 8489 §18.5.1.2).
    public static func longTermKeySHA256(username: String, realm: String, password: String) -> [UInt8] {
        Array(SHA256.hash(data: Array("\(username):\(realm):\(password)".utf8)))
    }

    /// Short-term key (ICE): the password itself (RFC 8489 §9.1.1).
    public static func shortTermKey(password: String) -> [UInt8] {
        Array(password.utf8)
    }
}

/// TURNRESTCredential is the time-limited TURN credential scheme that coturn, browsers'
/// ICE server configs and WebRTC services use (draft-uberti-behave-turn-rest): the
/// username is `expiry:name` (expiry in Unix seconds) and the password is
/// base64(HMAC-SHA1(shared secret, username)).
public struct TURNRESTCredential: Sendable, Equatable {
    public var username: String
    public var password: String

    public init(username: String, password: String) {
        self.username = username
        self.password = password
    }

    /// A credential for `name` that expires at `expiry` (Unix seconds).
    public init(secret: String, name: String, expiry: Int64) {
        let username = name.isEmpty ? "\(expiry)" : "\(expiry):\(name)"
        self.init(username: username, password: Self.password(secret: secret, username: username))
    }

    /// The password the server expects for `username`.
    public static func password(secret: String, username: String) -> String {
        let mac = HMAC<Insecure.SHA1>.authenticationCode(
            for: Array(username.utf8), using: SymmetricKey(data: Array(secret.utf8)))
        return Data(mac).base64EncodedString()
    }

    /// The expiry encoded in a username: the part before the first ":" (or the whole name),
    /// if it is a decimal Unix time. nil when the username is not of this scheme.
    public static func expiry(of username: String) -> Int64? {
        let head = username.split(separator: ":", maxSplits: 1, omittingEmptySubsequences: false).first ?? ""
        guard (1...19).contains(head.count), head.allSatisfy({ $0.isASCII && $0.isNumber }) else { return nil }
        return Int64(head)
    }

    /// The name after the expiry, or "" when there is none.
    public static func name(of username: String) -> String {
        let parts = username.split(separator: ":", maxSplits: 1, omittingEmptySubsequences: false)
        return parts.count == 2 ? String(parts[1]) : ""
    }
}
