import Foundation
import Testing
@testable import Store

@Suite struct SecretsTests {
    @Test func generatedKeysAreURLSafeAndCarry256Bits() {
        let alphabet = Set("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_")
        var seen = Set<String>()
        for _ in 0..<1000 {
            let key = PeerKey.generate()
            #expect(key.text.count == 43)
            #expect(key.text.allSatisfy(alphabet.contains))
            #expect(Base64URL.decode(key.text)?.count == 32)
            seen.insert(key.text)
        }
        #expect(seen.count == 1000)
    }

    @Test func aHashVerifiesItsKeyAndNoOther() {
        let key = PeerKey.generate()
        let hash = KeyHash.make(for: key)
        #expect(KeyHash.verify(key.text, against: hash))
        #expect(!KeyHash.verify(PeerKey.generate().text, against: hash))
        #expect(!KeyHash.verify(String(key.text.dropLast()), against: hash))
        #expect(!KeyHash.verify(key.text + "A", against: hash))
        #expect(!KeyHash.verify("", against: hash))
        #expect(!hash.contains(key.text))
        #expect(hash.hasPrefix("hmac-sha256$"))
    }

    @Test func theSameKeyHashesDifferentlyEachTime() {
        let key = PeerKey.generate()
        let a = KeyHash.make(for: key), b = KeyHash.make(for: key)
        #expect(a != b)
        #expect(KeyHash.verify(key.text, against: a) && KeyHash.verify(key.text, against: b))
    }

    @Test(arguments: ["", "hmac-sha256", "hmac-sha256$$", "md5$abc$def", "hmac-sha256$!!$AAAA",
                      "hmac-sha256$AAAA$AAAA$AAAA", "hmac-sha256$AAAA$"])
    func malformedStoredHashesNeverVerify(stored: String) {
        #expect(!KeyHash.verify("anything", against: stored))
        #expect(!KeyHash.verify("", against: stored))
    }

    /// HMAC-SHA256 test case 2 of RFC 4231 ("Jefe" / "what do ya want for nothing?"),
    /// so the digest is the standard one and not something home-made.
    @Test func theDigestIsStandardHMACSHA256() {
        let digest = KeyHash.digest(key: "what do ya want for nothing?", salt: Array("Jefe".utf8))
        let hex = digest.map { String(format: "%02x", $0) }.joined()
        #expect(hex == "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843")
    }

    @Test func base64URLRoundTripsAndRejectsPaddingAndForeignCharacters() {
        for length in 0..<40 {
            let bytes = (0..<length).map { UInt8(truncatingIfNeeded: $0 &* 37 &+ 250) }
            let text = Base64URL.encode(bytes)
            #expect(!text.contains("=") && !text.contains("+") && !text.contains("/"))
            #expect(Base64URL.decode(text) == bytes)
        }
        // RFC 4648 §10's vectors, and the two characters base64url changes (§5).
        #expect(Base64URL.encode(Array("foobar".utf8)) == "Zm9vYmFy")
        #expect(Base64URL.encode(Array("fo".utf8)) == "Zm8")
        #expect(Base64URL.encode([0xFB, 0xFF, 0xBF]) == "-_-_")
        #expect(Base64URL.decode("AA==") == nil)
        #expect(Base64URL.decode("A*") == nil)
    }
}
