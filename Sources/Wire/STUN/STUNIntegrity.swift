import Crypto

/// STUNIntegrity holds the hashes behind MESSAGE-INTEGRITY (RFC 8489 §14.5),
/// MESSAGE-INTEGRITY-SHA256 (§14.6) and FINGERPRINT (§14.7).
public enum STUNIntegrity {
    /// XORed into the CRC-32 so that FINGERPRINT tells STUN apart from other protocols' CRCs.
    public static let fingerprintXOR: UInt32 = 0x5354_554E

    static func hmacSHA1(key: [UInt8], message: [UInt8]) -> [UInt8] {
        Array(HMAC<Insecure.SHA1>.authenticationCode(for: message, using: SymmetricKey(data: key)))
    }

    static func hmacSHA256(key: [UInt8], message: [UInt8]) -> [UInt8] {
        Array(HMAC<SHA256>.authenticationCode(for: message, using: SymmetricKey(data: key)))
    }

    static func fingerprint(of message: [UInt8]) -> UInt32 {
        crc32(message) ^ fingerprintXOR
    }

    /// CRC-32 as in ISO/IEC 13239 / ITU-T V.42 (the one zlib and Ethernet use), which
    /// FINGERPRINT names. Reflected polynomial 0xEDB88320, init and final XOR 0xFFFFFFFF.
    public static func crc32(_ bytes: some Sequence<UInt8>) -> UInt32 {
        var crc: UInt32 = 0xFFFF_FFFF
        for byte in bytes {
            crc = crcTable[Int((crc ^ UInt32(byte)) & 0xFF)] ^ (crc >> 8)
        }
        return crc ^ 0xFFFF_FFFF
    }

    private static let crcTable: [UInt32] = (0..<256).map { index in
        var value = UInt32(index)
        for _ in 0..<8 {
            value = value & 1 == 1 ? 0xEDB8_8320 ^ (value >> 1) : value >> 1
        }
        return value
    }
}

extension STUNMessage {
    /// True when the message carries MESSAGE-INTEGRITY and it matches `key`.
    /// The HMAC is computed over the bytes as received, with the header's length adjusted
    /// to end at the attribute, and compared in constant time.
    public func verifyIntegrity(key: [UInt8]) -> Bool {
        guard let received, let offset = received.integrityOffset else { return false }
        var covered = Array(received.bytes[..<offset])
        Self.setLength(of: &covered, to: offset + 24)
        let expected = STUNIntegrity.hmacSHA1(key: key, message: covered)
        return constantTimeEquals(expected, received.bytes[(offset + 4)..<(offset + 24)])
    }

    /// True when the message carries MESSAGE-INTEGRITY-SHA256 and it matches `key`
    /// (a truncated value is compared over its length, RFC 8489 §14.6).
    public func verifyIntegritySHA256(key: [UInt8]) -> Bool {
        guard let received, let offset = received.integritySHA256Offset else { return false }
        let length = Int(received.bytes[offset + 2]) << 8 | Int(received.bytes[offset + 3])
        var covered = Array(received.bytes[..<offset])
        Self.setLength(of: &covered, to: offset + 4 + length)
        let expected = STUNIntegrity.hmacSHA256(key: key, message: covered).prefix(length)
        return constantTimeEquals(expected, received.bytes[(offset + 4)..<(offset + 4 + length)])
    }

    /// True when FINGERPRINT is present and right; nil when the message has none.
    public var fingerprintIsValid: Bool? {
        guard let received, let offset = received.fingerprintOffset else { return nil }
        var covered = Array(received.bytes[..<offset])
        Self.setLength(of: &covered, to: offset + 8)
        let value = received.bytes[(offset + 4)..<(offset + 8)].reduce(UInt32(0)) { $0 << 8 | UInt32($1) }
        return STUNIntegrity.fingerprint(of: covered) == value
    }

    /// Whether MESSAGE-INTEGRITY / -SHA256 are present (in the counted part of the message).
    public var hasIntegrity: Bool { received?.integrityOffset != nil || contains(.messageIntegrity) }
    public var hasIntegritySHA256: Bool {
        received?.integritySHA256Offset != nil || contains(.messageIntegritySHA256)
    }
}

/// Compares two byte sequences in time that depends only on their lengths: every byte is
/// read and folded into one accumulator, with no early exit at the first difference. The
/// one copy for MESSAGE-INTEGRITY, peer keys, stream tokens and nonces.
package func constantTimeEquals<A: Collection<UInt8>, B: Collection<UInt8>>(_ a: A, _ b: B) -> Bool {
    guard a.count == b.count else { return false }
    var difference: UInt8 = 0
    for (x, y) in zip(a, b) { difference |= x ^ y }
    return difference == 0
}
