import NIOCore

/// RTPParseError says why bytes are not an RTP packet.
public enum RTPParseError: Error, Sendable, Equatable {
    case truncated
    /// The version field is not 2.
    case badVersion(UInt8)
    /// The padding count is zero or runs into the header.
    case badPadding
}

/// RTPPacket is an RTP data packet (RFC 3550 §5.1): a 12-byte fixed header, CSRCs, an
/// optional header extension (§5.3.1), the payload and optional padding. Payload and
/// extension are slices of the parsed buffer (no copy).
public struct RTPPacket: Sendable, Equatable {
    public static let fixedHeaderLength = 12

    /// A header extension: the profile-defined 16 bits (0xBEDE for RFC 8285 one-byte
    /// elements) and its data, a multiple of 4 bytes.
    public struct Extension: Sendable, Equatable {
        public var profile: UInt16
        public var data: ByteBuffer

        public init(profile: UInt16, data: ByteBuffer) {
            self.profile = profile
            self.data = data
        }
    }

    public var marker: Bool
    /// 7 bits.
    public var payloadType: UInt8
    public var sequenceNumber: UInt16
    public var timestamp: UInt32
    public var ssrc: UInt32
    public var csrcs: [UInt32]
    public var headerExtension: Extension?
    public var payload: ByteBuffer
    /// Padding bytes after the payload, the last of which holds their count; 0 for none.
    public var paddingLength: UInt8

    public init(marker: Bool = false, payloadType: UInt8, sequenceNumber: UInt16, timestamp: UInt32, ssrc: UInt32,
                csrcs: [UInt32] = [], headerExtension: Extension? = nil, payload: ByteBuffer, paddingLength: UInt8 = 0) {
        self.marker = marker
        self.payloadType = payloadType
        self.sequenceNumber = sequenceNumber
        self.timestamp = timestamp
        self.ssrc = ssrc
        self.csrcs = csrcs
        self.headerExtension = headerExtension
        self.payload = payload
        self.paddingLength = paddingLength
    }

    /// RTP or RTCP, by RFC 5761 §4: on a muxed port, RTCP packet types 192–223 make the
    /// second byte (marker + payload type) 192–223; RTP payload types stay out of 64–95.
    public static func isRTCP(_ datagram: ByteBuffer) -> Bool {
        guard let second = datagram.getInteger(at: datagram.readerIndex + 1, as: UInt8.self) else { return false }
        return (192...223).contains(second)
    }

    /// Parses one datagram.
    public init(datagram: ByteBuffer) throws(RTPParseError) {
        let start = datagram.readerIndex
        guard datagram.readableBytes >= Self.fixedHeaderLength,
              let first = datagram.getInteger(at: start, as: UInt8.self),
              let second = datagram.getInteger(at: start + 1, as: UInt8.self),
              let sequence = datagram.getInteger(at: start + 2, as: UInt16.self),
              let timestamp = datagram.getInteger(at: start + 4, as: UInt32.self),
              let ssrc = datagram.getInteger(at: start + 8, as: UInt32.self) else { throw .truncated }
        guard first >> 6 == 2 else { throw .badVersion(first >> 6) }
        var offset = start + Self.fixedHeaderLength
        var end = start + datagram.readableBytes
        var padding: UInt8 = 0
        if first & 0x20 != 0 {
            guard let count = datagram.getInteger(at: end - 1, as: UInt8.self), count > 0 else { throw .badPadding }
            padding = count
            end -= Int(count)
        }
        let csrcCount = Int(first & 0x0F)
        var csrcs: [UInt32] = []
        csrcs.reserveCapacity(csrcCount)
        for _ in 0..<csrcCount {
            guard offset + 4 <= end, let csrc = datagram.getInteger(at: offset, as: UInt32.self) else { throw .truncated }
            csrcs.append(csrc)
            offset += 4
        }
        var headerExtension: Extension?
        if first & 0x10 != 0 {
            guard offset + 4 <= end, let profile = datagram.getInteger(at: offset, as: UInt16.self),
                  let words = datagram.getInteger(at: offset + 2, as: UInt16.self),
                  offset + 4 + Int(words) * 4 <= end else { throw .truncated }
            headerExtension = Extension(profile: profile,
                                        data: datagram.getSlice(at: offset + 4, length: Int(words) * 4)!)
            offset += 4 + Int(words) * 4
        }
        guard offset <= end else { throw padding > 0 ? .badPadding : .truncated }
        self.marker = second & 0x80 != 0
        self.payloadType = second & 0x7F
        self.sequenceNumber = sequence
        self.timestamp = timestamp
        self.ssrc = ssrc
        self.csrcs = csrcs
        self.headerExtension = headerExtension
        self.payload = datagram.getSlice(at: offset, length: end - offset)!
        self.paddingLength = padding
    }

    public func write(to buffer: inout ByteBuffer) {
        var first: UInt8 = 0x80 | UInt8(min(csrcs.count, 15))
        if paddingLength > 0 { first |= 0x20 }
        if headerExtension != nil { first |= 0x10 }
        Self.writeFixedHeader(first: first, marker: marker, payloadType: payloadType, sequenceNumber: sequenceNumber,
                              timestamp: timestamp, ssrc: ssrc, to: &buffer)
        for csrc in csrcs.prefix(15) { buffer.writeInteger(csrc) }
        if var headerExtension {
            buffer.writeInteger(headerExtension.profile)
            let words = (headerExtension.data.readableBytes + 3) / 4
            buffer.writeInteger(UInt16(words))
            let written = buffer.writeBuffer(&headerExtension.data)
            buffer.writeRepeatingByte(0, count: words * 4 - written)
        }
        buffer.writeImmutableBuffer(payload)
        if paddingLength > 0 {
            buffer.writeRepeatingByte(0, count: Int(paddingLength) - 1)
            buffer.writeInteger(paddingLength)
        }
    }

    /// A packet with no CSRCs, extension or padding, written without making an `RTPPacket`
    /// (a forwarding edge writes one per packet per viewer): the same bytes `write(to:)` gives.
    public static func write(marker: Bool, payloadType: UInt8, sequenceNumber: UInt16, timestamp: UInt32, ssrc: UInt32,
                             payload: ByteBuffer, to buffer: inout ByteBuffer) {
        writeFixedHeader(first: 0x80, marker: marker, payloadType: payloadType, sequenceNumber: sequenceNumber,
                         timestamp: timestamp, ssrc: ssrc, to: &buffer)
        buffer.writeImmutableBuffer(payload)
    }

    /// The 12 bytes every packet starts with; `first` is version 2 with the P, X and CC bits.
    private static func writeFixedHeader(first: UInt8, marker: Bool, payloadType: UInt8, sequenceNumber: UInt16,
                                         timestamp: UInt32, ssrc: UInt32, to buffer: inout ByteBuffer) {
        buffer.writeInteger(first)
        buffer.writeInteger((marker ? 0x80 : 0) | (payloadType & 0x7F))
        buffer.writeInteger(sequenceNumber)
        buffer.writeInteger(timestamp)
        buffer.writeInteger(ssrc)
    }

    /// The packet as bytes.
    public var bytes: ByteBuffer {
        var buffer = ByteBuffer()
        write(to: &buffer)
        return buffer
    }
}
