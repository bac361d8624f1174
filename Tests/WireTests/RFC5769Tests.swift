import Testing
@testable import Wire

/// The test vectors of RFC 5769, byte for byte.
@Suite struct RFC5769Tests {
    static let password = "VOkJxbRl1RmTxUk/WvJxBt"
    static let transactionID = TransactionID(bytes: hex("b7e7a701bc34d686fa87dfae"))!

    // §2.1 Sample Request (short-term credentials, padding bytes are spaces)
    static let request = hex("""
        000100582112a442b7e7a701bc34d686fa87dfae
        802200105354554e207465737420636c69656e74
        002400046e0001ff
        80290008932ff9b151263b36
        000600096576746a3a68367659202020
        000800149aeaa70cbfd8cb56781ef2b5b2d3f249c1b571a2
        80280004e57a3bcf
        """)
    // §2.2 Sample IPv4 Response
    static let ipv4Response = hex("""
        0101003c2112a442b7e7a701bc34d686fa87dfae
        8022000b7465737420766563746f7220
        002000080001a147e112a643
        000800142b91f599fd9e90c38c7489f92af9ba53f06be7d7
        80280004c07d4c96
        """)
    // §2.3 Sample IPv6 Response
    static let ipv6Response = hex("""
        010100482112a442b7e7a701bc34d686fa87dfae
        8022000b7465737420766563746f7220
        002000140002a1470113a9faa5d3f179bc25f4b5bed2b9d9
        00080014a382954e4be67bf11784c97c8292c275bfe3ed41
        80280004c8fb0b4c
        """)
    // §2.4 Sample Request with Long-Term Authentication
    static let longTermRequest = hex("""
        000100602112a44278ad3433c6ad72c029da412e
        00060012e3839ee38388e383aae38383e382afe382b90000
        0015001c662f2f3439396b39353464364f4c33346f4c394653547679363473410014000b6578616d706c652e6f726700
        00080014f67024656dd64a3e02b8e0712e85c9a28ca89666
        """)

    @Test func sampleRequestDecodesAndVerifies() throws {
        let message = try STUNMessage(bytes: Self.request)
        #expect(message.type == STUNMessageType(method: .binding, class: .request))
        #expect(message.transactionID == Self.transactionID)
        #expect(try message.text(.software) == "STUN test client")
        #expect(try message.uint32(.priority) == 0x6e00_01ff)
        #expect(try message.uint64(.iceControlled) == 0x932f_f9b1_5126_3b36)
        #expect(try message.text(.username) == "evtj:h6vY")
        #expect(message.verifyIntegrity(key: STUNCredentials.shortTermKey(password: Self.password)))
        #expect(!message.verifyIntegrity(key: STUNCredentials.shortTermKey(password: "wrong")))
        #expect(message.fingerprintIsValid == true)
    }

    @Test func sampleRequestIsReproducedByteForByte() throws {
        let message = STUNMessage(.binding, .request, transactionID: Self.transactionID, attributes: [
            .text(.software, "STUN test client"),
            .uint32(.priority, 0x6e00_01ff),
            .uint64(.iceControlled, 0x932f_f9b1_5126_3b36),
            .text(.username, "evtj:h6vY"),
        ])
        let bytes = message.encoded(
            integrityKey: STUNCredentials.shortTermKey(password: Self.password), integritySHA256Key: nil,
            fingerprint: true, paddingByte: 0x20)
        #expect(bytes == Self.request)
    }

    @Test func sampleIPv4ResponseDecodesAndIsReproduced() throws {
        let message = try STUNMessage(bytes: Self.ipv4Response)
        #expect(message.type == STUNMessageType(method: .binding, class: .successResponse))
        #expect(try message.text(.software) == "test vector")
        let mapped = try #require(try message.xorAddress(.xorMappedAddress))
        #expect(mapped == TransportAddress(ip: IPAddress("192.0.2.1")!, port: 32853))
        #expect(message.verifyIntegrity(key: Array(Self.password.utf8)))
        #expect(message.fingerprintIsValid == true)

        #expect(Self.sampleResponse(mapping: mapped) == Self.ipv4Response)
    }

    /// §2.2/§2.3's response rebuilt: SOFTWARE, XOR-MAPPED-ADDRESS, integrity with the
    /// short-term password, FINGERPRINT, with the vectors' space padding.
    static func sampleResponse(mapping mapped: TransportAddress) -> [UInt8] {
        STUNMessage(.binding, .successResponse, transactionID: transactionID, attributes: [
            .text(.software, "test vector"),
            .xorAddress(.xorMappedAddress, mapped, transactionID: transactionID),
        ]).encoded(integrityKey: Array(password.utf8), integritySHA256Key: nil, fingerprint: true, paddingByte: 0x20)
    }

    @Test func sampleIPv6ResponseDecodesAndIsReproduced() throws {
        let message = try STUNMessage(bytes: Self.ipv6Response)
        let mapped = try #require(try message.xorAddress(.xorMappedAddress))
        #expect(mapped == TransportAddress(ip: IPAddress("2001:db8:1234:5678:11:2233:4455:6677")!, port: 32853))
        #expect(message.verifyIntegrity(key: Array(Self.password.utf8)))
        #expect(message.fingerprintIsValid == true)

        #expect(Self.sampleResponse(mapping: mapped) == Self.ipv6Response)
    }

    /// §2.4: the password is "The<U+00AD>M<U+00AA>tr<U+2168>", which SASLprep turns into
    /// "TheMatrIX"; the key is MD5 of "<username>:example.org:TheMatrIX".
    @Test func longTermRequestVerifiesWithTheLongTermKey() throws {
        let message = try STUNMessage(bytes: Self.longTermRequest)
        let username = try #require(try message.text(.username))
        #expect(username == "\u{30DE}\u{30C8}\u{30EA}\u{30C3}\u{30AF}\u{30B9}")
        #expect(try message.text(.nonce) == "f//499k954d6OL34oL9FSTvy64sA")
        #expect(try message.text(.realm) == "example.org")
        let key = STUNCredentials.longTermKey(username: username, realm: "example.org", password: "TheMatrIX")
        #expect(message.verifyIntegrity(key: key))
        #expect(!message.verifyIntegrity(
            key: STUNCredentials.longTermKey(username: username, realm: "example.org", password: "thematrix")))
        #expect(message.fingerprintIsValid == nil)
    }

    /// Flipping any single bit of a vector must break its integrity or its fingerprint
    /// (or make it unparseable): nothing covered goes unchecked.
    @Test func everyBitOfTheSampleRequestIsCovered() {
        let key = Array(Self.password.utf8)
        for index in 0..<Self.request.count {
            for bit in 0..<8 {
                var corrupted = Self.request
                corrupted[index] ^= 1 << bit
                guard let message = try? STUNMessage(bytes: corrupted) else { continue }
                let intact = message.verifyIntegrity(key: key) && message.fingerprintIsValid == true
                // Bits of the padding are not covered by the RFC's rules (receivers ignore it)
                // but are covered by the HMAC; so every flip must be caught.
                #expect(!intact, "flip at byte \(index) bit \(bit) went unnoticed")
            }
        }
    }
}
