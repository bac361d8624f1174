import NIOCore

/// ChannelDataParseError says why bytes are not a ChannelData message.
public enum ChannelDataParseError: Error, Sendable, Equatable {
    case truncated
    /// The channel number is outside 0x4000–0x4FFF (RFC 8656 §12).
    case badChannelNumber(UInt16)
    /// A datagram holds more than the message and its padding.
    case trailingBytes(Int)
}

/// ChannelData is a TURN ChannelData message (RFC 8656 §12.4): a 4-byte header — channel
/// number and length — then the application data. Over TCP/TLS it is padded to a multiple
/// of 4 bytes; over UDP padding is allowed but not required.
public struct ChannelData: Sendable, Equatable {
    public static let headerLength = 4
    public static let channelRange: ClosedRange<UInt16> = 0x4000...0x4FFF
    /// RFC 5766's wider range, which RFC 5766-era clients (coturn's own tools among them)
    /// still use; a TURN port that carries nothing else can accept it.
    public static let rfc5766ChannelRange: ClosedRange<UInt16> = 0x4000...0x7FFF

    public var channel: UInt16
    public var data: ByteBuffer

    public init(channel: UInt16, data: ByteBuffer) {
        self.channel = channel
        self.data = data
    }

    /// Cheap check for demultiplexing: the first two bits are 01 (RFC 7983: 64–79).
    public static func isMessage(firstByte: UInt8) -> Bool { (64...79).contains(firstByte) }

    public static func isValidChannel(_ channel: UInt16, range: ClosedRange<UInt16> = channelRange) -> Bool {
        range.contains(channel)
    }

    /// Bytes the frame at the front of `buffer` takes over a stream (header, data and
    /// padding to 4), or nil while fewer than 4 bytes are there.
    public static func streamFrameLength(_ buffer: ByteBuffer) -> Int? {
        guard let length = buffer.getInteger(at: buffer.readerIndex + 2, as: UInt16.self) else { return nil }
        return headerLength + (Int(length) + 3) & ~3
    }

    /// Parses one datagram. The data is a slice of `datagram` (no copy). Padding up to a
    /// multiple of 4 is accepted; anything beyond is an error.
    public init(datagram: ByteBuffer, range: ClosedRange<UInt16> = channelRange) throws(ChannelDataParseError) {
        guard let channel = datagram.getInteger(at: datagram.readerIndex, as: UInt16.self),
              let length = datagram.getInteger(at: datagram.readerIndex + 2, as: UInt16.self) else {
            throw .truncated
        }
        guard range.contains(channel) else { throw .badChannelNumber(channel) }
        let available = datagram.readableBytes - Self.headerLength
        guard available >= Int(length) else { throw .truncated }
        let extra = available - Int(length)
        guard extra <= (4 - Int(length) % 4) % 4 else { throw .trailingBytes(extra) }
        self.channel = channel
        self.data = datagram.getSlice(at: datagram.readerIndex + Self.headerLength, length: Int(length))!
    }

    /// Parses the frame at the front of a stream buffer (padding required) and moves past it.
    public init(parsingStream buffer: inout ByteBuffer, range: ClosedRange<UInt16> = channelRange)
        throws(ChannelDataParseError)
    {
        guard let frameLength = Self.streamFrameLength(buffer), buffer.readableBytes >= frameLength else {
            throw .truncated
        }
        let channel = buffer.getInteger(at: buffer.readerIndex, as: UInt16.self)!
        guard range.contains(channel) else { throw .badChannelNumber(channel) }
        let length = Int(buffer.getInteger(at: buffer.readerIndex + 2, as: UInt16.self)!)
        self.channel = channel
        self.data = buffer.getSlice(at: buffer.readerIndex + Self.headerLength, length: length)!
        buffer.moveReaderIndex(forwardBy: frameLength)
    }

    /// Writes the header and data; `padded` adds zero bytes to a multiple of 4 (required
    /// over TCP/TLS).
    public func write(to buffer: inout ByteBuffer, padded: Bool) {
        Self.writeHeader(channel: channel, length: data.readableBytes, to: &buffer)
        buffer.writeImmutableBuffer(data)
        if padded {
            buffer.writeRepeatingByte(0, count: (4 - data.readableBytes % 4) % 4)
        }
    }

    /// The 4-byte header alone, for callers that frame data in place.
    public static func writeHeader(channel: UInt16, length: Int, to buffer: inout ByteBuffer) {
        buffer.writeInteger(channel)
        buffer.writeInteger(UInt16(length))
    }
}
