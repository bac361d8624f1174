import NIOCore
import Testing
@testable import Wire

@Suite struct ChannelDataTests {
    @Test func aDatagramRoundTripsWithAndWithoutPadding() throws {
        for length in 0..<9 {
            let payload = ByteBuffer(bytes: (0..<length).map { UInt8($0) })
            for padded in [false, true] {
                var buffer = ByteBuffer()
                ChannelData(channel: 0x4001, data: payload).write(to: &buffer, padded: padded)
                #expect(buffer.readableBytes == 4 + (padded ? (length + 3) & ~3 : length))
                let decoded = try ChannelData(datagram: buffer)
                #expect(decoded.channel == 0x4001)
                #expect(decoded.data == payload)
            }
        }
    }

    @Test(arguments: [
        ([UInt8](), ChannelDataParseError.truncated),
        ([0x40, 0x00, 0x00], .truncated),
        ([0x40, 0x00, 0x00, 0x05, 1, 2, 3, 4], .truncated),
        ([0x3F, 0xFF, 0x00, 0x00], .badChannelNumber(0x3FFF)),
        ([0x50, 0x00, 0x00, 0x00], .badChannelNumber(0x5000)),
        ([0x7F, 0xFF, 0x00, 0x00], .badChannelNumber(0x7FFF)),
        ([0x40, 0x00, 0x00, 0x01, 1, 0, 0, 0, 0], .trailingBytes(4)),
        ([0x40, 0x00, 0x00, 0x04, 1, 2, 3, 4, 0], .trailingBytes(1)),
    ])
    func malformedDatagramsAreRefused(bytes: [UInt8], error: ChannelDataParseError) {
        #expect(throws: error) { try ChannelData(datagram: ByteBuffer(bytes: bytes)) }
    }

    @Test func theChannelRangeIsExactly0x4000To0x4FFF() {
        #expect(ChannelData.isValidChannel(0x4000) && ChannelData.isValidChannel(0x4FFF))
        #expect(!ChannelData.isValidChannel(0x3FFF) && !ChannelData.isValidChannel(0x5000))
    }
}

@Suite struct DemultiplexTests {
    @Test func firstBytesMapToRFC7983Ranges() {
        let expected: [(ClosedRange<UInt8>, PacketKind)] = [
            (0...3, .stun), (4...15, .unknown), (16...19, .zrtp), (20...63, .dtls), (64...79, .channelData),
            (80...127, .unknown), (128...191, .rtpOrRTCP), (192...255, .unknown),
        ]
        for (range, kind) in expected {
            for byte in range { #expect(PacketKind(firstByte: byte) == kind, "byte \(byte)") }
        }
    }
}

@Suite struct StreamFrameTests {
    static func stream() -> [UInt8] {
        var bytes: [UInt8] = []
        bytes += STUNMessage(.allocate, .request, attributes: [.requestedTransport(17)]).encoded(fingerprint: true)
        var buffer = ByteBuffer()
        ChannelData(channel: 0x4000, data: ByteBuffer(bytes: [1, 2, 3, 4, 5])).write(to: &buffer, padded: true)
        ChannelData(channel: 0x4FFF, data: ByteBuffer()).write(to: &buffer, padded: true)
        bytes += buffer.readableBytesView
        bytes += STUNMessage(.binding, .request).encoded()
        return bytes
    }

    /// Feeding the stream one byte at a time and all at once yields the same frames.
    @Test func framesAreFoundWhateverTheChunking() throws {
        let bytes = Self.stream()
        for chunk in [1, 2, 3, 7, bytes.count] {
            var pending = ByteBuffer()
            var frames: [(StreamFrame.Kind, Int)] = []
            var offset = 0
            while offset < bytes.count {
                pending.writeBytes(bytes[offset..<min(offset + chunk, bytes.count)])
                offset += chunk
                while let frame = try StreamFrame.next(in: pending) {
                    frames.append((frame.kind, frame.length))
                    let slice = pending.readSlice(length: frame.length)!
                    if frame.kind == .stun {
                        _ = try STUNMessage(datagram: slice)
                    } else {
                        var copy = slice
                        _ = try ChannelData(parsingStream: &copy)
                        #expect(copy.readableBytes == 0)
                    }
                }
            }
            #expect(frames.map(\.0) == [.stun, .channelData, .channelData, .stun])
            #expect(frames.map(\.1) == [36, 12, 4, 20])
            #expect(pending.readableBytes == 0)
        }
    }

    @Test func aByteThatStartsNoFrameIsUnframeable() {
        #expect(throws: StreamFrame.FramingError.unframeable(firstByte: 0x16)) {
            try StreamFrame.next(in: ByteBuffer(bytes: [0x16, 0x03, 0x01]))
        }
    }
}
