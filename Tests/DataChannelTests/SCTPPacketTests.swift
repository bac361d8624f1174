import Testing
@testable import DataChannel

/// Which of our SCTP packets the peer must answer (the agent's silence rule counts only those).
@Suite struct SCTPPacketTests {
    /// A common header (ports, verification tag, checksum) and the given chunks.
    func packet(_ chunks: [[UInt8]]) -> [UInt8] {
        [0x13, 0x88, 0x13, 0x88, 0, 0, 0, 1, 0, 0, 0, 0] + chunks.flatMap { $0 + Array(repeating: 0, count: (4 - $0.count % 4) % 4) }
    }

    func chunk(_ type: UInt8, _ value: [UInt8] = []) -> [UInt8] {
        let length = 4 + value.count
        return [type, 0, UInt8(length >> 8), UInt8(length & 0xFF)] + value
    }

    func parameter(_ type: UInt16, _ value: [UInt8] = [0, 0, 0, 1]) -> [UInt8] {
        let length = 4 + value.count
        return [UInt8(type >> 8), UInt8(type & 0xFF), UInt8(length >> 8), UInt8(length & 0xFF)] + value
    }

    let sack = [UInt8](repeating: 0, count: 12)

    @Test func dataHeartbeatsAndHandshakeChunksAskForAnAnswer() {
        for type: UInt8 in [0, 1, 4, 7, 10, 64, 192, 193, 194] {
            #expect(SCTPPacket.asksForAnswer(packet([chunk(type, [1, 2, 3])])), "type \(type)")
        }
        // DATA bundled after a SACK still asks.
        #expect(SCTPPacket.asksForAnswer(packet([chunk(3, sack), chunk(0, [1, 2, 3, 4, 5])])))
    }

    @Test func acknowledgementsAndAnswersAskForNothing() {
        // SACK, HEARTBEAT ACK, ABORT, SHUTDOWN ACK, ERROR, COOKIE ACK, SHUTDOWN COMPLETE.
        for type: UInt8 in [3, 5, 6, 8, 9, 11, 14] {
            #expect(!SCTPPacket.asksForAnswer(packet([chunk(type, [0, 0, 0, 0])])), "type \(type)")
        }
        #expect(!SCTPPacket.asksForAnswer(packet([chunk(3, sack), chunk(5, [0, 1, 0, 4])])))
    }

    @Test func aReconfigAsksOnlyWhenItCarriesARequest() {
        // RFC 6525: 13 outgoing reset request, 14 incoming, 16 response.
        let response = chunk(130, parameter(16, [0, 0, 0, 1, 0, 0, 0, 1]))
        #expect(!SCTPPacket.asksForAnswer(packet([response])))
        let request = chunk(130, parameter(13, [0, 0, 0, 1, 0, 0, 0, 1, 0, 0, 0, 1, 0, 1]))
        #expect(SCTPPacket.asksForAnswer(packet([request])))
        // A response and our own request in one chunk (closing both ways).
        let both = chunk(130, parameter(16, [0, 0, 0, 1, 0, 0, 0, 1]) + parameter(13, [0, 0, 0, 2, 0, 0, 0, 2, 0, 0, 0, 2, 0, 1, 0, 0]))
        #expect(SCTPPacket.asksForAnswer(packet([both])))
    }

    @Test func truncatedOrInconsistentPacketsAskForNothing() {
        #expect(!SCTPPacket.asksForAnswer([]))
        #expect(!SCTPPacket.asksForAnswer(Array(packet([]).prefix(11))))
        #expect(!SCTPPacket.asksForAnswer(packet([])))
        // A DATA chunk whose length runs past the packet, or is below a header.
        #expect(!SCTPPacket.asksForAnswer(packet([[0, 0, 0, 40, 1, 2, 3, 4]])))
        #expect(!SCTPPacket.asksForAnswer(packet([[0, 0, 0, 2]])))
    }
}
