/// AddressFamily is the family byte of address attributes (RFC 8489 §14.1, RFC 8656 §18.6).
public enum AddressFamily: UInt8, Sendable, Hashable {
    case ipv4 = 0x01
    case ipv6 = 0x02

    public init(of ip: IPAddress) { self = ip.isIPv4 ? .ipv4 : .ipv6 }
}

/// TransportProtocol is REQUESTED-TRANSPORT's protocol number (RFC 8656 §18.7).
public enum TransportProtocolNumber: UInt8, Sendable {
    case udp = 17
    case tcp = 6
}

/// STUNErrorCode is the ERROR-CODE attribute (RFC 8489 §14.8): a code 300–699 and a reason.
public struct STUNErrorCode: Sendable, Hashable, Error, CustomStringConvertible {
    public var code: Int
    public var reason: String

    public init(_ code: Int, _ reason: String) {
        self.code = code
        self.reason = reason
    }

    public static let tryAlternate = STUNErrorCode(300, "Try Alternate")
    public static let badRequest = STUNErrorCode(400, "Bad Request")
    public static let unauthorized = STUNErrorCode(401, "Unauthorized")
    public static let forbidden = STUNErrorCode(403, "Forbidden")
    public static let unknownAttribute = STUNErrorCode(420, "Unknown Attribute")
    public static let allocationMismatch = STUNErrorCode(437, "Allocation Mismatch")
    public static let staleNonce = STUNErrorCode(438, "Stale Nonce")
    public static let addressFamilyNotSupported = STUNErrorCode(440, "Address Family not Supported")
    public static let wrongCredentials = STUNErrorCode(441, "Wrong Credentials")
    public static let unsupportedTransportProtocol = STUNErrorCode(442, "Unsupported Transport Protocol")
    public static let peerAddressFamilyMismatch = STUNErrorCode(443, "Peer Address Family Mismatch")
    public static let allocationQuotaReached = STUNErrorCode(486, "Allocation Quota Reached")
    public static let roleConflict = STUNErrorCode(487, "Role Conflict")
    public static let serverError = STUNErrorCode(500, "Server Error")
    public static let insufficientCapacity = STUNErrorCode(508, "Insufficient Capacity")

    public var description: String { "\(code) \(reason)" }

    /// Equal codes are the same error whatever the reason phrase says.
    public static func == (a: STUNErrorCode, b: STUNErrorCode) -> Bool { a.code == b.code }
    public func hash(into hasher: inout Hasher) { hasher.combine(code) }
}

/// Limits from RFC 8489 §14 on text attributes, in bytes of UTF-8.
enum TextLimit {
    static let username = 513
    static let realmNonceSoftware = 763 * 4  // 763 characters, up to 4 bytes each
    static let reason = 763 * 4
}

// MARK: - Building attributes

extension STUNAttribute {
    /// XOR-MAPPED-ADDRESS, XOR-PEER-ADDRESS or XOR-RELAYED-ADDRESS (RFC 8489 §14.2).
    public static func xorAddress(
        _ type: STUNAttributeType, _ address: TransportAddress, transactionID: TransactionID
    ) -> STUNAttribute {
        let mask = xorMask(transactionID: transactionID)
        var value: [UInt8] = [0, AddressFamily(of: address.ip).rawValue]
        value.appendBigEndian(address.port ^ UInt16(STUNMessage.magicCookie >> 16))
        for (index, byte) in address.ip.bytes.enumerated() { value.append(byte ^ mask[index]) }
        return STUNAttribute(type: type, value: value)
    }

    /// MAPPED-ADDRESS (or another plain address attribute), for RFC 3489-era clients.
    public static func address(_ type: STUNAttributeType, _ address: TransportAddress) -> STUNAttribute {
        var value: [UInt8] = [0, AddressFamily(of: address.ip).rawValue]
        value.appendBigEndian(address.port)
        value += address.ip.bytes
        return STUNAttribute(type: type, value: value)
    }

    public static func errorCode(_ error: STUNErrorCode) -> STUNAttribute {
        let reason = Array(error.reason.utf8.prefix(TextLimit.reason))
        return STUNAttribute(
            type: .errorCode,
            value: [0, 0, UInt8(error.code / 100 & 0x07), UInt8(error.code % 100)] + reason)
    }

    public static func unknownAttributes(_ types: [STUNAttributeType]) -> STUNAttribute {
        var value: [UInt8] = []
        for type in types { value.appendBigEndian(type.rawValue) }
        return STUNAttribute(type: .unknownAttributes, value: value)
    }

    /// USERNAME, REALM, NONCE, SOFTWARE: UTF-8 text.
    public static func text(_ type: STUNAttributeType, _ text: String) -> STUNAttribute {
        STUNAttribute(type: type, value: Array(text.utf8))
    }

    public static func uint32(_ type: STUNAttributeType, _ number: UInt32) -> STUNAttribute {
        var value: [UInt8] = []
        value.appendBigEndian(number)
        return STUNAttribute(type: type, value: value)
    }

    public static func uint64(_ type: STUNAttributeType, _ number: UInt64) -> STUNAttribute {
        var value: [UInt8] = []
        value.appendBigEndian(number)
        return STUNAttribute(type: type, value: value)
    }

    /// LIFETIME in seconds (RFC 8656 §18.4).
    public static func lifetime(_ seconds: UInt32) -> STUNAttribute { .uint32(.lifetime, seconds) }

    /// REQUESTED-TRANSPORT (RFC 8656 §18.7): protocol number and three RFFU bytes.
    public static func requestedTransport(_ protocolNumber: UInt8) -> STUNAttribute {
        STUNAttribute(type: .requestedTransport, value: [protocolNumber, 0, 0, 0])
    }

    /// CHANNEL-NUMBER (RFC 8656 §18.1): the number and two RFFU bytes.
    public static func channelNumber(_ channel: UInt16) -> STUNAttribute {
        STUNAttribute(type: .channelNumber, value: [UInt8(channel >> 8), UInt8(channel & 0xFF), 0, 0])
    }

    /// EVEN-PORT (RFC 8656 §18.6): the R bit asks to reserve the next port too.
    public static func evenPort(reserveNext: Bool) -> STUNAttribute {
        STUNAttribute(type: .evenPort, value: [reserveNext ? 0x80 : 0])
    }

    /// REQUESTED-ADDRESS-FAMILY / ADDITIONAL-ADDRESS-FAMILY (RFC 8656 §18.8, §18.11).
    public static func addressFamily(_ type: STUNAttributeType, _ family: AddressFamily) -> STUNAttribute {
        STUNAttribute(type: type, value: [family.rawValue, 0, 0, 0])
    }

    /// ADDRESS-ERROR-CODE (RFC 8656 §18.12): which family failed, and why.
    public static func addressErrorCode(family: AddressFamily, _ error: STUNErrorCode) -> STUNAttribute {
        STUNAttribute(
            type: .addressErrorCode,
            value: [family.rawValue, 0, UInt8(error.code / 100 & 0x07), UInt8(error.code % 100)]
                + Array(error.reason.utf8.prefix(TextLimit.reason)))
    }

    static func xorMask(transactionID: TransactionID) -> [UInt8] {
        var mask: [UInt8] = []
        mask.appendBigEndian(STUNMessage.magicCookie)
        return mask + transactionID.bytes
    }
}

// MARK: - Reading attributes

extension STUNMessage {
    /// Decodes an XOR address attribute's value (RFC 8489 §14.2).
    public func xorAddress(_ type: STUNAttributeType) throws(STUNParseError) -> TransportAddress? {
        guard let value = self[type] else { return nil }
        return try Self.decodeXORAddress(type, value, transactionID: transactionID)
    }

    /// Every XOR address attribute of `type` (CreatePermission may carry several XOR-PEER-ADDRESS).
    public func xorAddresses(_ type: STUNAttributeType) throws(STUNParseError) -> [TransportAddress] {
        var addresses: [TransportAddress] = []
        for attribute in attributes where attribute.type == type {
            addresses.append(try Self.decodeXORAddress(type, attribute.value, transactionID: transactionID))
        }
        return addresses
    }

    static func decodeXORAddress(
        _ type: STUNAttributeType, _ value: [UInt8], transactionID: TransactionID
    ) throws(STUNParseError) -> TransportAddress {
        guard value.count >= 4, let family = AddressFamily(rawValue: value[1]) else {
            throw .badAttribute(type, "unknown address family")
        }
        let expected = family == .ipv4 ? 8 : 20
        guard value.count == expected else { throw .badAttribute(type, "length \(value.count), want \(expected)") }
        let port = (UInt16(value[2]) << 8 | UInt16(value[3])) ^ UInt16(STUNMessage.magicCookie >> 16)
        let mask = STUNAttribute.xorMask(transactionID: transactionID)
        let bytes = value[4...].enumerated().map { $0.element ^ mask[$0.offset] }
        return TransportAddress(ip: IPAddress(bytes: bytes)!, port: port)
    }

    /// Decodes a plain address attribute (MAPPED-ADDRESS, ALTERNATE-SERVER, ...).
    public func address(_ type: STUNAttributeType) throws(STUNParseError) -> TransportAddress? {
        guard let value = self[type] else { return nil }
        guard value.count >= 4, let family = AddressFamily(rawValue: value[1]) else {
            throw .badAttribute(type, "unknown address family")
        }
        let expected = family == .ipv4 ? 8 : 20
        guard value.count == expected else { throw .badAttribute(type, "length \(value.count), want \(expected)") }
        return TransportAddress(ip: IPAddress(bytes: value[4...])!, port: UInt16(value[2]) << 8 | UInt16(value[3]))
    }

    public func errorCode() throws(STUNParseError) -> STUNErrorCode? {
        guard let value = self[.errorCode] else { return nil }
        guard value.count >= 4 else { throw .badAttribute(.errorCode, "shorter than 4 bytes") }
        let errorClass = Int(value[2] & 0x07), number = Int(value[3])
        guard (3...6).contains(errorClass), number < 100 else {
            throw .badAttribute(.errorCode, "code \(errorClass * 100 + number) outside 300-699")
        }
        return STUNErrorCode(errorClass * 100 + number, String(decoding: value[4...], as: UTF8.self))
    }

    public func unknownAttributes() throws(STUNParseError) -> [STUNAttributeType]? {
        guard let value = self[.unknownAttributes] else { return nil }
        guard value.count % 2 == 0 else { throw .badAttribute(.unknownAttributes, "odd length") }
        return stride(from: 0, to: value.count, by: 2).map {
            STUNAttributeType(rawValue: UInt16(value[$0]) << 8 | UInt16(value[$0 + 1]))
        }
    }

    /// USERNAME, REALM, NONCE or SOFTWARE as text; refuses invalid UTF-8 and over-long values.
    public func text(_ type: STUNAttributeType) throws(STUNParseError) -> String? {
        guard let value = self[type] else { return nil }
        let limit = type == .username ? TextLimit.username : TextLimit.realmNonceSoftware
        guard value.count <= limit else { throw .badAttribute(type, "longer than \(limit) bytes") }
        guard let text = String(validating: value, as: UTF8.self) else {
            throw .badAttribute(type, "not UTF-8")
        }
        return text
    }

    public func uint32(_ type: STUNAttributeType) throws(STUNParseError) -> UInt32? {
        guard let value = self[type] else { return nil }
        guard value.count == 4 else { throw .badAttribute(type, "length \(value.count), want 4") }
        return value.reduce(0) { $0 << 8 | UInt32($1) }
    }

    public func uint64(_ type: STUNAttributeType) throws(STUNParseError) -> UInt64? {
        guard let value = self[type] else { return nil }
        guard value.count == 8 else { throw .badAttribute(type, "length \(value.count), want 8") }
        return value.reduce(0) { $0 << 8 | UInt64($1) }
    }

    public func lifetime() throws(STUNParseError) -> UInt32? { try uint32(.lifetime) }

    /// REQUESTED-TRANSPORT's protocol number.
    public func requestedTransport() throws(STUNParseError) -> UInt8? {
        guard let value = self[.requestedTransport] else { return nil }
        guard value.count == 4 else { throw .badAttribute(.requestedTransport, "length \(value.count), want 4") }
        return value[0]
    }

    /// CHANNEL-NUMBER's number (not yet checked against the 0x4000–0x4FFF range).
    public func channelNumber() throws(STUNParseError) -> UInt16? {
        guard let value = self[.channelNumber] else { return nil }
        guard value.count == 4 else { throw .badAttribute(.channelNumber, "length \(value.count), want 4") }
        return UInt16(value[0]) << 8 | UInt16(value[1])
    }

    /// EVEN-PORT's R bit, or nil without the attribute.
    public func evenPort() throws(STUNParseError) -> Bool? {
        guard let value = self[.evenPort] else { return nil }
        guard value.count == 1 else { throw .badAttribute(.evenPort, "length \(value.count), want 1") }
        return value[0] & 0x80 != 0
    }

    /// REQUESTED-/ADDITIONAL-ADDRESS-FAMILY; throws on an unknown family byte.
    public func addressFamily(_ type: STUNAttributeType) throws(STUNParseError) -> AddressFamily? {
        guard let value = self[type] else { return nil }
        guard value.count == 4 else { throw .badAttribute(type, "length \(value.count), want 4") }
        guard let family = AddressFamily(rawValue: value[0]) else {
            throw .badAttribute(type, "unknown family \(value[0])")
        }
        return family
    }

    /// RESERVATION-TOKEN's 8 bytes.
    public func reservationToken() throws(STUNParseError) -> UInt64? { try uint64(.reservationToken) }
}
