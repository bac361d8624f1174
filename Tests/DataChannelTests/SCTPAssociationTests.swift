import Foundation
import Crypto
import NIOCore
import Testing
@testable import DataChannel
import Wire

/// Two associations back to back in one process. Each one's output is queued and fed into the
/// other's input from the loop here (never from inside a callback); when the pipe is empty the
/// loop advances a test clock by 10 ms and runs the timers.
final class Loopback {
    typealias Event = SCTPAssociation.Event

    var a: SCTPAssociation!
    var b: SCTPAssociation!
    var toA: [[UInt8]] = []
    var toB: [[UInt8]] = []
    var eventsA: [Event] = []
    var eventsB: [Event] = []
    /// Drop every n-th datagram in each direction (0: none).
    var dropEvery = 0
    /// Drop everything (the path is down).
    var outage = false
    /// An idle tick also waits 10 ms of real time (for usrsctp's wall-clock checks).
    var realTime = false
    var sentCount = 0
    var dropped = 0
    var largestPacket = 0
    var firstPacketsA: [[UInt8]] = []
    var firstPacketsB: [[UInt8]] = []

    init(configuration: SCTPAssociation.Configuration = .init(), start: Bool = true) {
        a = SCTPAssociation(role: .client, configuration: configuration,
                            output: { [unowned self] in self.carry($0, to: \.toB, log: \.firstPacketsA) },
                            onEvent: { [unowned self] in self.eventsA.append($0) })
        b = SCTPAssociation(role: .server, configuration: configuration,
                            output: { [unowned self] in self.carry($0, to: \.toA, log: \.firstPacketsB) },
                            onEvent: { [unowned self] in self.eventsB.append($0) })
        if start {
            a.start()
            b.start()
        }
    }

    private func carry(_ packet: [UInt8], to queue: ReferenceWritableKeyPath<Loopback, [[UInt8]]>,
                       log: ReferenceWritableKeyPath<Loopback, [[UInt8]]>) {
        if self[keyPath: log].count < 4 { self[keyPath: log].append(packet) }
        sentCount += 1
        largestPacket = max(largestPacket, packet.count)
        if outage || (dropEvery > 0 && sentCount % dropEvery == 0) {
            dropped += 1
            return
        }
        self[keyPath: queue].append(packet)
    }

    /// Moves packets and ticks the clock until `done` holds; false after `maxSteps` idle ticks.
    @discardableResult
    func run(maxTicks: Int = 3000, until done: () -> Bool) -> Bool {
        var ticks = 0
        while !done() {
            if toA.isEmpty && toB.isEmpty {
                guard ticks < maxTicks else { return false }
                ticks += 1
                if realTime { Thread.sleep(forTimeInterval: 0.01) }
                TestClock.now = TestClock.now + .milliseconds(10)
                SCTPAssociation.handleTimers(now: TestClock.now)
                continue
            }
            let forA = toA, forB = toB
            toA.removeAll()
            toB.removeAll()
            for packet in forA { a?.input(packet) }
            for packet in forB { b?.input(packet) }
        }
        return true
    }

    func connect() {
        #expect(run { eventsA.contains(.associationUp) && eventsB.contains(.associationUp) })
    }

    /// Opens a channel from `a` and waits for both sides to see it.
    func openFromA(label: String, protocol: String = "") throws -> DataChannelID {
        let id = try a.openChannel(label: label, protocol: `protocol`)
        #expect(run { eventsA.contains(.channelOpenAcked(id)) && eventsB.contains(.channelOpened(id, label: label, protocol: `protocol`)) })
        return id
    }

    static func messages(_ events: [Event], on id: DataChannelID) -> [(ByteBuffer, Bool)] {
        events.compactMap { event in
            if case .message(id, let bytes, let binary) = event { return (bytes, binary) }
            return nil
        }
    }
}

/// One clock for the whole process: usrsctp's timers are global and only move forward.
enum TestClock {
    nonisolated(unsafe) static var now = NIODeadline.now()
}

func randomBytes(_ count: Int, seed: UInt64) -> [UInt8] {
    var generator = SplitMix(seed: seed)
    return (0..<count).map { _ in UInt8(truncatingIfNeeded: generator.next()) }
}

struct SplitMix: RandomNumberGenerator {
    var state: UInt64
    init(seed: UInt64) { state = seed }
    mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }
}

/// usrsctp is process-global and single-threaded here: these tests run one at a time on the
/// main thread.
@MainActor @Suite(.serialized) struct SCTPAssociationTests {
    @Test func bothSidesConnectAtOnceAndTheFirstPacketIsAnINIT() {
        let pipe = Loopback()
        pipe.connect()
        // Simultaneous open (RFC 8841): each side's first packet is an INIT (chunk type 1)
        // with a valid CRC32c computed by us, not by usrsctp.
        #expect(pipe.firstPacketsA.first?[12] == 1)
        #expect(pipe.firstPacketsB.first?[12] == 1)
        #expect(pipe.firstPacketsA.allSatisfy(SCTPAssociation.checksumIsValid))
        #expect(pipe.firstPacketsA.first.map { $0[8..<12] != [0, 0, 0, 0] } == true)
        #expect(pipe.a.isUp && pipe.b.isUp)
    }

    @Test func packetsThatArriveBeforeOurINITWaitForIt() {
        let pipe = Loopback(start: false)
        pipe.b.start()
        // b's INIT reaches a before a has started: a must hold it, not hand it to usrsctp.
        let early = pipe.toA
        pipe.toA.removeAll()
        #expect(!early.isEmpty)
        for packet in early { pipe.a.input(packet) }
        pipe.a.start()
        pipe.connect()
    }

    @Test func openingAChannelCarriesLabelAndProtocolAndIsAcknowledged() throws {
        let pipe = Loopback()
        pipe.connect()
        let fromA = try pipe.openFromA(label: "tunnel-ß📡", protocol: "switchboard-tcp")
        #expect(fromA.stream == 0)  // DTLS client: even ids, lowest first
        let fromB = try pipe.b.openChannel(label: "back", protocol: "")
        #expect(fromB.stream == 1)  // DTLS server: odd ids
        #expect(pipe.run { pipe.eventsB.contains(.channelOpenAcked(fromB)) && pipe.eventsA.contains(.channelOpened(fromB, label: "back", protocol: "")) })
        #expect(try pipe.a.openChannel(label: "second").stream == 2)
    }

    @Test func messagesArriveInOrderBothWaysWithTheirType() throws {
        let pipe = Loopback()
        pipe.connect()
        let id = try pipe.openFromA(label: "chat")
        for index in 0..<200 {
            let binary = index % 3 != 0
            #expect(pipe.a.send(ByteBuffer(string: "a\(index)"), on: id, binary: binary) == .sent)
            #expect(pipe.b.send(ByteBuffer(string: "b\(index)"), on: id, binary: binary) == .sent)
        }
        #expect(pipe.a.send(ByteBuffer(), on: id, binary: true) == .sent)
        #expect(pipe.a.send(text: "", on: id) == .sent)
        #expect(pipe.run { Loopback.messages(pipe.eventsB, on: id).count == 202 && Loopback.messages(pipe.eventsA, on: id).count == 200 })
        let atB = Loopback.messages(pipe.eventsB, on: id)
        let atA = Loopback.messages(pipe.eventsA, on: id)
        for index in 0..<200 {
            #expect(atB[index].0 == ByteBuffer(string: "a\(index)") && atB[index].1 == (index % 3 != 0))
            #expect(atA[index].0 == ByteBuffer(string: "b\(index)") && atA[index].1 == (index % 3 != 0))
        }
        // Empty messages (PPID 57 then 56) arrive empty, not as the 0x00 byte that carried them.
        #expect(atB[200].0.readableBytes == 0 && atB[200].1 == true)
        #expect(atB[201].0.readableBytes == 0 && atB[201].1 == false)
    }

    @Test func aOneMebibyteMessageIsReassembled() throws {
        var configuration = SCTPAssociation.Configuration()
        configuration.maxMessageSize = 1 << 20
        configuration.remoteMaxMessageSize = 1 << 20
        let pipe = Loopback(configuration: configuration)
        pipe.connect()
        let id = try pipe.openFromA(label: "big")
        let big = randomBytes(1 << 20, seed: 1)
        #expect(pipe.a.send(big, on: id) != .refused(.tooLarge))
        #expect(pipe.run { Loopback.messages(pipe.eventsB, on: id).count == 1 })
        #expect(Loopback.messages(pipe.eventsB, on: id).first.map { Array($0.0.readableBytesView) == big } == true)
        #expect(pipe.a.send(randomBytes((1 << 20) + 1, seed: 2), on: id) == .refused(.tooLarge))
        // Fixed path MTU, no discovery. usrsctp counts it without the 12-byte common header;
        // with DTLS (≤ 37), UDP and IPv6 headers every packet still fits 1280 bytes (RFC 8261 §5).
        #expect(pipe.largestPacket == 1172 + 12, "largest \(pipe.largestPacket)")
    }

    @Test func streamIdsStayBelowTheNegotiatedCount() throws {
        var configuration = SCTPAssociation.Configuration()
        configuration.streams = 5
        let pipe = Loopback(configuration: configuration)
        pipe.connect()
        #expect(try pipe.a.openChannel(label: "0").stream == 0)
        #expect(try pipe.a.openChannel(label: "2").stream == 2)
        #expect(try pipe.a.openChannel(label: "4").stream == 4)
        #expect(throws: SCTPAssociation.OpenError.noFreeStream) { try pipe.a.openChannel(label: "6") }
        #expect(try pipe.b.openChannel(label: "1").stream == 1)
    }

    @Test func aMessageLargerThanOurLimitClosesItsChannelAndOthersCarryOn() throws {
        var small = SCTPAssociation.Configuration()
        small.maxMessageSize = 64 * 1024
        small.remoteMaxMessageSize = 1 << 20
        let pipe = Loopback(configuration: small)
        pipe.connect()
        let victim = try pipe.openFromA(label: "victim")
        let other = try pipe.openFromA(label: "other")
        pipe.a.send(randomBytes(200 * 1024, seed: 3), on: victim)
        pipe.a.send([1, 2, 3], on: other)
        #expect(pipe.run { pipe.eventsA.contains(.channelClosed(victim)) && Loopback.messages(pipe.eventsB, on: other).count == 1 })
        #expect(pipe.b.statistics.oversizedMessages == 1)
        #expect(Loopback.messages(pipe.eventsB, on: victim).isEmpty)
    }

    @Test func twoHundredFiftySixChannelsAtOnceEachCarryTheirOwnBytes() throws {
        let pipe = Loopback()
        pipe.connect()
        var ids: [DataChannelID] = []
        for index in 0..<256 { ids.append(try pipe.a.openChannel(label: "ch\(index)")) }
        #expect(Set(ids.map(\.stream)) == Set(stride(from: 0, to: 512, by: 2)))
        var expected: [DataChannelID: SHA256.Digest] = [:]
        for (index, id) in ids.enumerated() {
            var hash = SHA256()
            for part in 0..<4 {
                let bytes = randomBytes(1000 + (index * 37 + part * 11) % 3000, seed: UInt64(index * 8 + part))
                hash.update(data: bytes)
                #expect(pipe.a.send(bytes, on: id) != .refused(.queueFull))
            }
            expected[id] = hash.finalize()
            // Keep within the send queue's cap; the other channels' data is still in flight.
            if pipe.a.bufferedAmount > 512 * 1024 { pipe.run { pipe.a.bufferedAmount < 256 * 1024 } }
        }
        #expect(pipe.run { ids.allSatisfy { Loopback.messages(pipe.eventsB, on: $0).count == 4 } })
        for id in ids {
            var hash = SHA256()
            for (bytes, _) in Loopback.messages(pipe.eventsB, on: id) { hash.update(data: Array(bytes.readableBytesView)) }
            #expect(hash.finalize() == expected[id], "\(id)")
        }
        #expect(pipe.eventsB.filter { if case .channelOpened = $0 { true } else { false } }.count == 256)
    }

    @Test func aPausedReceiverStallsTheSenderWithinItsCapThenEverythingArrives() throws {
        let pipe = Loopback()
        pipe.connect()
        let id = try pipe.openFromA(label: "bulk")
        pipe.b.pauseReceiving()
        let message = 64 * 1024
        let cap = pipe.a.configuration.sendHighWaterMark + message
        var hash = SHA256()
        var sent = 0
        var blocked = false
        while !blocked && sent < 400 {
            let bytes = randomBytes(message, seed: UInt64(1000 + sent))
            let result = pipe.a.send(bytes, on: id)
            #expect(result != .refused(.queueFull))
            hash.update(data: bytes)
            sent += 1
            if case .wouldBlock = result { blocked = true }
            #expect(pipe.a.bufferedAmount <= cap)
            pipe.run(maxTicks: 5) { false }
            #expect(pipe.a.bufferedAmount <= cap)
        }
        // The receiver read nothing, so 2 MiB of socket buffers (theirs and ours) plus our queue
        // hold it all: the sender must have been told to stop well before 400 messages.
        #expect(blocked)
        #expect(sent < 100)
        #expect(Loopback.messages(pipe.eventsB, on: id).isEmpty)
        #expect(pipe.a.bufferedAmount(on: id) >= pipe.a.configuration.sendHighWaterMark)
        // Past the high-water mark nothing more is taken: the queue stays within its cap.
        #expect(pipe.a.send(randomBytes(10, seed: 9), on: id) == .refused(.queueFull))

        pipe.b.resumeReceiving()
        #expect(pipe.run { pipe.eventsA.contains(.bufferedAmountLow(id)) && Loopback.messages(pipe.eventsB, on: id).count == sent })
        var received = SHA256()
        for (bytes, _) in Loopback.messages(pipe.eventsB, on: id) { received.update(data: Array(bytes.readableBytesView)) }
        #expect(received.finalize() == hash.finalize())
        #expect(pipe.a.bufferedAmount == 0)
    }

    @Test func closingAChannelResetsItsStreamBothWaysAndFreesTheId() throws {
        let pipe = Loopback()
        pipe.connect()
        let first = try pipe.openFromA(label: "one")
        let second = try pipe.openFromA(label: "two")
        pipe.a.send([1], on: first)
        pipe.a.closeChannel(first)
        #expect(pipe.a.send([2], on: first) == .refused(.channelClosing))
        #expect(pipe.run { pipe.eventsB.contains(.channelClosed(first)) && pipe.eventsA.contains(.channelClosed(first)) })
        #expect(Loopback.messages(pipe.eventsB, on: first).count == 1)  // what was sent before the close arrives
        #expect(pipe.a.openChannels == [second] && pipe.b.openChannels == [second])
        // The lowest free id of our parity is 0 again.
        pipe.eventsA.removeAll()
        pipe.eventsB.removeAll()
        let again = try pipe.openFromA(label: "three")
        #expect(again == first)
        pipe.a.send([3], on: again)
        #expect(pipe.run { Loopback.messages(pipe.eventsB, on: again).count == 1 })
        #expect(Loopback.messages(pipe.eventsB, on: again).first?.0 == ByteBuffer(bytes: [3]))
        // The peer closing works the same way.
        pipe.b.closeChannel(second)
        #expect(pipe.run { pipe.eventsA.contains(.channelClosed(second)) && pipe.eventsB.contains(.channelClosed(second)) })
    }

    @Test func losingEveryTenthDatagramStillDeliversEverythingInOrder() throws {
        let pipe = Loopback()
        pipe.dropEvery = 10
        pipe.connect()
        let id = try pipe.openFromA(label: "lossy")
        var hash = SHA256()
        var count = 0
        for index in 0..<300 {
            let bytes = randomBytes(index == 150 ? 200 * 1024 : 1 + (index * 97) % 4000, seed: UInt64(5000 + index))
            hash.update(data: bytes)
            #expect(pipe.a.send(bytes, on: id) != .refused(.queueFull))
            count += 1
        }
        #expect(pipe.run(maxTicks: 20000) { Loopback.messages(pipe.eventsB, on: id).count == count })
        var received = SHA256()
        for (bytes, _) in Loopback.messages(pipe.eventsB, on: id) { received.update(data: Array(bytes.readableBytesView)) }
        #expect(received.finalize() == hash.finalize())
        #expect(pipe.dropped > 10)
    }

    /// More timeouts in a row than usrsctp's default Path.Max.Retrans (5): at that default it
    /// marked the one path unreachable and sent no new data on it until a heartbeat, 30 s
    /// later, confirmed it again (retransmissions that get through do not count), so an agent's
    /// transfer stalled for half a minute after a 4 s outage. The path must come back with the
    /// next retransmission, and a heartbeat can be asked for at once. Real time: usrsctp
    /// compares send times with the wall clock before it retransmits. RTOs are short (50–100
    /// ms) so that 1 s of outage is ten timeouts.
    @Test func afterALongOutageDataFlowsAgainWithTheNextRetransmission() throws {
        var configuration = SCTPAssociation.Configuration()
        configuration.minimumRTO = 50
        configuration.maximumRTO = 100
        configuration.maximumRetransmissions = 32
        let pipe = Loopback(configuration: configuration)
        pipe.realTime = true
        #expect(pipe.a.pathChanged() == false)  // not up yet
        pipe.connect()
        let id = try pipe.openFromA(label: "outage")
        var sent = 0
        func send(_ count: Int) {
            for _ in 0..<count {
                #expect(pipe.a.send(randomBytes(1000, seed: UInt64(sent)), on: id) == .sent)
                sent += 1
            }
        }
        send(20)
        #expect(pipe.run { Loopback.messages(pipe.eventsB, on: id).count == sent })
        pipe.outage = true
        send(300)
        let dropped = pipe.dropped
        #expect(!pipe.run(maxTicks: 100) { Loopback.messages(pipe.eventsB, on: id).count == sent })
        #expect(pipe.dropped - dropped >= 20)  // the first flight, then a retransmission per timeout
        pipe.outage = false
        let back = ContinuousClock.now
        #expect(pipe.run(maxTicks: 300) { Loopback.messages(pipe.eventsB, on: id).count == sent })
        #expect(ContinuousClock.now - back < .milliseconds(1000))
        // Asking for a heartbeat works on an association that is up.
        #expect(pipe.a.pathChanged())
        #expect(pipe.eventsA.allSatisfy { if case .associationDown = $0 { false } else { true } })
    }

    @Test func packetsUsrsctpWritesAreReadForWhetherTheyAskForAnAnswer() throws {
        // The handshake's INIT asks; among the server's first packets the COOKIE ACK does not.
        let pipe = Loopback()
        pipe.connect()
        #expect(pipe.firstPacketsA.first.map(SCTPPacket.asksForAnswer) == true)
        #expect(pipe.firstPacketsB.contains { !SCTPPacket.asksForAnswer($0) })
    }

    @Test func anUnreliableUnorderedChannelSkipsLostMessagesInsteadOfStalling() throws {
        let pipe = Loopback()
        pipe.connect()
        let id = try pipe.a.openChannel(label: "lossy-video", ordered: false, reliability: .maxRetransmits(0))
        #expect(pipe.run { pipe.eventsA.contains(.channelOpenAcked(id)) })
        pipe.dropEvery = 4
        for index in 0..<200 { pipe.a.send(ByteBuffer(string: "m\(index)"), on: id) ; pipe.run(maxTicks: 0) { false } }
        pipe.run(maxTicks: 300) { false }
        let received = Loopback.messages(pipe.eventsB, on: id).map { String(buffer: $0.0) }
        // Lost messages are not retransmitted (PR-SCTP, RFC 3758), yet most get through and
        // the association stays usable.
        #expect(received.count < 200 && received.count > 100, "\(received.count)")
        #expect(Set(received).count == received.count)
        pipe.dropEvery = 0
        let reliable = try pipe.openFromA(label: "after")
        pipe.a.send([7], on: reliable)
        #expect(pipe.run { Loopback.messages(pipe.eventsB, on: reliable).count == 1 })
    }

    @Test func garbageInputIsDroppedAndTheAssociationCarriesOn() throws {
        let pipe = Loopback()
        pipe.connect()
        let id = try pipe.openFromA(label: "sturdy")
        let before = pipe.b.statistics.packetsDropped
        pipe.b.input([])
        pipe.b.input([1, 2, 3])
        pipe.b.input(randomBytes(200, seed: 7))  // checksum wrong
        for seed in 0..<200 {
            // Right checksum, random content: usrsctp itself must shrug it off.
            var packet = randomBytes(12 + seed % 300, seed: UInt64(seed))
            packet[0] = 0x13
            packet[1] = 0x88
            packet[2] = 0x13
            packet[3] = 0x88
            SCTPAssociation.setChecksum(&packet)
            pipe.b.input(packet)
        }
        #expect(pipe.b.statistics.packetsDropped == before + 3)
        pipe.a.send([42], on: id)
        #expect(pipe.run { Loopback.messages(pipe.eventsB, on: id).count == 1 })
        #expect(pipe.b.isUp)
    }

    @Test func closingWhilePacketsAreStillQueuedIsHarmless() throws {
        let pipe = Loopback()
        pipe.connect()
        let id = try pipe.openFromA(label: "doomed")
        for index in 0..<50 { pipe.a.send(randomBytes(2000, seed: UInt64(index)), on: id) }
        pipe.b.send([1, 2, 3], on: id)
        // Packets both ways are in flight; a goes away.
        pipe.a.close()
        #expect(pipe.a.send([1], on: id) == .refused(.notConnected))
        #expect(throws: SCTPAssociation.OpenError.notConnected) { try pipe.a.openChannel(label: "x") }
        pipe.run(maxTicks: 50) { false }
        pipe.a = nil  // deinit after close
        pipe.run(maxTicks: 50) { false }
        pipe.b.close()
        pipe.b = nil
        pipe.run(maxTicks: 20) { false }
        // A new pair still works afterwards.
        let next = Loopback()
        next.connect()
    }

    @Test func theAbortOfOnePeerTakesTheOtherDown() {
        let pipe = Loopback()
        pipe.connect()
        pipe.a.close()
        #expect(pipe.run { pipe.eventsB.contains(.associationDown(.lost)) })
        #expect(!pipe.eventsA.contains(.associationDown(.lost)))  // a closed itself: no events
    }
}
