import NIOCore
import Testing

@testable import Peer

/// Per-stream credit between two agents: what may be sent, what may arrive, when grants go.
@Suite struct StreamCreditTests {
    @Test func aSenderStopsAtThePeersWindowAndGoesOnWithEachGrant() throws {
        var credit = StreamCredit(window: 1000, peerWindow: 300)
        #expect(credit.take(upTo: 200) == 200)
        #expect(credit.take(upTo: 200) == 100)
        #expect(credit.take(upTo: 50) == 0)
        #expect(credit.sendable == 0)
        try credit.granted(120)
        #expect(credit.take(upTo: 1000) == 120)
        #expect(credit.take(upTo: -4) == 0)
    }

    @Test func aReceiverGrantsOnceAQuarterOfItsWindowWasTaken() throws {
        var credit = StreamCredit(window: 1000, peerWindow: 1000)
        try credit.received(600)
        #expect(credit.receivable == 400)
        #expect(credit.readerTook(100) == nil)
        #expect(credit.readerTook(149) == nil)
        // 250 taken: a quarter of the window.
        #expect(credit.readerTook(1) == 250)
        #expect(credit.receivable == 650)
        #expect(credit.readerTook(249) == nil)
        // A slow reader that took less than a quarter still leaves the peer most of the window.
        #expect(credit.receivable >= 3 * 1000 / 4 - 350)
    }

    /// The peer can never make us hold more than the window, whatever order things come in.
    @Test func whatWaitsForTheReaderNeverPassesTheWindow() throws {
        var receiver = StreamCredit(window: 4096, peerWindow: 4096)
        var sender = StreamCredit(window: 4096, peerWindow: 4096)
        var waiting = 0, delivered = 0, sent = 0
        var generator = SystemRandomNumberGenerator()
        for step in 0..<10_000 {
            let chunk = sender.take(upTo: Int.random(in: 1...1500, using: &generator))
            if chunk > 0 {
                try receiver.received(chunk)
                waiting += chunk
                sent += chunk
            }
            // The reader is slow: it takes something only every third step.
            if step % 3 == 0, waiting > 0 {
                let taken = min(waiting, Int.random(in: 1...2000, using: &generator))
                waiting -= taken
                delivered += taken
                if let grant = receiver.readerTook(taken) { try sender.granted(grant) }
            }
            #expect(waiting <= 4096)
        }
        #expect(delivered > 100_000 && sent - delivered == waiting)
    }

    @Test func aPeerThatBreaksTheRulesIsCaught() throws {
        var credit = StreamCredit(window: 1000, peerWindow: 1000)
        try credit.received(900)
        #expect(throws: StreamCredit.Violation.overrun(by: 101)) { try credit.received(201) }
        #expect(throws: StreamCredit.Violation.badGrant(0)) { try credit.granted(0) }
        #expect(throws: StreamCredit.Violation.badGrant(-1)) { try credit.granted(-1) }
        #expect(throws: StreamCredit.Violation.badGrant(StreamCredit.maximumCredit)) {
            try credit.granted(StreamCredit.maximumCredit)
        }
        #expect(throws: StreamCredit.Violation.badGrant(.max)) { try credit.granted(.max) }
    }

    @Test func controlMessagesRoundTripAndJunkIsRefused() throws {
        for control in [TunnelControl(credit: 131_072), TunnelControl(refused: "unknown service \"x\"\n")] {
            #expect(try TunnelControl.decode(control.encoded()) == control)
        }
        for junk in ["", "GET / HTTP/1.1", "{}", "{\"credit\":1,\"refused\":\"x\"}", "{\"credit\":\"many\"}",
                     "{\"credit\":1e400}", "[1]", "{\"refused\":7}"] {
            #expect(throws: TunnelControl.DecodeError.notControl, "\(junk)") { try TunnelControl.decode(ByteBuffer(string: junk)) }
        }
        let long = "{\"refused\":\"" + String(repeating: "x", count: 5000) + "\"}"
        #expect(throws: TunnelControl.DecodeError.tooLong) { try TunnelControl.decode(ByteBuffer(string: long)) }
    }
}
