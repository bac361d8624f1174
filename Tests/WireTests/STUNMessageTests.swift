import NIOCore
import Testing
@testable import Wire

@Suite struct STUNMessageTypeTests {
    @Test(arguments: [
        (STUNMethod.binding, STUNClass.request, UInt16(0x0001)),
        (.binding, .indication, 0x0011),
        (.binding, .successResponse, 0x0101),
        (.binding, .errorResponse, 0x0111),
        (.allocate, .request, 0x0003),
        (.allocate, .successResponse, 0x0103),
        (.allocate, .errorResponse, 0x0113),
        (.send, .indication, 0x0016),
        (.data, .indication, 0x0017),
        (.createPermission, .request, 0x0008),
        (.channelBind, .request, 0x0009),
        (.refresh, .errorResponse, 0x0114),
        (STUNMethod(rawValue: 0xFFF), .errorResponse, 0x3FFF),
    ])
    func typesInterleaveClassAndMethodBits(method: STUNMethod, messageClass: STUNClass, raw: UInt16) {
        let type = STUNMessageType(method: method, class: messageClass)
        #expect(type.rawValue == raw)
        #expect(STUNMessageType(rawValue: raw) == type)
    }

    @Test func everyTypeRoundTrips() {
        for raw in UInt16(0)...0x3FFF {
            #expect(STUNMessageType(rawValue: raw).rawValue == raw)
        }
    }
}

@Suite struct STUNMessageTests {
    static let key = Array("secret key".utf8)

    static func sample() -> STUNMessage {
        let id = TransactionID(high: 0x0102_0304, low: 0x0506_0708_090A_0B0C)
        return STUNMessage(.allocate, .request, transactionID: id, attributes: [
            .requestedTransport(17),
            .lifetime(600),
            .text(.username, "1700000000:alice"),
            .text(.realm, "switchboard"),
            .text(.nonce, "abc"),
            .xorAddress(.xorPeerAddress, TransportAddress(ip: IPAddress("2001:db8::1")!, port: 4000), transactionID: id),
            .evenPort(reserveNext: true),
            STUNAttribute(type: .dontFragment, value: []),
        ])
    }

    @Test func encodeThenParseGivesTheSameMessage() throws {
        let message = Self.sample()
        let decoded = try STUNMessage(bytes: message.encoded())
        #expect(decoded == message)
        #expect(decoded.receivedBytes == message.encoded())
    }

    @Test func integrityAndFingerprintAreCheckedOnTheWayIn() throws {
        let bytes = Self.sample().encoded(integrityKey: Self.key, integritySHA256Key: Self.key, fingerprint: true)
        let decoded = try STUNMessage(bytes: bytes)
        #expect(decoded.verifyIntegrity(key: Self.key))
        #expect(decoded.verifyIntegritySHA256(key: Self.key))
        #expect(!decoded.verifyIntegrity(key: Array("other".utf8)))
        #expect(!decoded.verifyIntegritySHA256(key: Array("other".utf8)))
        #expect(decoded.fingerprintIsValid == true)
        // Re-encoding the decoded message with the same key gives the same bytes.
        #expect(decoded.encoded(integrityKey: Self.key, integritySHA256Key: Self.key, fingerprint: true) == bytes)
    }

    @Test func aMessageWithoutIntegrityNeverVerifies() throws {
        let decoded = try STUNMessage(bytes: Self.sample().encoded())
        #expect(!decoded.verifyIntegrity(key: Self.key))
        #expect(!decoded.verifyIntegritySHA256(key: Self.key))
        #expect(decoded.fingerprintIsValid == nil)
        // Nor does one built in memory (nothing was received).
        #expect(!Self.sample().verifyIntegrity(key: Self.key))
    }

    /// RFC 8489 §14: attributes after MESSAGE-INTEGRITY are ignored (except -SHA256 and
    /// FINGERPRINT), so an attacker cannot append unauthenticated attributes.
    @Test func attributesAfterMessageIntegrityAreIgnored() throws {
        var bytes = Self.sample().encoded(integrityKey: Self.key)
        // Append LIFETIME 0 after the integrity attribute and fix up the length field.
        bytes += [0x00, 0x0D, 0x00, 0x04, 0, 0, 0, 0]
        bytes += [0x00, 0x13, 0x00, 0x01, 0xFF, 0, 0, 0]  // DATA
        let length = bytes.count - 20
        bytes[2] = UInt8(length >> 8); bytes[3] = UInt8(length & 0xFF)
        let decoded = try STUNMessage(bytes: bytes)
        #expect(try decoded.lifetime() == 600)
        #expect(decoded.attributes.filter { $0.type == .lifetime }.count == 1)
        #expect(!decoded.contains(.data))
        #expect(decoded.verifyIntegrity(key: Self.key))
    }

    @Test func attributesAfterFingerprintAreIgnored() throws {
        var bytes = Self.sample().encoded(fingerprint: true)
        bytes += [0x80, 0x22, 0x00, 0x04] + Array("evil".utf8)
        let length = bytes.count - 20
        bytes[2] = UInt8(length >> 8); bytes[3] = UInt8(length & 0xFF)
        let decoded = try STUNMessage(bytes: bytes)
        #expect(!decoded.contains(.software))
        #expect(decoded.fingerprintIsValid == true)
    }

    @Test func unknownComprehensionRequiredAttributesAreListedOnce() throws {
        var message = Self.sample()
        message.append(STUNAttributeType(rawValue: 0x7777), [1])
        message.append(STUNAttributeType(rawValue: 0x7777), [2])
        message.append(STUNAttributeType(rawValue: 0xC001), [3])  // optional: not listed
        let decoded = try STUNMessage(bytes: message.encoded())
        let known: Set<STUNAttributeType> = [.requestedTransport, .lifetime, .username, .realm, .nonce,
                                             .xorPeerAddress, .evenPort, .dontFragment]
        #expect(decoded.unknownComprehensionRequired(known: known) == [STUNAttributeType(rawValue: 0x7777)])
    }

    @Test func errorCodesAndUnknownAttributesRoundTrip() throws {
        let response = STUNMessage(.allocate, .errorResponse, attributes: [
            .errorCode(.staleNonce),
            .unknownAttributes([STUNAttributeType(rawValue: 0x7777), .evenPort]),
            .addressErrorCode(family: .ipv6, .addressFamilyNotSupported),
        ])
        let decoded = try STUNMessage(bytes: response.encoded())
        let error = try #require(try decoded.errorCode())
        #expect(error.code == 438 && error.reason == "Stale Nonce")
        #expect(try decoded.unknownAttributes() == [STUNAttributeType(rawValue: 0x7777), .evenPort])
        #expect(decoded[.addressErrorCode]?.prefix(4) == [2, 0, 4, 40])
    }

    @Test func typedReadersRefuseWrongSizes() throws {
        let id = TransactionID.random()
        let message = STUNMessage(.allocate, .request, transactionID: id, attributes: [
            STUNAttribute(type: .lifetime, value: [0, 0, 1]),
            STUNAttribute(type: .requestedTransport, value: [17]),
            STUNAttribute(type: .channelNumber, value: [0x40, 0]),
            STUNAttribute(type: .xorPeerAddress, value: [0, 1, 0, 0, 1, 2, 3]),
            STUNAttribute(type: .xorRelayedAddress, value: [0, 3, 0, 0, 1, 2, 3, 4]),
            STUNAttribute(type: .errorCode, value: [0, 0, 7, 1]),
            STUNAttribute(type: .username, value: [0xFF, 0xFE]),
            STUNAttribute(type: .evenPort, value: []),
            STUNAttribute(type: .requestedAddressFamily, value: [3, 0, 0, 0]),
            STUNAttribute(type: .unknownAttributes, value: [0, 1, 2]),
            STUNAttribute(type: .realm, value: Array(repeating: 0x61, count: 763 * 4 + 1)),
        ])
        let decoded = try STUNMessage(bytes: message.encoded())
        #expect(throws: STUNParseError.self) { try decoded.lifetime() }
        #expect(throws: STUNParseError.self) { try decoded.requestedTransport() }
        #expect(throws: STUNParseError.self) { try decoded.channelNumber() }
        #expect(throws: STUNParseError.self) { try decoded.xorAddress(.xorPeerAddress) }
        #expect(throws: STUNParseError.self) { try decoded.xorAddress(.xorRelayedAddress) }
        #expect(throws: STUNParseError.self) { try decoded.errorCode() }
        #expect(throws: STUNParseError.self) { try decoded.text(.username) }
        #expect(throws: STUNParseError.self) { try decoded.evenPort() }
        #expect(throws: STUNParseError.self) { try decoded.addressFamily(.requestedAddressFamily) }
        #expect(throws: STUNParseError.self) { try decoded.unknownAttributes() }
        #expect(throws: STUNParseError.self) { try decoded.text(.realm) }
    }

    // MARK: Malformed input

    @Test(arguments: [
        ([UInt8](), STUNParseError.truncated),
        (Array(repeating: 0, count: 19), .truncated),
        // first two bits set
        (hex("c0010000 2112a442 000000000000000000000000"), .notSTUN),
        // wrong magic cookie (RFC 3489)
        (hex("00010000 2112a443 000000000000000000000000"), .notSTUN),
        // length not a multiple of 4
        (hex("00010002 2112a442 000000000000000000000000 0000"), .lengthNotMultipleOfFour(2)),
        // length says 8, only 4 there
        (hex("00010008 2112a442 000000000000000000000000 00000000"), .truncated),
        // extra bytes in the datagram
        (hex("00010000 2112a442 000000000000000000000000 00000000"), .trailingBytes(4)),
        // attribute length runs past the end
        (hex("00010008 2112a442 000000000000000000000000 80220010 41414141"), .attributeOverrun(.software)),
        // attribute value fits but its padding does not
        (hex("00010008 2112a442 000000000000000000000000 00060005 41414141"), .attributeOverrun(.username)),
        // MESSAGE-INTEGRITY with a wrong length
        (hex("00010008 2112a442 000000000000000000000000 00080004 00000000"),
         .badAttribute(.messageIntegrity, "length 4, want 20")),
        // FINGERPRINT with a wrong length
        (hex("00010008 2112a442 000000000000000000000000 80280000 00000000"),
         .badAttribute(.fingerprint, "length 0, want 4")),
        // a lone partial attribute header
        (hex("00010004 2112a442 000000000000000000000000 8028"), .truncated),
    ])
    func malformedDatagramsGiveATypedError(bytes: [UInt8], error: STUNParseError) {
        #expect(throws: error) { try STUNMessage(bytes: bytes) }
    }

    @Test func tooManyAttributesAreRefused() {
        var message = STUNMessage(.binding, .request)
        for _ in 0...STUNMessage.maximumAttributes { message.append(.priority, [0, 0, 0, 1]) }
        #expect(throws: STUNParseError.tooManyAttributes) { try STUNMessage(bytes: message.encoded()) }
    }

    @Test func aFailedParseLeavesTheReaderIndexAlone() {
        var buffer = ByteBuffer(bytes: hex("00010008 2112a442 000000000000000000000000 80220010 41414141"))
        let before = buffer.readerIndex
        #expect(throws: STUNParseError.self) { try STUNMessage(parsing: &buffer) }
        #expect(buffer.readerIndex == before)
    }

    @Test func parsingFromAStreamConsumesExactlyOneMessage() throws {
        let first = Self.sample().encoded()
        let second = STUNMessage(.binding, .request).encoded()
        var buffer = ByteBuffer(bytes: first + second + [0x40])
        #expect(try STUNMessage(parsing: &buffer) == Self.sample())
        #expect(try STUNMessage(parsing: &buffer).type.method == .binding)
        #expect(buffer.readableBytes == 1)
    }

    @Test func isMessageTellsSTUNFromEverythingElse() {
        #expect(STUNMessage.isMessage(Self.sample().encoded()))
        #expect(!STUNMessage.isMessage(hex("00010000 2112a443 000000000000000000000000")))
        #expect(!STUNMessage.isMessage(hex("40000004 deadbeef")))
        #expect(!STUNMessage.isMessage([UInt8](repeating: 0, count: 10)))
    }

    /// Every prefix of a valid message fails cleanly: no crash, no out-of-bounds read.
    @Test func everyTruncationFailsCleanly() {
        let bytes = Self.sample().encoded(integrityKey: Self.key, integritySHA256Key: Self.key, fingerprint: true)
        for length in 0..<bytes.count {
            #expect(throws: STUNParseError.self) { try STUNMessage(bytes: Array(bytes.prefix(length))) }
        }
    }
}

@Suite struct BindingSuccessTests {
    @Test(arguments: [TransportAddress(ip: IPAddress("192.0.2.1")!, port: 32853),
                      TransportAddress(ip: IPAddress("2001:db8:1234:5678:11:2233:4455:6677")!, port: 32853)])
    func answersTheRequestsTransactionWithTheSourceAddress(address: TransportAddress) throws {
        let request = STUNMessage(.binding, .request)
        let key = STUNCredentials.shortTermKey(password: "VOkJxbRl1RmTxUk/WvJxBt")
        let bytes = STUNMessage.bindingSuccess(to: request, from: address).encoded(integrityKey: key, fingerprint: true)
        let response = try STUNMessage(bytes: bytes)
        #expect(response.type == STUNMessageType(method: .binding, class: .successResponse))
        #expect(response.transactionID == request.transactionID)
        #expect(try response.xorAddress(.xorMappedAddress) == address)
        #expect(response.verifyIntegrity(key: key))
        #expect(response.fingerprintIsValid == true)
    }
}
