import Crypto
import Foundation
import Wire

/// PeerKey is a peer's secret: 256 bits from the system CSPRNG, written as URL-safe base64
/// without padding (43 characters). It is shown once and only its hash is stored.
package struct PeerKey: Sendable, Equatable {
    package let text: String

    package static let byteCount = 32

    package init(text: String) { self.text = text }

    /// A new key from `SystemRandomNumberGenerator` (getrandom(2) on Linux, a CSPRNG).
    package static func generate() -> PeerKey {
        let bytes = randomBytes(byteCount)
        return PeerKey(text: Base64URL.encode(bytes))
    }
}

/// KeyHash is the stored form of a peer key: `hmac-sha256$<salt>$<digest>`, where the digest
/// is HMAC-SHA256 keyed with a random 16-byte salt over the key's UTF-8 bytes.
///
/// Peer keys carry 256 bits of entropy, so a fast keyed hash is enough (a password KDF
/// protects low-entropy secrets); the salt keeps equal keys from having equal hashes and the
/// scheme prefix lets a later migration change the algorithm.
package enum KeyHash {
    static let scheme = "hmac-sha256"

    package static func make(for key: PeerKey) -> String {
        let salt = randomBytes(16)
        return "\(scheme)$\(Base64URL.encode(salt))$\(Base64URL.encode(digest(key: key.text, salt: salt)))"
    }

    /// True when `key` is the key `stored` was made from. The comparison of digests takes
    /// the same time wherever they differ.
    package static func verify(_ key: String, against stored: String) -> Bool {
        let parts = stored.split(separator: "$", omittingEmptySubsequences: false)
        guard parts.count == 3, parts[0] == scheme,
              let salt = Base64URL.decode(parts[1]),
              let expected = Base64URL.decode(parts[2]) else { return false }
        return constantTimeEquals(digest(key: key, salt: salt), expected)
    }

    static func digest(key: String, salt: [UInt8]) -> [UInt8] {
        Array(HMAC<SHA256>.authenticationCode(for: Array(key.utf8), using: SymmetricKey(data: salt)))
    }
}

/// URL-safe base64 without padding (RFC 4648 §5).
package enum Base64URL {
    package static func encode(_ bytes: some Sequence<UInt8>) -> String {
        // One pass over the standard alphabet's bytes (Foundation's replacingOccurrences,
        // three times, cost more than the random bytes and the encoding together).
        let standard = Data(bytes).base64EncodedString()
        var url: [UInt8] = []
        url.reserveCapacity(standard.utf8.count)
        for byte in standard.utf8 {
            switch byte {
            case UInt8(ascii: "+"): url.append(UInt8(ascii: "-"))
            case UInt8(ascii: "/"): url.append(UInt8(ascii: "_"))
            case UInt8(ascii: "="): continue
            default: url.append(byte)
            }
        }
        return String(decoding: url, as: UTF8.self)
    }

    package static func decode(_ text: some StringProtocol) -> [UInt8]? {
        var standard = text.replacingOccurrences(of: "-", with: "+").replacingOccurrences(of: "_", with: "/")
        guard !standard.contains("=") else { return nil }
        while standard.count % 4 != 0 { standard += "=" }
        return Data(base64Encoded: standard).map(Array.init)
    }
}
