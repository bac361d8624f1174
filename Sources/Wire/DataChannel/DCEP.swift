import NIOCore

/// DataChannelPPID is the SCTP payload protocol identifier of a WebRTC data channel message
/// (RFC 8831 §8): it says whether the bytes are DCEP, a string or binary, and marks empty
/// messages, which SCTP cannot carry and so travel as one 0x00 byte.
public enum DataChannelPPID: UInt32, Sendable, Equatable {
    case dcep = 50
    case string = 51
    /// Deprecated (RFC 8831 §8): a part of a string message that continues in the next one.
    case stringPartial = 52
    case binary = 53
    /// Deprecated (RFC 8831 §8): a part of a binary message that continues in the next one.
    case binaryPartial = 54
    case stringEmpty = 56
    case binaryEmpty = 57

    /// The PPID to send a message with; empty messages get 56/57 and one 0x00 byte.
    public static func outgoing(binary: Bool, empty: Bool) -> DataChannelPPID {
        switch (binary, empty) {
        case (false, false): .string
        case (true, false): .binary
        case (false, true): .stringEmpty
        case (true, true): .binaryEmpty
        }
    }

    /// True for the PPIDs that carry binary data (53, 54, 57).
    public var isBinary: Bool { self == .binary || self == .binaryPartial || self == .binaryEmpty }
    /// True for the empty-message PPIDs, whose one payload byte is not data.
    public var isEmptyMessage: Bool { self == .stringEmpty || self == .binaryEmpty }
    /// True for the deprecated partial PPIDs: the message continues in the next SCTP message.
    public var isPartial: Bool { self == .stringPartial || self == .binaryPartial }
}

/// DCEPParseError says why an SCTP message on PPID 50 is not a DCEP message.
public enum DCEPParseError: Error, Sendable, Equatable {
    case truncated
    case unknownMessageType(UInt8)
    case unknownChannelType(UInt8)
    /// The message is not exactly 12 bytes plus the label and protocol (or 1 byte for an ACK).
    case lengthMismatch(expected: Int, actual: Int)
    case labelNotUTF8
    case protocolNotUTF8
}

/// DataChannelOpen is DCEP's DATA_CHANNEL_OPEN (RFC 8832 §5.1): big-endian, no padding —
/// type 0x03, channel type, priority, reliability parameter, label length, protocol length,
/// label, protocol.
public struct DataChannelOpen: Sendable, Equatable {
    public static let messageType: UInt8 = 0x03
    public static let fixedLength = 12
    static let unorderedBit: UInt8 = 0x80

    /// Reliability is the channel type without its unordered bit, with its parameter.
    public enum Reliability: Sendable, Equatable {
        /// 0x00; the reliability parameter is ignored.
        case reliable
        /// 0x01: at most this many retransmissions.
        case maxRetransmits(UInt32)
        /// 0x02: retransmit for at most this many milliseconds.
        case maxLifetime(milliseconds: UInt32)
    }

    public var ordered: Bool
    public var reliability: Reliability
    public var priority: UInt16
    public var label: String
    public var `protocol`: String

    public init(ordered: Bool = true, reliability: Reliability = .reliable, priority: UInt16 = 256,
                label: String, protocol: String = "") {
        self.ordered = ordered
        self.reliability = reliability
        self.priority = priority
        self.label = label
        self.protocol = `protocol`
    }

    /// The channel type byte, with 0x80 set for unordered channels.
    public var channelType: UInt8 {
        let base: UInt8 = switch reliability {
        case .reliable: 0x00
        case .maxRetransmits: 0x01
        case .maxLifetime: 0x02
        }
        return ordered ? base : base | Self.unorderedBit
    }

    var reliabilityParameter: UInt32 {
        switch reliability {
        case .reliable: 0
        case .maxRetransmits(let count): count
        case .maxLifetime(let milliseconds): milliseconds
        }
    }

    /// True when the label and protocol each fit the 16-bit length fields.
    public var fitsLengthFields: Bool { label.utf8.count <= 0xFFFF && `protocol`.utf8.count <= 0xFFFF }

    /// Parses one whole SCTP message (PPID 50) that starts with type 0x03: the buffer must
    /// hold exactly this message. On error the reader index does not move.
    public init(parsing buffer: inout ByteBuffer) throws(DCEPParseError) {
        let start = buffer.readerIndex
        guard let type = buffer.getInteger(at: start, as: UInt8.self),
              let channelType = buffer.getInteger(at: start + 1, as: UInt8.self),
              let priority = buffer.getInteger(at: start + 2, as: UInt16.self),
              let parameter = buffer.getInteger(at: start + 4, as: UInt32.self),
              let labelLength = buffer.getInteger(at: start + 8, as: UInt16.self),
              let protocolLength = buffer.getInteger(at: start + 10, as: UInt16.self) else {
            if let type = buffer.getInteger(at: start, as: UInt8.self), type != Self.messageType {
                throw .unknownMessageType(type)
            }
            throw .truncated
        }
        guard type == Self.messageType else { throw .unknownMessageType(type) }
        let reliability: Reliability = switch channelType & ~Self.unorderedBit {
        case 0x00: .reliable
        case 0x01: .maxRetransmits(parameter)
        case 0x02: .maxLifetime(milliseconds: parameter)
        default: throw .unknownChannelType(channelType)
        }
        let expected = Self.fixedLength + Int(labelLength) + Int(protocolLength)
        guard buffer.readableBytes == expected else {
            if buffer.readableBytes < expected { throw .truncated }
            throw .lengthMismatch(expected: expected, actual: buffer.readableBytes)
        }
        guard let labelBytes = buffer.getSlice(at: start + Self.fixedLength, length: Int(labelLength)),
              let protocolBytes = buffer.getSlice(at: start + Self.fixedLength + Int(labelLength), length: Int(protocolLength))
        else { throw .truncated }
        guard let label = String(validatingUTF8Bytes: labelBytes) else { throw .labelNotUTF8 }
        guard let proto = String(validatingUTF8Bytes: protocolBytes) else { throw .protocolNotUTF8 }
        self.ordered = channelType & Self.unorderedBit == 0
        self.reliability = reliability
        self.priority = priority
        self.label = label
        self.protocol = proto
        buffer.moveReaderIndex(forwardBy: expected)
    }

    /// Writes the message. The label and protocol must fit their 16-bit length fields
    /// (`fitsLengthFields`); callers check before building one.
    public func write(to buffer: inout ByteBuffer) {
        precondition(fitsLengthFields, "DCEP label or protocol longer than 65535 bytes")
        buffer.writeInteger(Self.messageType)
        buffer.writeInteger(channelType)
        buffer.writeInteger(priority)
        buffer.writeInteger(reliabilityParameter)
        buffer.writeInteger(UInt16(label.utf8.count))
        buffer.writeInteger(UInt16(`protocol`.utf8.count))
        buffer.writeString(label)
        buffer.writeString(`protocol`)
    }
}

/// DCEPMessage is one DCEP message (RFC 8832 §5): DATA_CHANNEL_OPEN or DATA_CHANNEL_ACK,
/// the single byte 0x02.
public enum DCEPMessage: Sendable, Equatable {
    case open(DataChannelOpen)
    case ack

    public static let ackType: UInt8 = 0x02

    /// Parses one whole SCTP message (PPID 50); the buffer must hold exactly the message.
    /// On error the reader index does not move.
    public init(parsing buffer: inout ByteBuffer) throws(DCEPParseError) {
        guard let type = buffer.getInteger(at: buffer.readerIndex, as: UInt8.self) else { throw .truncated }
        switch type {
        case DataChannelOpen.messageType:
            self = .open(try DataChannelOpen(parsing: &buffer))
        case Self.ackType:
            guard buffer.readableBytes == 1 else { throw .lengthMismatch(expected: 1, actual: buffer.readableBytes) }
            buffer.moveReaderIndex(forwardBy: 1)
            self = .ack
        default:
            throw .unknownMessageType(type)
        }
    }

    public func write(to buffer: inout ByteBuffer) {
        switch self {
        case .open(let open): open.write(to: &buffer)
        case .ack: buffer.writeInteger(Self.ackType)
        }
    }
}

fileprivate extension String {
    /// Decodes strictly: nil when the bytes are not valid UTF-8 (no replacement characters).
    init?(validatingUTF8Bytes bytes: ByteBuffer) {
        guard let string = String(validating: bytes.readableBytesView, as: UTF8.self) else { return nil }
        self = string
    }
}
