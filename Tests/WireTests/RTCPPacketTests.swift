import NIOCore
import Testing
@testable import Wire

@Suite struct RTCPPacketTests {
    static func roundTrip(_ packets: [RTCPPacket]) throws -> [RTCPPacket] {
        var buffer = ByteBuffer()
        RTCPPacket.writeCompound(packets, to: &buffer)
        #expect(buffer.readableBytes % 4 == 0)
        return try RTCPPacket.parseCompound(buffer, reducedSize: false)
    }

    @Test func aSenderReportWithSDESAndBYERoundTrips() throws {
        let report = ReportBlock(ssrc: 0xCAFE, fractionLost: 25, cumulativeLost: -3, highestSequence: 0x0001_FFFF,
                                 jitter: 42, lastSenderReport: 0x1234_5678, delaySinceLastSenderReport: 65536)
        let packets: [RTCPPacket] = [
            .senderReport(ssrc: 1, ntpTime: 0xE8F0_0000_8000_0000, rtpTime: 90000, packetCount: 10, octetCount: 12000,
                          reports: [report]),
            .sourceDescription([(ssrc: 1, cname: "switchboard"), (ssrc: 2, cname: "ab")]),
            .goodbye(ssrcs: [1, 2]),
        ]
        #expect(try Self.roundTrip(packets) == packets)
    }

    @Test func theBytesOfAReceiverReportAreRFC3550s() throws {
        var buffer = ByteBuffer()
        RTCPPacket.receiverReport(ssrc: 0x0102_0304, reports: [ReportBlock(ssrc: 5, fractionLost: 1, cumulativeLost: 2)])
            .write(to: &buffer)
        // V=2, RC=1, PT=201, length 7 (8 words - 1).
        #expect(Array(buffer.readableBytesView.prefix(12)) == [0x81, 201, 0, 7, 1, 2, 3, 4, 0, 0, 0, 5])
        #expect(Array(buffer.readableBytesView[12..<16]) == [1, 0, 0, 2])
    }

    @Test func feedbackMessagesRoundTrip() throws {
        let packets: [RTCPPacket] = [
            .receiverReport(ssrc: 9, reports: []),
            .nack(senderSSRC: 9, mediaSSRC: 7, lost: [100, 101, 105, 116, 117, 200]),
            .pictureLossIndication(senderSSRC: 9, mediaSSRC: 7),
            .fullIntraRequest(senderSSRC: 9, requests: [(ssrc: 7, sequence: 3)]),
        ]
        #expect(try Self.roundTrip(packets) == packets)
    }

    @Test func nackPacksSixteenFollowersIntoOneEntryAndWrapsAround() {
        #expect(RTCPPacket.nackEntries([100, 101, 105, 116, 117]).map { [$0.0, $0.1] }
            == [[100, 0b1000_0000_0001_0001], [117, 0]])
        #expect(RTCPPacket.nackEntries([65535, 0, 1]).map { [$0.0, $0.1] } == [[65535, 0b11]])
    }

    @Test func aNACKFromABrowserParses() throws {
        // Generic NACK, sender 0x11111111, media 0x22222222, PID 0x0010, BLP 0x0005 → 16, 17, 19.
        let bytes: [UInt8] = [0x81, 205, 0, 3, 0x11, 0x11, 0x11, 0x11, 0x22, 0x22, 0x22, 0x22, 0x00, 0x10, 0x00, 0x05]
        let packets = try RTCPPacket.parseCompound(ByteBuffer(bytes: bytes))
        #expect(packets == [.nack(senderSSRC: 0x1111_1111, mediaSSRC: 0x2222_2222, lost: [16, 17, 19])])
    }

    @Test func unknownTypesAreKeptAsBytes() throws {
        let bytes: [UInt8] = [0x80, 204, 0, 2, 0, 0, 0, 1, 0x6E, 0x61, 0x6D, 0x65]  // APP "name"
        let packets = try RTCPPacket.parseCompound(ByteBuffer(bytes: bytes))
        #expect(packets == [.other(type: 204, count: 0, body: ByteBuffer(bytes: [0, 0, 0, 1, 0x6E, 0x61, 0x6D, 0x65]))])
    }

    @Test(arguments: [
        ([UInt8](), nil),
        ([0x80, 201, 0], RTCPParseError.truncated),
        ([0x40, 201, 0, 1, 0, 0, 0, 1], .badVersion(1)),
        ([0x80, 201, 0, 5, 0, 0, 0, 1], .badLength),
        // RR claims one report block but has none.
        ([0x81, 201, 0, 1, 0, 0, 0, 1], .badLength),
        // Padding bit with a count larger than the body.
        ([0xA0, 201, 0, 1, 0, 0, 0, 9], .badPadding),
    ] as [([UInt8], RTCPParseError?)])
    func malformedCompoundsAreRefused(bytes: [UInt8], error: RTCPParseError?) throws {
        if let error {
            #expect(throws: error) { try RTCPPacket.parseCompound(ByteBuffer(bytes: bytes)) }
        } else {
            #expect(try RTCPPacket.parseCompound(ByteBuffer(bytes: bytes)).isEmpty)
        }
    }

    @Test func aFullCompoundMustStartWithAReportUnlessReducedSize() throws {
        let pli: [UInt8] = [0x81, 206, 0, 2, 0, 0, 0, 1, 0, 0, 0, 2]
        #expect(throws: RTCPParseError.notStartingWithReport(206)) {
            try RTCPPacket.parseCompound(ByteBuffer(bytes: pli), reducedSize: false)
        }
        #expect(try RTCPPacket.parseCompound(ByteBuffer(bytes: pli)) == [.pictureLossIndication(senderSSRC: 1, mediaSSRC: 2)])
    }
}
