import CSSL

/// DTLSFingerprint is a certificate fingerprint as SDP carries it (`a=fingerprint`, RFC 8122
/// §5): a hash function's name and the digest of the certificate's DER bytes, written as
/// upper-case hex pairs joined by colons. WebRTC peers trust the certificate whose digest the
/// signaled SDP names, not a CA chain (RFC 8827 §6.5).
package struct DTLSFingerprint: Sendable, Hashable, CustomStringConvertible {
    /// The hash functions RFC 8122 §5 lists that are still used (md5 and md2 are not accepted).
    package enum Algorithm: String, Sendable, CaseIterable {
        case sha1 = "sha-1"
        case sha224 = "sha-224"
        case sha256 = "sha-256"
        case sha384 = "sha-384"
        case sha512 = "sha-512"

        package var digestLength: Int {
            switch self {
            case .sha1: 20
            case .sha224: 28
            case .sha256: 32
            case .sha384: 48
            case .sha512: 64
            }
        }

        var messageDigest: OpaquePointer? {
            switch self {
            case .sha1: EVP_sha1()
            case .sha224: EVP_sha224()
            case .sha256: EVP_sha256()
            case .sha384: EVP_sha384()
            case .sha512: EVP_sha512()
            }
        }
    }

    package let algorithm: Algorithm
    package let digest: [UInt8]

    /// nil when `digest` is not as long as `algorithm`'s digests are.
    package init?(algorithm: Algorithm, digest: [UInt8]) {
        guard digest.count == algorithm.digestLength else { return nil }
        self.algorithm = algorithm
        self.digest = digest
    }

    /// Parses the value of an `a=fingerprint:` line, "sha-256 AB:CD:…". The hash name is
    /// case-insensitive and the hex may be either case (RFC 8122 §5 asks senders for upper
    /// case; receivers see both). nil for an unknown hash function or a malformed digest.
    package init?(sdp text: some StringProtocol) {
        let parts = text.split(separator: " ", omittingEmptySubsequences: true)
        guard parts.count == 2, let algorithm = Algorithm(rawValue: parts[0].lowercased()) else { return nil }
        let pairs = parts[1].split(separator: ":", omittingEmptySubsequences: false)
        guard pairs.count == algorithm.digestLength else { return nil }
        var digest: [UInt8] = []
        digest.reserveCapacity(pairs.count)
        for pair in pairs {
            // Two hex digits exactly (UInt8(_:radix:) would also take a sign).
            guard pair.utf8.count == 2, pair.utf8.allSatisfy(\.isHexDigit), let byte = UInt8(pair, radix: 16) else {
                return nil
            }
            digest.append(byte)
        }
        self.init(algorithm: algorithm, digest: digest)
    }

    /// The fingerprint of an X509 certificate.
    init(of certificate: OpaquePointer, algorithm: Algorithm) throws(OpenSSLError) {
        var digest = [UInt8](repeating: 0, count: Int(EVP_MAX_MD_SIZE))
        var length: UInt32 = 0
        try check(X509_digest(certificate, algorithm.messageDigest, &digest, &length), "X509_digest")
        self.algorithm = algorithm
        self.digest = Array(digest.prefix(Int(length)))
    }

    /// "AB:CD:…": the digest as `a=fingerprint` writes it.
    package var hex: String {
        let digits = Array("0123456789ABCDEF".utf8)
        var out: [UInt8] = []
        out.reserveCapacity(digest.count * 3)
        for (index, byte) in digest.enumerated() {
            if index > 0 { out.append(UInt8(ascii: ":")) }
            out.append(digits[Int(byte >> 4)])
            out.append(digits[Int(byte & 0x0F)])
        }
        return String(decoding: out, as: UTF8.self)
    }

    /// "sha-256 AB:CD:…": the value of an `a=fingerprint:` line.
    package var sdpValue: String { "\(algorithm.rawValue) \(hex)" }

    package var description: String { sdpValue }
}

extension UInt8 {
    fileprivate var isHexDigit: Bool {
        (0x30...0x39).contains(self) || (0x41...0x46).contains(self) || (0x61...0x66).contains(self)
    }
}
