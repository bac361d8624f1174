import Crypto
import Wire

/// NonceIssuer makes and checks NONCE values without keeping any state (RFC 8489 §9.2):
/// a nonce is its issue time plus an HMAC over that time and the client's IP, keyed with a
/// secret made at start-up. Unauthenticated traffic costs the server no memory.
package struct NonceIssuer: Sendable {
    private let key: SymmetricKey
    /// How long a nonce is good for; after that a request gets 438 Stale Nonce.
    package var lifetime: Int64

    package init(lifetime: Int64 = 600, key: SymmetricKey = SymmetricKey(size: .bits256)) {
        self.key = key
        self.lifetime = lifetime
    }

    package enum Verdict: Sendable, Equatable {
        case valid
        case stale
        case invalid
    }

    /// A nonce for `client` issued at `now` (Unix seconds): 16 hex digits of time and 24 of MAC.
    package func make(for client: IPAddress, now: Int64) -> String {
        let time = UInt64(bitPattern: now)
        return hex16(time) + macHex(time: time, client: client)
    }

    package func check(_ nonce: String, for client: IPAddress, now: Int64) -> Verdict {
        let utf8 = Array(nonce.utf8)
        guard utf8.count == 40, let time = UInt64(String(decoding: utf8[0..<16], as: UTF8.self), radix: 16) else {
            return .invalid
        }
        let expected = Array(macHex(time: time, client: client).utf8)
        guard constantTimeEquals(expected, utf8[16...]) else { return .invalid }
        let issued = Int64(bitPattern: time)
        guard issued <= now + 5 else { return .invalid }
        return now - issued < lifetime ? .valid : .stale
    }

    private func macHex(time: UInt64, client: IPAddress) -> String {
        var data: [UInt8] = []
        withUnsafeBytes(of: time.bigEndian) { data += $0 }
        data += client.bytes
        let mac = HMAC<SHA256>.authenticationCode(for: data, using: key)
        return hexString(Array(mac).prefix(12))
    }

    private func hex16(_ value: UInt64) -> String {
        let text = String(value, radix: 16)
        return String(repeating: "0", count: 16 - text.count) + text
    }
}
