import Testing
import Wire
@testable import MediaEdge

/// OpenSSL behind libsrtp2's ciphers (`SRTPCrypto`): libsrtp2 took every replacement (each
/// passed its known-answer tests there), and packets protected through them are byte for byte
/// what another libsrtp build makes: the known answers below come from pylibsrtp 1.0.0 (PyPI,
/// aiortc's SRTP, its own libsrtp and OpenSSL), for the same master key, salt and packets.
@Suite struct SRTPCryptoTests {
    static func bytes(_ text: String) -> [UInt8] {
        guard let bytes = hexBytes(text) else { preconditionFailure("not hex: \(text)") }
        return bytes
    }

    /// An RTP packet (PT 96, marker, sequence 0x1234, timestamp 12345, SSRC 0xcafebabe, 48 bytes
    /// counting up) and an RTCP sender report header with 20 more bytes.
    static let rtp = bytes("80e0123400003039cafebabe" + "000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f202122232425262728292a2b2c2d2e2f")
    static let rtcp = bytes("80c80006cafebabe" + "000102030405060708090a0b0c0d0e0f10111213")

    struct KnownAnswer: Sendable, CustomTestStringConvertible {
        var profile: SRTPProfile
        var masterKey: String  // key then salt
        var srtp: String
        var srtcp: String
        var testDescription: String { "\(profile)" }
    }

    static let knownAnswers = [
        KnownAnswer(
            profile: .aeadAes128Gcm,
            masterKey: "0102030405060708090a0b0c0d0e0f10 a0a1a2a3a4a5a6a7a8a9aaab",
            srtp: """
                80e0123400003039cafebabec64c8d8a6e4470bc4a90d0103d8eca09c6aefb6b8ec34852c2018020356fdc78882267889c
                6278e8e637f4ff82fecf05b3d2f5e90588c1a93cd014eee89139c4
                """,
            srtcp: "80c80006cafebabe08d67bd15ff3641a4af06a76bf38bdcdd44a181087579dc6f0f993eaaadedb6156bb88c180000001"),
        KnownAnswer(
            profile: .aes128CmHmacSha1_80,
            masterKey: "0102030405060708090a0b0c0d0e0f10 a0a1a2a3a4a5a6a7a8a9aaabacad",
            srtp: """
                80e0123400003039cafebabee8a1f0670210bdeaa09cb063af0167183493dc17b52e8e6d8cdb85d2037e2bdc0a1de9f3a7
                ef0f197807534eed814143eed44fe903a7be27ac61
                """,
            srtcp: "80c80006cafebabeea2d9740a0a8274ecefb7b54a54457682a6291738000000160da7ac839d8ac8d5633"),
    ]

    static func session(_ answer: KnownAnswer, _ direction: SRTPSession.Direction) throws -> SRTPSession {
        let master = bytes(answer.masterKey)
        return try SRTPSession(profile: answer.profile, key: Array(master.prefix(answer.profile.keyLength)),
                               salt: Array(master.dropFirst(answer.profile.keyLength)), direction: direction)
    }

    @Test func libsrtp2TookOpenSSLForEveryCipherTheProfilesUse() throws {
        _ = try Self.session(Self.knownAnswers[0], .outbound)  // srtp_init, then the replacements
        let backend = SRTPSession.cryptoBackend
        #expect(backend.openSSL == ["AES-128-GCM", "AES-128-ICM", "HMAC-SHA1"])
        #expect(backend.builtIn.isEmpty)
    }

    @Test(arguments: knownAnswers)
    func protectGivesWhatAnotherLibsrtpBuildGives(answer: KnownAnswer) throws {
        let sender = try Self.session(answer, .outbound)
        #expect(try sender.protect(rtp: Self.rtp) == Self.bytes(answer.srtp))
        #expect(try sender.protect(rtcp: Self.rtcp) == Self.bytes(answer.srtcp))
    }

    @Test(arguments: knownAnswers)
    func unprotectOpensWhatAnotherLibsrtpBuildSealedAndRefusesItAltered(answer: KnownAnswer) throws {
        let receiver = try Self.session(answer, .inbound)
        #expect(try receiver.unprotect(srtp: Self.bytes(answer.srtp)) == Self.rtp)
        #expect(try receiver.unprotect(srtcp: Self.bytes(answer.srtcp)) == Self.rtcp)

        // One bit of the payload, the header (authenticated, not encrypted) or the tag: refused.
        let fresh = try Self.session(answer, .inbound)
        let sealed = Self.bytes(answer.srtp)
        for index in [20, 2, sealed.count - 1] {
            var altered = sealed
            altered[index] ^= 0x01
            do {
                _ = try fresh.unprotect(srtp: altered)
                Issue.record("byte \(index) altered was accepted")
            } catch {
                #expect(error.isAuthenticationFailure, "byte \(index): \(error)")
            }
        }
        var alteredReport = Self.bytes(answer.srtcp)
        alteredReport[10] ^= 0x80
        #expect(throws: SRTPError.self) { try fresh.unprotect(srtcp: alteredReport) }
        // Too short to hold a tag: refused, not read past.
        #expect(throws: SRTPError.self) { try fresh.unprotect(srtp: Array(sealed.prefix(14))) }
    }

    /// Sessions are independent: each keeps its own OpenSSL context, so interleaving two keys
    /// gives each packet what its own session alone would.
    @Test(arguments: knownAnswers)
    func interleavedSessionsKeepTheirOwnKeys(answer: KnownAnswer) throws {
        var other = answer
        other.masterKey = String(answer.masterKey.reversed())
        let first = try Self.session(answer, .outbound), second = try Self.session(other, .outbound)
        let secondAlone = try Self.session(other, .outbound)
        let fromSecond = try second.protect(rtp: Self.rtp)
        #expect(try first.protect(rtp: Self.rtp) == Self.bytes(answer.srtp))
        #expect(fromSecond == (try secondAlone.protect(rtp: Self.rtp)))
        #expect(fromSecond != Self.bytes(answer.srtp))
    }
}
