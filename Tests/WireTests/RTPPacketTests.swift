import NIOCore
import Testing
@testable import Wire

@Suite struct RTPPacketTests {
    @Test func aPlainHeaderParsesField() throws {
        // V=2, M=1, PT=96, seq 0x1234, ts 0xDEADBEEF, SSRC 0x01020304, payload 3 bytes.
        let bytes: [UInt8] = [0x80, 0xE0, 0x12, 0x34, 0xDE, 0xAD, 0xBE, 0xEF, 0x01, 0x02, 0x03, 0x04, 0xAA, 0xBB, 0xCC]
        let packet = try RTPPacket(datagram: ByteBuffer(bytes: bytes))
        #expect(packet.marker && packet.payloadType == 96)
        #expect(packet.sequenceNumber == 0x1234 && packet.timestamp == 0xDEAD_BEEF && packet.ssrc == 0x0102_0304)
        #expect(packet.csrcs.isEmpty && packet.headerExtension == nil && packet.paddingLength == 0)
        #expect(Array(packet.payload.readableBytesView) == [0xAA, 0xBB, 0xCC])
        #expect(Array(packet.bytes.readableBytesView) == bytes)
    }

    /// The forwarding path writes header and payload straight into the send buffer.
    @Test(arguments: [false, true])
    func theDirectWriteGivesThePacketsBytes(marker: Bool) throws {
        var payload = ByteBuffer(bytes: [9, 8, 7, 6, 5, 4, 3])
        payload.moveReaderIndex(forwardBy: 2)  // a slice, as payloads cut from ingest datagrams are
        var direct = ByteBuffer(bytes: [0xFF])
        RTPPacket.write(marker: marker, payloadType: 96, sequenceNumber: 0xBEEF, timestamp: 0x0102_0304, ssrc: 0xCAFE_BABE,
                        payload: payload, to: &direct)
        let packet = RTPPacket(marker: marker, payloadType: 96, sequenceNumber: 0xBEEF, timestamp: 0x0102_0304,
                               ssrc: 0xCAFE_BABE, payload: payload)
        #expect(Array(direct.readableBytesView) == [0xFF] + Array(packet.bytes.readableBytesView))
        #expect(try RTPPacket(datagram: direct.getSlice(at: 1, length: direct.readableBytes - 1)!) == packet)
    }

    @Test func csrcsExtensionAndPaddingRoundTrip() throws {
        let packet = RTPPacket(
            marker: false, payloadType: 111, sequenceNumber: 65535, timestamp: 1, ssrc: 7, csrcs: [9, 10],
            headerExtension: .init(profile: 0xBEDE, data: ByteBuffer(bytes: [0x10, 0x2A, 0, 0])),
            payload: ByteBuffer(bytes: [1, 2, 3, 4, 5]), paddingLength: 3)
        let bytes = packet.bytes
        #expect(bytes.readableBytes == 12 + 8 + 4 + 4 + 5 + 3)
        #expect(bytes.getInteger(at: 0, as: UInt8.self) == UInt8(0x80 | 0x20 | 0x10 | 2))
        let parsed = try RTPPacket(datagram: bytes)
        #expect(parsed == packet)
    }

    @Test(arguments: [
        ([UInt8](repeating: 0x80, count: 11), RTPParseError.truncated),
        ([0x40, 0x60] + [UInt8](repeating: 0, count: 10), .badVersion(1)),
        // CC = 2 but only one CSRC.
        ([0x82, 0x60] + [UInt8](repeating: 0, count: 14), .truncated),
        // X set, extension says 2 words, only 1 there.
        ([0x90, 0x60] + [UInt8](repeating: 0, count: 10) + [0xBE, 0xDE, 0x00, 0x02, 0, 0, 0, 0], .truncated),
        // P set with a count of 0.
        ([0xA0, 0x60] + [UInt8](repeating: 0, count: 10) + [1, 0], .badPadding),
        // P set with a count larger than the packet after the header.
        ([0xA0, 0x60] + [UInt8](repeating: 0, count: 10) + [1, 9], .badPadding),
    ])
    func malformedPacketsAreRefused(bytes: [UInt8], error: RTPParseError) {
        #expect(throws: error) { try RTPPacket(datagram: ByteBuffer(bytes: bytes)) }
    }

    @Test func rtcpIsToldApartFromRTPOnAMuxedPort() {
        #expect(RTPPacket.isRTCP(ByteBuffer(bytes: [0x80, 200, 0, 6])))   // SR
        #expect(RTPPacket.isRTCP(ByteBuffer(bytes: [0x81, 206, 0, 2])))   // PSFB
        #expect(!RTPPacket.isRTCP(ByteBuffer(bytes: [0x80, 96, 0, 1])))   // RTP PT 96
        #expect(!RTPPacket.isRTCP(ByteBuffer(bytes: [0x80, 0xE0, 0, 1]))) // RTP PT 96 with marker
        #expect(!RTPPacket.isRTCP(ByteBuffer(bytes: [0x80])))
    }
}
