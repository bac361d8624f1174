import DTLS
import Foundation
import Testing
import Wire
@testable import SRTP

/// OpenSSL behind libsrtp2's ciphers (`SRTPCrypto`): libsrtp2 took every replacement (each
/// passed its known-answer tests there), and packets protected through them are byte for byte
/// what another libsrtp build makes: the known answers below come from pylibsrtp 1.0.0 (PyPI,
/// aiortc's SRTP, its own libsrtp and OpenSSL), for the same master key, salt and packets.
@Suite struct SRTPCryptoTests {
    static func bytes(_ text: String) -> [UInt8] {
        guard let bytes = hexBytes(text) else { preconditionFailure("not hex: \(text)") }
        return bytes
    }

    /// RTP packets (PT 96, marker, sequence 0x1234 to 0x1236, timestamp 12345, SSRC 0xcafebabe,
    /// 48 bytes counting up) and an RTCP sender report header with 20 more bytes, sent twice.
    /// Three packets and two reports: after the first, each reuses its key's OpenSSL context
    /// with only a new IV.
    static let rtp = [0x1234, 0x1235, 0x1236].map {
        bytes(String(format: "80e0%04x00003039cafebabe", $0) + "000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f202122232425262728292a2b2c2d2e2f")
    }
    static let rtcp = bytes("80c80006cafebabe" + "000102030405060708090a0b0c0d0e0f10111213")

    struct KnownAnswer: Sendable, CustomTestStringConvertible {
        var profile: SRTPProfile
        var masterKey: String  // key then salt
        var srtp: [String]
        var srtcp: [String]
        var testDescription: String { "\(profile)" }
    }

    static let knownAnswers = [
        KnownAnswer(
            profile: .aeadAes128Gcm,
            masterKey: "0102030405060708090a0b0c0d0e0f10 a0a1a2a3a4a5a6a7a8a9aaab",
            srtp: [
                """
                80e0123400003039cafebabec64c8d8a6e4470bc4a90d0103d8eca09c6aefb6b8ec34852c2018020356fdc78882267889c
                6278e8e637f4ff82fecf05b3d2f5e90588c1a93cd014eee89139c4
                """,
                """
                80e0123500003039cafebabe2ba473391ce99fc8dbce572333a6b38b5845196668c072b58aaf4389bed507521a7885b07a
                c203a706fb6a23d7ddc196c3be02a3daf892c19c6da15443c63b56
                """,
                """
                80e0123600003039cafebabee9576367cef2fed6ac93487e64e1b3b396e332d03a51ac1d272ce57661e52c483c9ba88b52
                8ff1ef6b3297655dc944cc00d8a1a22b38fd8424b825137db6b236
                """,
            ],
            srtcp: [
                "80c80006cafebabe08d67bd15ff3641a4af06a76bf38bdcdd44a181087579dc6f0f993eaaadedb6156bb88c180000001",
                "80c80006cafebabefc2e7f0bf2bba3e55469e7521317239c722ee4e05b5d34db7de5f9a5bd54f71583ed0fba80000002",
            ]),
        KnownAnswer(
            profile: .aes128CmHmacSha1_80,
            masterKey: "0102030405060708090a0b0c0d0e0f10 a0a1a2a3a4a5a6a7a8a9aaabacad",
            srtp: [
                """
                80e0123400003039cafebabee8a1f0670210bdeaa09cb063af0167183493dc17b52e8e6d8cdb85d2037e2bdc0a1de9f3a7
                ef0f197807534eed814143eed44fe903a7be27ac61
                """,
                """
                80e0123500003039cafebabe90eb852d96544cde22550e9a15b6f145c7ce722ac87e39e82e541a506a4c2e9ab1ffeaa9d8
                7a89b69771b554a2fd5443b5fe1987f0702bc3d96d
                """,
                """
                80e0123600003039cafebabe46501c177831c7f77d2ef4cc09168497172e1de58699dc2300af0ec4fed52c93432e42b3f2
                48a1f577b2d11be02a8552761a021643fc5a59ecb5
                """,
            ],
            srtcp: [
                "80c80006cafebabeea2d9740a0a8274ecefb7b54a54457682a6291738000000160da7ac839d8ac8d5633",
                "80c80006cafebabee995459adaaf5b12f37f9c666f079cc37c30b827800000021a55dcf0386f06a18c04",
            ]),
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
        for (packet, sealed) in zip(Self.rtp, answer.srtp) { #expect(try sender.protect(rtp: packet) == Self.bytes(sealed)) }
        for sealed in answer.srtcp { #expect(try sender.protect(rtcp: Self.rtcp) == Self.bytes(sealed)) }
    }

    @Test(arguments: knownAnswers)
    func unprotectOpensWhatAnotherLibsrtpBuildSealedAndRefusesItAltered(answer: KnownAnswer) throws {
        let receiver = try Self.session(answer, .inbound)
        for (packet, sealed) in zip(Self.rtp, answer.srtp) { #expect(try receiver.unprotect(srtp: Self.bytes(sealed)) == packet) }
        for sealed in answer.srtcp { #expect(try receiver.unprotect(srtcp: Self.bytes(sealed)) == Self.rtcp) }

        // One bit of the payload, the header (authenticated, not encrypted) or the tag: refused.
        let fresh = try Self.session(answer, .inbound)
        let sealed = Self.bytes(answer.srtp[0])
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
        var alteredReport = Self.bytes(answer.srtcp[0])
        alteredReport[10] ^= 0x80
        do {
            _ = try fresh.unprotect(srtcp: alteredReport)
            Issue.record("an altered report was accepted")
        } catch {
            #expect(error.isAuthenticationFailure, "\(error)")
        }
        // Shorter than a header and a tag: refused (by libsrtp2 before any cipher is called).
        #expect(throws: SRTPError.self) { try fresh.unprotect(srtp: Array(sealed.prefix(14))) }
        // The unaltered packet still opens: nothing above moved the session on.
        #expect(try fresh.unprotect(srtp: sealed) == Self.rtp[0])
    }

    /// Sessions are independent: each keeps its own OpenSSL context, so interleaving two keys
    /// gives each packet what its own session alone would.
    @Test(arguments: knownAnswers)
    func interleavedSessionsKeepTheirOwnKeys(answer: KnownAnswer) throws {
        var other = answer
        other.masterKey = String(answer.masterKey.reversed())
        let first = try Self.session(answer, .outbound), second = try Self.session(other, .outbound)
        let secondAlone = try Self.session(other, .outbound)
        for (packet, sealed) in zip(Self.rtp, answer.srtp) {
            let fromSecond = try second.protect(rtp: packet)
            #expect(try first.protect(rtp: packet) == Self.bytes(sealed))
            #expect(fromSecond == (try secondAlone.protect(rtp: packet)))
        }
    }
}
