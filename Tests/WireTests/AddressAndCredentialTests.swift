import Testing
@testable import Wire

@Suite struct IPAddressTests {
    @Test(arguments: [
        ("0.0.0.0", "0.0.0.0"), ("127.0.0.1", "127.0.0.1"), ("255.255.255.255", "255.255.255.255"),
        ("::", "::"), ("::1", "::1"), ("2001:db8::1", "2001:db8::1"),
        ("2001:0DB8:0000:0000:0000:0000:0000:0001", "2001:db8::1"),
        ("fe80::1%eth0", "fe80::1"), ("::ffff:192.0.2.1", "::ffff:c000:201"),
        ("2001:db8:0:1:1:1:1:1", "2001:db8:0:1:1:1:1:1"), ("2001:0:0:1::1", "2001:0:0:1::1"),
        ("1::", "1::"), ("1:0:0:2:0:0:0:3", "1:0:0:2::3"),
    ])
    func textParsesAndPrintsCanonically(text: String, canonical: String) throws {
        let address = try #require(IPAddress(text))
        #expect(address.description == canonical)
        #expect(IPAddress(canonical) == address)
        #expect(IPAddress(bytes: address.bytes) == address)
    }

    @Test(arguments: ["", "1.2.3", "1.2.3.4.5", "256.1.1.1", "1.2.3.04444", "a.b.c.d", "1..2.3",
                      ":::", "1:2:3:4:5:6:7:8:9", "1::2::3", "12345::", "g::", "1:2:3:4:5:6:7::8",
                      "::1.2.3", "1.2.3.4::"])
    func nonsenseIsRefused(text: String) {
        #expect(IPAddress(text) == nil)
    }
}

@Suite struct CredentialTests {
    @Test func longTermKeysAreMD5AndSHA256OfUserRealmPassword() {
        #expect(hexString(STUNCredentials.longTermKey(username: "user", realm: "realm", password: "pass"))
                == "8493fbc53ba582fb4c044c456bdc40eb")
        #expect(hexString(STUNCredentials.longTermKeySHA256(username: "user", realm: "realm", password: "pass"))
                == "07e934117abd40836e7c6329b54731b2b2d2a5f9a71f544922d75e0730d8251b")
    }

    /// The expected password was computed with Python's hmac/hashlib/base64.
    @Test func turnRESTPasswordsMatchAnIndependentImplementation() {
        let credential = TURNRESTCredential(secret: "north-secret", name: "alice", expiry: 1_700_000_000)
        #expect(credential.username == "1700000000:alice")
        #expect(credential.password == "g+jb180fcj+xlpA/2mP60OdIgU0=")
        #expect(TURNRESTCredential.expiry(of: credential.username) == 1_700_000_000)
        #expect(TURNRESTCredential.name(of: credential.username) == "alice")
    }

    @Test(arguments: [("1700000000", Int64(1_700_000_000)), ("1700000000:a:b", 1_700_000_000),
                      ("alice", nil), ("", nil), (":alice", nil), ("-5:alice", nil),
                      ("99999999999999999999:x", nil), ("１２:x", nil)])
    func expiryIsReadFromTheUsername(username: String, expiry: Int64?) {
        #expect(TURNRESTCredential.expiry(of: username) == expiry)
    }

    @Test func crc32IsTheStandardOne() {
        #expect(STUNIntegrity.crc32(Array("123456789".utf8)) == 0xCBF4_3926)
    }
}
