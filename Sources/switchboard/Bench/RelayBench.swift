import ArgumentParser
import Foundation
import NIOConcurrencyHelpers
import NIOCore
import NIOPosix
import TURNClient
import Wire

struct BenchCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "bench", abstract: "Load tools (benchmarks, not tests).", subcommands: [BenchRelay.self, BenchSignal.self, BenchWHEP.self, BenchSRTP.self])
}

/// `switchboard bench relay`: allocates on a TURN server, binds a channel to an echo peer it
/// runs itself, and floods ChannelData with a window of packets in flight, counting echoes.
/// Works against any TURN server (Switchboard, coturn) with REST or static credentials.
struct BenchRelay: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "relay",
        abstract: "Flood a TURN server's ChannelData path through an echo peer and print packets/s.")

    @Option(help: "TURN server address.") var server = "127.0.0.1:3478"
    @Option(help: "TURN REST shared secret (else --user and --password).") var secret: String?
    @Option(help: "Static user name.") var user = "bench"
    @Option(help: "Static user password.") var password: String?
    @Option(help: "Seconds to flood.") var seconds = 10
    @Option(help: "Packets in flight per client.") var window = 64
    @Option(help: "Payload bytes per packet.") var size = 200
    @Option(help: "Concurrent clients (allocations) flooding.") var clients = 1
    @Option(help: "Instead of flooding: open this many allocations, print READY, hold them --hold seconds.")
    var allocations = 0
    @Option(help: "Seconds to hold allocations in --allocations mode.") var hold = 10
    @Flag(help: "Print one JSON line.") var json = false

    /// The load tool's sockets take bursts as one read (UDP_GRO) and send them as one
    /// message (UDP_SEGMENT) where the kernel can, so that it is not what limits the run.
    static func offloading(_ bootstrap: DatagramBootstrap) -> DatagramBootstrap {
        guard System.supportsUDPReceiveOffload else {
            return bootstrap
                .channelOption(.recvAllocator, value: FixedSizeRecvByteBufferAllocator(capacity: 64 * 2048))
                .channelOption(.datagramVectorReadMessageCount, value: 64)
        }
        return bootstrap
            .channelOption(.recvAllocator, value: FixedSizeRecvByteBufferAllocator(capacity: 8 * 65536))
            .channelOption(.datagramVectorReadMessageCount, value: 8)
            .channelOption(.datagramReceiveOffload, value: true)
            .channelOption(.datagramReceiveSegmentSize, value: true)
    }

    func run() async throws {
        let address = try ListenAddress(parsing: server)
        let serverAddress = try SocketAddress(ipAddress: address.host, port: address.port)
        // One loop for the clients and the echo peer: pin the process to one core with taskset.
        let loop = MultiThreadedEventLoopGroup.singleton.next()

        let echo = try await Self.offloading(DatagramBootstrap(group: loop))
            .channelInitializer { channel in
                channel.eventLoop.makeCompletedFuture { try channel.pipeline.syncOperations.addHandler(EchoHandler()) }
            }
            .bind(host: address.host.contains(":") ? "::1" : "127.0.0.1", port: 0).get()
        let peer = TransportAddress(echo.localAddress!)!

        let credentials: (String, String)
        if let secret {
            let rest = TURNRESTCredential(secret: secret, name: "bench",
                                          expiry: Int64(Date().timeIntervalSince1970) + 3600)
            credentials = (rest.username, rest.password)
        } else if let password {
            credentials = (user, password)
        } else {
            throw ValidationError("give --secret or --password")
        }

        if allocations > 0 {
            var held: [TURNBenchClient] = []
            let started = ContinuousClock.now
            for _ in 0..<allocations {
                let client = try await TURNBenchClient.connect(
                    loop: loop, server: serverAddress, offload: false, username: credentials.0, password: credentials.1)
                try await client.allocate()
                held.append(client)
            }
            let elapsed = ContinuousClock.now - started
            Output.line("READY \(held.count) allocations in \(elapsed)")
            try await Task.sleep(for: .seconds(hold))
            for client in held { await client.release() }
            return
        }

        var flooders: [TURNBenchClient] = []
        for _ in 0..<clients {
            let client = try await TURNBenchClient.connect(
                loop: loop, server: serverAddress, offload: true, username: credentials.0, password: credentials.1)
            try await client.allocate()
            try await client.bindChannel(to: peer)
            flooders.append(client)
        }
        let payload = ByteBuffer(repeating: 0x5A, count: size)
        try await loop.submit { for client in flooders { client.startFlood(payload: payload, window: window) } }.get()
        try await Task.sleep(for: .seconds(1))  // warm-up
        let before = try await loop.submit { flooders.map(\.handler.received).reduce(0, +) }.get()
        let start = ContinuousClock.now
        try await Task.sleep(for: .seconds(seconds))
        let after = try await loop.submit { flooders.map(\.handler.received).reduce(0, +) }.get()
        let elapsed = ContinuousClock.now - start
        let perSecond = Double(after - before) / elapsed.seconds
        try await loop.submit { for client in flooders { client.handler.stop() } }.get()
        try await Task.sleep(for: .milliseconds(200))  // let the window drain
        for client in flooders { await client.release() }
        try? await echo.close()
        if json {
            Output.line(#"{"packets_per_second":\#(Int(perSecond)),"clients":\#(clients),"window":\#(window),"size":\#(size)}"#)
        } else {
            // Each echo is two relayed packets: client→peer and peer→client.
            Output.line("relay echo round trips/s: \(Int(perSecond)) (relayed packets/s: \(Int(perSecond * 2)), "
                + "clients \(clients), window \(window), \(size) B)")
        }
    }
}

/// The load client over UDP: `TURNClientCore` (the peer agent's TURN client) makes and checks
/// every STUN message during setup; the flood then frames ChannelData on the bound channel
/// itself and keeps `window` packets in flight, so the client core is off the per-packet path.
final class TURNBenchClient: Sendable {
    let channel: any Channel
    let handler: BenchClientHandler

    init(channel: any Channel, handler: BenchClientHandler) {
        self.channel = channel
        self.handler = handler
    }

    /// `offload`: flooding clients take and send bursts whole (big receive buffers); clients
    /// that only hold an allocation keep small ones.
    static func connect(loop: any EventLoop, server: SocketAddress, offload: Bool, username: String,
                        password: String) async throws -> TURNBenchClient {
        let handler = BenchClientHandler(
            server: server, core: TURNClientCore(configuration: TURNClientConfiguration(username: username, password: password)))
        let bootstrap = DatagramBootstrap(group: loop)
        let channel = try await (offload ? BenchRelay.offloading(bootstrap) : bootstrap)
            .channelInitializer { channel in
                channel.eventLoop.makeCompletedFuture { try channel.pipeline.syncOperations.addHandler(handler) }
            }
            .bind(host: server.protocol == .inet6 ? "::1" : "127.0.0.1", port: 0).get()
        return TURNBenchClient(channel: channel, handler: handler)
    }

    func allocate() async throws {
        let promise = channel.eventLoop.makePromise(of: Void.self)
        try await channel.eventLoop.submit { self.handler.allocate(promise) }.get()
        try await promise.futureResult.get()
    }

    /// Sends one packet to `peer` through the relay: the core installs the permission, sends
    /// it as a Send indication and binds a channel, whose number the flood then uses.
    func bindChannel(to peer: TransportAddress) async throws {
        let promise = channel.eventLoop.makePromise(of: UInt16.self)
        try await channel.eventLoop.submit { self.handler.bindChannel(to: peer, promise) }.get()
        _ = try await promise.futureResult.get()
    }

    /// Ends the allocation (Refresh with LIFETIME 0) and closes the socket, so a later run
    /// that gets the same ephemeral port does not meet it (437).
    func release() async {
        let promise = channel.eventLoop.makePromise(of: Void.self)
        channel.eventLoop.execute { self.handler.release(promise) }
        _ = try? await promise.futureResult.get()
        try? await channel.close()
    }

    /// On the event loop: send a window of ChannelData packets; each echo sends another.
    func startFlood(payload: ByteBuffer, window: Int) {
        handler.startFlood(channel: channel, payload: payload, window: window)
    }
}

/// Runs the client core during setup (STUN in, STUN out, its timers) and the flood after.
/// Touched only on its channel's event loop.
final class BenchClientHandler: ChannelInboundHandler, @unchecked Sendable {
    typealias InboundIn = AddressedEnvelope<ByteBuffer>

    let server: SocketAddress
    private var core: TURNClientCore
    private var allocated: EventLoopPromise<Void>?
    private var bound: (peer: TransportAddress, promise: EventLoopPromise<UInt16>)?
    private var closed: EventLoopPromise<Void>?
    private var timer: Scheduled<Void>?
    var channelNumber: UInt16 = 0x4000
    var received = 0
    private var flooding = false
    private var packet = ByteBuffer()
    private var context: ChannelHandlerContext?

    init(server: SocketAddress, core: TURNClientCore) {
        self.server = server
        self.core = core
    }

    private static func now() -> Int64 { Int64(NIODeadline.now().uptimeNanoseconds / 1_000_000) }

    func handlerAdded(context: ChannelHandlerContext) { self.context = context }

    func handlerRemoved(context: ChannelHandlerContext) {
        timer?.cancel()
        self.context = nil
        allocated?.fail(BenchError("closed"))
        bound?.promise.fail(BenchError("closed"))
        closed?.succeed()
    }

    func allocate(_ promise: EventLoopPromise<Void>) {
        allocated = promise
        perform(core.start(now: Self.now()))
    }

    func bindChannel(to peer: TransportAddress, _ promise: EventLoopPromise<UInt16>) {
        bound = (peer, promise)
        perform(core.send(ByteBuffer(bytes: [0]), to: peer, now: Self.now()))
    }

    func release(_ promise: EventLoopPromise<Void>) {
        closed = promise
        perform(core.close(now: Self.now()))
    }

    private func perform(_ actions: [TURNClientAction]) {
        guard let context else { return }
        for action in actions {
            switch action {
            case .send(let bytes):
                context.write(wrapOutboundOut(AddressedEnvelope(remoteAddress: server, data: bytes)), promise: nil)
            case .event(.allocated):
                allocated?.succeed()
            case .event(.channelBound(let peer, let number)):
                if let bound, bound.peer == peer {
                    channelNumber = number
                    bound.promise.succeed(number)
                }
            case .event(.permissionFailed(_, let error)):
                bound?.promise.fail(BenchError("CreatePermission failed: \(error)"))
            case .event(.failed(let error)):
                allocated?.fail(BenchError("\(error)"))
                bound?.promise.fail(BenchError("\(error)"))
                closed?.succeed()
            case .event(.closed):
                closed?.succeed()
            case .event(.data):
                break
            }
        }
        context.flush()
        timer?.cancel()
        timer = nil
        if let deadline = core.nextDeadline {
            timer = context.eventLoop.assumeIsolated().scheduleTask(
                deadline: .uptimeNanoseconds(UInt64(max(0, deadline)) * 1_000_000)
            ) { [self] in
                perform(core.tick(now: Self.now()))
            }
        }
    }

    func startFlood(channel: any Channel, payload: ByteBuffer, window: Int) {
        var frame = ByteBuffer()
        ChannelData(channel: channelNumber, data: payload).write(to: &frame, padded: false)
        packet = frame
        flooding = true
        for _ in 0..<window { channel.write(AddressedEnvelope(remoteAddress: server, data: packet), promise: nil) }
        channel.flush()
    }

    func stop() { flooding = false }

    /// Packets owed for echoes of this read batch: sent at its end, as segmentation-offload
    /// messages where the kernel has them, so that the load tool is not what limits the run.
    private var owed = 0

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        let envelope = unwrapInboundIn(data)
        guard envelope.remoteAddress == server,
              let first = envelope.data.getInteger(at: envelope.data.readerIndex, as: UInt8.self) else { return }
        if first >= 64 && first < 128 {
            // A coalesced read (UDP_GRO) is several echoes of `segmentSize` bytes.
            let size = envelope.metadata?.segmentSize ?? envelope.data.readableBytes
            let count = max(1, (envelope.data.readableBytes + size - 1) / max(size, 1))
            received += count
            if flooding { owed += count }
        } else {
            perform(core.receive(envelope.data, now: Self.now()))
        }
    }

    func channelReadComplete(context: ChannelHandlerContext) {
        while owed > 0 {
            let count = System.supportsUDPSegmentationOffload ? min(owed, 64) : 1
            owed -= count
            context.write(wrapOutboundOut(Self.segmented(packet, count: count, to: server)), promise: nil)
        }
        context.flush()
    }

    /// `count` copies of `packet` to `address`: one datagram, or one message the kernel cuts
    /// into `count` (UDP_SEGMENT).
    static func segmented(_ packet: ByteBuffer, count: Int, to address: SocketAddress) -> AddressedEnvelope<ByteBuffer> {
        guard count > 1 else { return AddressedEnvelope(remoteAddress: address, data: packet) }
        var joined = ByteBuffer()
        joined.reserveCapacity(packet.readableBytes * count)
        for _ in 0..<count { joined.writeImmutableBuffer(packet) }
        return AddressedEnvelope(remoteAddress: address, data: joined, metadata: .init(
            ecnState: .transportNotCapable, packetInfo: nil, segmentSize: packet.readableBytes))
    }
}

extension BenchClientHandler {
    typealias OutboundOut = AddressedEnvelope<ByteBuffer>
}

/// Echoes every datagram to where it came from: the benchmark's peer. A read batch's
/// echoes of one size to one address go back as segmentation-offload messages.
final class EchoHandler: ChannelInboundHandler, @unchecked Sendable {
    typealias InboundIn = AddressedEnvelope<ByteBuffer>
    typealias OutboundOut = AddressedEnvelope<ByteBuffer>
    private var run: (envelope: AddressedEnvelope<ByteBuffer>, count: Int)?

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        let envelope = unwrapInboundIn(data)
        if let size = envelope.metadata?.segmentSize, envelope.data.readableBytes > size {
            // A coalesced read (UDP_GRO): back as one message cut the same way.
            sendRun(context: context)
            context.write(wrapOutboundOut(AddressedEnvelope(remoteAddress: envelope.remoteAddress, data: envelope.data,
                metadata: .init(ecnState: .transportNotCapable, packetInfo: nil, segmentSize: size))), promise: nil)
            return
        }
        if let current = run, System.supportsUDPSegmentationOffload, current.count < 64,
           current.envelope.remoteAddress == envelope.remoteAddress, current.envelope.data == envelope.data {
            run = (current.envelope, current.count + 1)
            return
        }
        sendRun(context: context)
        run = (envelope, 1)
    }

    func channelReadComplete(context: ChannelHandlerContext) {
        sendRun(context: context)
        context.flush()
    }

    private func sendRun(context: ChannelHandlerContext) {
        guard let (envelope, count) = run else { return }
        run = nil
        context.write(wrapOutboundOut(BenchClientHandler.segmented(envelope.data, count: count, to: envelope.remoteAddress)),
                      promise: nil)
    }
}

struct BenchError: Error, CustomStringConvertible {
    var description: String
    init(_ description: String) { self.description = description }
}
