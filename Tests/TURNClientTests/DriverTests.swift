import NIOCore
import NIOEmbedded
import Testing
import Wire
@testable import Relay
@testable import TURNClient

/// The NIO driver's own pieces in an `EmbeddedChannel`, answered by the relay's core: stream
/// framing fed one byte at a time, an unframeable stream, and UDP from the wrong source.
@Suite struct DriverTests {
    static let server = try! SocketAddress(ipAddress: "192.0.2.1", port: 3478)

    /// Hands every frame the driver wrote to the relay's core and writes its answers back,
    /// one byte per read over a stream.
    static func pumpStream(_ channel: EmbeddedChannel, _ loop: RelayLoop) throws {
        // Data to the peer is flushed after the loop pass that wrote it.
        channel.embeddedEventLoop.run()
        while let out = try channel.readOutbound(as: ByteBuffer.self) {
            for reply in loop.serve(out) {
                for byte in reply.readableBytesView { try channel.writeInbound(ByteBuffer(bytes: [byte])) }
            }
        }
    }

    static func streamChannel(_ log: EventLog) throws -> (EmbeddedChannel, EventLoopPromise<TURNAllocation>) {
        let channel = EmbeddedChannel()
        let promise = channel.eventLoop.makePromise(of: TURNAllocation.self)
        let configuration = TURNClientConfiguration(username: "bob", password: "bob-password", transport: .tcp)
        try channel.pipeline.syncOperations.addHandlers(
            ByteToMessageHandler(TURNStreamDecoder()),
            TURNClientHandler(configuration: configuration, allocation: promise, onEvent: { log.append($0) }))
        try channel.connect(to: server).wait()
        return (channel, promise)
    }

    @Test func overAStreamFramesFedOneByteAtATimeAllocateAndCarryData() throws {
        let loop = RelayLoop(transport: .tcp)
        let log = EventLog()
        let (channel, promise) = try Self.streamChannel(log)
        try Self.pumpStream(channel, loop)
        let allocation = try promise.futureResult.wait()
        #expect(allocation.relayed == loop.relayed)
        #expect(log.events == [.allocated(relayed: loop.relayed, mapped: loop.fiveTuple.client, lifetime: 600)])

        let handler = try channel.pipeline.syncOperations.handler(type: TURNClientHandler.self)
        handler.send(ByteBuffer(bytes: [1, 2, 3]), to: RelayLoop.peer)
        try Self.pumpStream(channel, loop)
        #expect(loop.toPeer.map(\.payload) == [[1, 2, 3]])
        #expect(log.events.last == .channelBound(peer: RelayLoop.peer, channel: 0x4000))

        // The peer answers over the channel: a padded ChannelData frame, byte by byte.
        let relayed = try #require(loop.relay.allocation(for: loop.fiveTuple))
        guard case .channel(let number) = loop.relay.peerData(to: relayed, from: RelayLoop.peer, length: 5,
                                                               nowMillis: loop.now) else {
            Issue.record("the relay did not route over the channel")
            return
        }
        var frame = ByteBuffer()
        ChannelData(channel: number, data: ByteBuffer(bytes: [9, 8, 7, 6, 5])).write(to: &frame, padded: true)
        for byte in frame.readableBytesView { try channel.writeInbound(ByteBuffer(bytes: [byte])) }
        #expect(log.events.last == .data(from: RelayLoop.peer, ByteBuffer(bytes: [9, 8, 7, 6, 5])))
        _ = try? channel.finish()
    }

    @Test func anUnframeableStreamFailsTheAllocationAndCloses() throws {
        let loop = RelayLoop(transport: .tcp)
        let log = EventLog()
        let (channel, _) = try Self.streamChannel(log)
        try Self.pumpStream(channel, loop)
        _ = try? channel.writeInbound(ByteBuffer(bytes: [0xFF, 0, 0, 0]))
        guard case .failed(.transport) = log.events.last else {
            Issue.record("no transport failure: \(log.events)")
            return
        }
        #expect(!channel.isActive)
    }

    @Test func overUDPDatagramsFromAnotherSourceAreDropped() throws {
        let loop = RelayLoop()
        let log = EventLog()
        let channel = EmbeddedChannel()
        let promise = channel.eventLoop.makePromise(of: TURNAllocation.self)
        try channel.pipeline.syncOperations.addHandlers(
            UDPServerAdapter(server: Self.server),
            TURNClientHandler(configuration: TURNClientConfiguration(username: "bob", password: "bob-password"),
                              allocation: promise, onEvent: { log.append($0) }))
        try channel.connect(to: Self.server).wait()
        let stranger = try SocketAddress(ipAddress: "198.51.100.9", port: 3478)
        var answered = 0
        while let out = try channel.readOutbound(as: AddressedEnvelope<ByteBuffer>.self) {
            #expect(out.remoteAddress == Self.server)
            for reply in loop.serve(out.data) {
                // The same answer from elsewhere first: ignored, so the real one still counts.
                try channel.writeInbound(AddressedEnvelope(remoteAddress: stranger, data: reply))
                #expect(log.events.isEmpty)
                try channel.writeInbound(AddressedEnvelope(remoteAddress: Self.server, data: reply))
                answered += 1
            }
        }
        #expect(answered == 2)
        #expect(try promise.futureResult.wait().relayed == loop.relayed)
        let handler = try channel.pipeline.syncOperations.handler(type: TURNClientHandler.self)
        #expect(handler.core.counters.unknownTransactions == 0)
        _ = try? channel.finish()
    }
}
