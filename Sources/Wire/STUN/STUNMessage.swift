import NIOCore

/// STUNParseError says why bytes are not a STUN message we accept. A parse that throws
/// leaves the buffer's reader index where it was.
public enum STUNParseError: Error, Sendable, Equatable {
    /// Fewer bytes than the header or the header's length field promise.
    case truncated
    /// The first two bits are not zero or the magic cookie is wrong: not STUN (RFC 8489 §6.3).
    case notSTUN
    /// The header's length is not a multiple of 4.
    case lengthNotMultipleOfFour(Int)
    /// A datagram carries bytes beyond the header's length.
    case trailingBytes(Int)
    /// An attribute's length (with its padding) runs past the end of the message.
    case attributeOverrun(STUNAttributeType)
    /// More attributes than any real message carries.
    case tooManyAttributes
    /// An attribute's value has the wrong size or content for its type.
    case badAttribute(STUNAttributeType, String)
}

/// STUNMessage is a STUN message (RFC 8489 §5): type, transaction ID and attributes.
///
/// Parsing keeps the bytes as received so that MESSAGE-INTEGRITY, MESSAGE-INTEGRITY-SHA256
/// and FINGERPRINT can be checked against them. As RFC 8489 §14 says, attributes after
/// MESSAGE-INTEGRITY are ignored except MESSAGE-INTEGRITY-SHA256 and FINGERPRINT, and
/// nothing after FINGERPRINT counts.
public struct STUNMessage: Sendable {
    public static let magicCookie: UInt32 = 0x2112_A442
    public static let headerLength = 20
    /// More than any request carries; bounds the work one datagram can cause.
    public static let maximumAttributes = 64

    public var type: STUNMessageType
    public var transactionID: TransactionID
    public var attributes: [STUNAttribute]

    /// The message as received and where its integrity and fingerprint attributes start.
    var received: Received?

    struct Received: Sendable {
        var bytes: [UInt8]
        var integrityOffset: Int?
        var integritySHA256Offset: Int?
        var fingerprintOffset: Int?
    }

    public init(type: STUNMessageType, transactionID: TransactionID = .random(), attributes: [STUNAttribute] = []) {
        self.type = type
        self.transactionID = transactionID
        self.attributes = attributes
    }

    public init(_ method: STUNMethod, _ messageClass: STUNClass, transactionID: TransactionID = .random(),
                attributes: [STUNAttribute] = []) {
        self.init(type: STUNMessageType(method: method, class: messageClass),
                  transactionID: transactionID, attributes: attributes)
    }

    // MARK: - Parsing

    /// Cheap check for demultiplexing: the first two bits are zero and the magic cookie is
    /// in place (RFC 8489 §6.3, RFC 7983).
    public static func isMessage(_ bytes: some Collection<UInt8>) -> Bool {
        guard bytes.count >= headerLength else { return false }
        var iterator = bytes.makeIterator()
        let b0 = iterator.next()!, _ = iterator.next()!, _ = iterator.next()!, _ = iterator.next()!
        guard b0 & 0xC0 == 0 else { return false }
        var cookie: UInt32 = 0
        for _ in 0..<4 { cookie = cookie << 8 | UInt32(iterator.next()!) }
        return cookie == magicCookie
    }

    /// How many bytes the message at the front of `bytes` takes (20 + its length field),
    /// or nil when fewer than 20 bytes are there yet. For framing over TCP/TLS.
    public static func frameLength(_ buffer: ByteBuffer) -> Int? {
        guard let length = buffer.getInteger(at: buffer.readerIndex + 2, as: UInt16.self) else { return nil }
        return headerLength + Int(length)
    }

    /// Parses one whole datagram: the bytes must be exactly one message.
    public init(datagram: ByteBuffer) throws(STUNParseError) {
        var buffer = datagram
        try self.init(parsing: &buffer)
        if buffer.readableBytes > 0 { throw .trailingBytes(buffer.readableBytes) }
    }

    /// Parses one whole datagram given as bytes.
    public init(bytes: [UInt8]) throws(STUNParseError) {
        try self.init(datagram: ByteBuffer(bytes: bytes))
    }

    /// Parses the message at the front of `buffer` and moves the reader past it.
    public init(parsing buffer: inout ByteBuffer) throws(STUNParseError) {
        guard buffer.readableBytes >= Self.headerLength else { throw .truncated }
        let start = buffer.readerIndex
        let rawType = buffer.getInteger(at: start, as: UInt16.self)!
        let length = Int(buffer.getInteger(at: start + 2, as: UInt16.self)!)
        let cookie = buffer.getInteger(at: start + 4, as: UInt32.self)!
        guard rawType & 0xC000 == 0, cookie == Self.magicCookie else { throw .notSTUN }
        guard length % 4 == 0 else { throw .lengthNotMultipleOfFour(length) }
        guard buffer.readableBytes >= Self.headerLength + length else { throw .truncated }
        let bytes = buffer.getBytes(at: start, length: Self.headerLength + length)!

        var attributes: [STUNAttribute] = []
        var received = Received(bytes: bytes)
        var offset = Self.headerLength
        var count = 0
        while offset < bytes.count {
            guard bytes.count - offset >= 4 else { throw .attributeOverrun(STUNAttributeType(rawValue: 0)) }
            let type = STUNAttributeType(rawValue: UInt16(bytes[offset]) << 8 | UInt16(bytes[offset + 1]))
            let valueLength = Int(UInt16(bytes[offset + 2]) << 8 | UInt16(bytes[offset + 3]))
            let padded = (valueLength + 3) & ~3
            guard offset + 4 + padded <= bytes.count else { throw .attributeOverrun(type) }
            count += 1
            guard count <= Self.maximumAttributes else { throw .tooManyAttributes }
            let value = Array(bytes[(offset + 4)..<(offset + 4 + valueLength)])

            if received.fingerprintOffset != nil {
                // Nothing after FINGERPRINT counts.
            } else if type == .fingerprint {
                guard valueLength == 4 else { throw .badAttribute(type, "length \(valueLength), want 4") }
                received.fingerprintOffset = offset
                attributes.append(STUNAttribute(type: type, value: value))
            } else if received.integritySHA256Offset != nil {
                // After MESSAGE-INTEGRITY-SHA256 only FINGERPRINT counts.
            } else if type == .messageIntegritySHA256 {
                guard (16...32).contains(valueLength), valueLength % 4 == 0 else {
                    throw .badAttribute(type, "length \(valueLength), want 16-32 in steps of 4")
                }
                received.integritySHA256Offset = offset
                attributes.append(STUNAttribute(type: type, value: value))
            } else if received.integrityOffset != nil {
                // After MESSAGE-INTEGRITY only the two above count.
            } else if type == .messageIntegrity {
                guard valueLength == 20 else { throw .badAttribute(type, "length \(valueLength), want 20") }
                received.integrityOffset = offset
                attributes.append(STUNAttribute(type: type, value: value))
            } else {
                attributes.append(STUNAttribute(type: type, value: value))
            }
            offset += 4 + padded
        }

        type = STUNMessageType(rawValue: rawType)
        transactionID = TransactionID(bytes: bytes[8..<20])!
        self.attributes = attributes
        self.received = received
        buffer.moveReaderIndex(forwardBy: Self.headerLength + length)
    }

    // MARK: - Attributes

    /// The first attribute of `type`, if any.
    public func attribute(_ type: STUNAttributeType) -> STUNAttribute? {
        attributes.first { $0.type == type }
    }

    /// The value of the first attribute of `type`, if any.
    public subscript(_ type: STUNAttributeType) -> [UInt8]? {
        attribute(type)?.value
    }

    public func contains(_ type: STUNAttributeType) -> Bool {
        attributes.contains { $0.type == type }
    }

    public mutating func append(_ type: STUNAttributeType, _ value: [UInt8]) {
        attributes.append(STUNAttribute(type: type, value: value))
    }

    /// Comprehension-required attribute types in this message that are not in `known`
    /// (for UNKNOWN-ATTRIBUTES in a 420 response).
    public func unknownComprehensionRequired(known: Set<STUNAttributeType>) -> [STUNAttributeType] {
        var seen = Set<STUNAttributeType>()
        return attributes.compactMap { attribute in
            guard attribute.type.isComprehensionRequired, !known.contains(attribute.type),
                  seen.insert(attribute.type).inserted else { return nil }
            return attribute.type
        }
    }

    /// The bytes as received, when this message came from `init(parsing:)`.
    public var receivedBytes: [UInt8]? { received?.bytes }

    // MARK: - Serializing

    /// Serializes the message. With a key, MESSAGE-INTEGRITY (HMAC-SHA1) and/or
    /// MESSAGE-INTEGRITY-SHA256 are computed and appended; then FINGERPRINT when asked.
    /// Attributes of those three types already in `attributes` are not written twice.
    public func encoded(
        integrityKey: [UInt8]? = nil, integritySHA256Key: [UInt8]? = nil, fingerprint: Bool = false
    ) -> [UInt8] {
        encoded(integrityKey: integrityKey, integritySHA256Key: integritySHA256Key, fingerprint: fingerprint,
                paddingByte: 0)
    }

    /// `paddingByte` exists for tests: RFC 5769's vectors pad with spaces, and reproducing
    /// them byte for byte needs the same padding (receivers must ignore its value).
    func encoded(
        integrityKey: [UInt8]?, integritySHA256Key: [UInt8]?, fingerprint: Bool, paddingByte: UInt8
    ) -> [UInt8] {
        var out: [UInt8] = []
        out.reserveCapacity(Self.headerLength + attributes.reduce(0) { $0 + 4 + ($1.value.count + 3) & ~3 } + 64)
        out.appendBigEndian(type.rawValue)
        out.appendBigEndian(UInt16(0))
        out.appendBigEndian(Self.magicCookie)
        out += transactionID.bytes
        for attribute in attributes
        where attribute.type != .messageIntegrity && attribute.type != .messageIntegritySHA256
            && attribute.type != .fingerprint {
            Self.appendAttribute(attribute.type, attribute.value, to: &out, paddingByte: paddingByte)
        }
        if let integrityKey {
            Self.setLength(of: &out, to: out.count + 24)
            let mac = STUNIntegrity.hmacSHA1(key: integrityKey, message: out)
            Self.appendAttribute(.messageIntegrity, mac, to: &out)
        }
        if let integritySHA256Key {
            Self.setLength(of: &out, to: out.count + 36)
            let mac = STUNIntegrity.hmacSHA256(key: integritySHA256Key, message: out)
            Self.appendAttribute(.messageIntegritySHA256, mac, to: &out)
        }
        if fingerprint {
            Self.setLength(of: &out, to: out.count + 8)
            let crc = STUNIntegrity.fingerprint(of: out)
            Self.appendAttribute(.fingerprint, withUnsafeBytes(of: crc.bigEndian, Array.init), to: &out)
        }
        Self.setLength(of: &out, to: out.count)
        return out
    }

    /// Writes the message to `buffer`; see `encoded(integrityKey:integritySHA256Key:fingerprint:)`.
    public func write(
        to buffer: inout ByteBuffer, integrityKey: [UInt8]? = nil, integritySHA256Key: [UInt8]? = nil,
        fingerprint: Bool = false
    ) {
        buffer.writeBytes(encoded(integrityKey: integrityKey, integritySHA256Key: integritySHA256Key,
                                  fingerprint: fingerprint))
    }

    static func appendAttribute(
        _ type: STUNAttributeType, _ value: [UInt8], to out: inout [UInt8], paddingByte: UInt8 = 0
    ) {
        out.appendBigEndian(type.rawValue)
        out.appendBigEndian(UInt16(value.count))
        out += value
        let padding = (4 - value.count % 4) % 4
        out += repeatElement(paddingByte, count: padding)
    }

    /// Sets the header's length field so the message ends at `totalLength` bytes.
    static func setLength(of out: inout [UInt8], to totalLength: Int) {
        let length = UInt16(totalLength - headerLength)
        out[2] = UInt8(length >> 8)
        out[3] = UInt8(length & 0xFF)
    }
}

extension STUNMessage {
    /// The success response to a Binding request that came from `address`: the same
    /// transaction, XOR-MAPPED-ADDRESS (RFC 8489 §7.3.1). ICE agents encode it with their
    /// short-term key and a FINGERPRINT (RFC 8445 §7.3).
    public static func bindingSuccess(to request: STUNMessage, from address: TransportAddress) -> STUNMessage {
        STUNMessage(.binding, .successResponse, transactionID: request.transactionID,
                    attributes: [.xorAddress(.xorMappedAddress, address, transactionID: request.transactionID)])
    }
}

extension STUNMessage: Equatable {
    /// Messages are equal when type, transaction ID and attributes are; how they arrived
    /// does not matter.
    public static func == (a: STUNMessage, b: STUNMessage) -> Bool {
        a.type == b.type && a.transactionID == b.transactionID && a.attributes == b.attributes
    }
}

extension Array where Element == UInt8 {
    mutating func appendBigEndian<T: FixedWidthInteger>(_ value: T) {
        Swift.withUnsafeBytes(of: value.bigEndian) { append(contentsOf: $0) }
    }
}
