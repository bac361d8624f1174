import NIOCore
import NIOPosix
import TURNClient
import Wire

/// Sockets of the load tools.
package enum LoadSockets {
    /// The load tool's sockets take bursts as one read (UDP_GRO) and send them as one
    /// message (UDP_SEGMENT) where the kernel can, so that it is not what limits the run.
    package static func offloading(_ bootstrap: DatagramBootstrap) -> DatagramBootstrap {
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
}

/// The load client over UDP: `TURNClientCore` (the peer agent's TURN client) makes and checks
/// every STUN message during setup; the flood then frames ChannelData on the bound channel
/// itself and keeps `window` packets in flight, so the client core is off the per-packet path.
package final class TURNLoadClient: Sendable {
    package let channel: any Channel
    package let handler: TURNLoadClientHandler

    package init(channel: any Channel, handler: TURNLoadClientHandler) {
        self.channel = channel
        self.handler = handler
    }

    /// `offload`: flooding clients take and send bursts whole (big receive buffers); clients
    /// that only hold an allocation keep small ones.
    package static func connect(loop: any EventLoop, server: SocketAddress, offload: Bool, username: String,
                        password: String) async throws -> TURNLoadClient {
        let handler = TURNLoadClientHandler(
            server: server, core: TURNClientCore(configuration: TURNClientConfiguration(username: username, password: password)))
        let bootstrap = DatagramBootstrap(group: loop)
        let channel = try await (offload ? LoadSockets.offloading(bootstrap) : bootstrap)
            .channelInitializer { channel in
                channel.eventLoop.makeCompletedFuture { try channel.pipeline.syncOperations.addHandler(handler) }
            }
            .bind(host: server.protocol == .inet6 ? "::1" : "127.0.0.1", port: 0).get()
        return TURNLoadClient(channel: channel, handler: handler)
    }

    package func allocate() async throws {
        let promise = channel.eventLoop.makePromise(of: Void.self)
        try await channel.eventLoop.submit { self.handler.allocate(promise) }.get()
        try await promise.futureResult.get()
    }

    /// Sends one packet to `peer` through the relay: the core installs the permission, sends
    /// it as a Send indication and binds a channel, whose number the flood then uses.
    package func bindChannel(to peer: TransportAddress) async throws {
        let promise = channel.eventLoop.makePromise(of: UInt16.self)
        try await channel.eventLoop.submit { self.handler.bindChannel(to: peer, promise) }.get()
        _ = try await promise.futureResult.get()
    }

    /// Ends the allocation (Refresh with LIFETIME 0) and closes the socket, so a later run
    /// that gets the same ephemeral port does not meet it (437).
    package func release() async {
        let promise = channel.eventLoop.makePromise(of: Void.self)
        channel.eventLoop.execute { self.handler.release(promise) }
        _ = try? await promise.futureResult.get()
        try? await channel.close()
    }

    /// On the event loop: send a window of ChannelData packets; each echo sends another.
    package func startFlood(payload: ByteBuffer, window: Int) {
        handler.startFlood(channel: channel, payload: payload, window: window)
    }

    /// On the event loop: echoes received so far.
    package var received: Int { handler.received }

    /// On the event loop: no more packets for echoes.
    package func stopFlood() { handler.stop() }
}

/// Runs the client core during setup (STUN in, STUN out, its timers) and the flood after.
/// Touched only on its channel's event loop.
package final class TURNLoadClientHandler: ChannelInboundHandler, @unchecked Sendable {
    package typealias InboundIn = AddressedEnvelope<ByteBuffer>

    package let server: SocketAddress
    private var core: TURNClientCore
    private var allocated: EventLoopPromise<Void>?
    private var bound: (peer: TransportAddress, promise: EventLoopPromise<UInt16>)?
    private var closed: EventLoopPromise<Void>?
    private var timer: Scheduled<Void>?
    package var channelNumber: UInt16 = 0x4000
    package var received = 0
    private var flooding = false
    private var packet = ByteBuffer()
    private var context: ChannelHandlerContext?

    package init(server: SocketAddress, core: TURNClientCore) {
        self.server = server
        self.core = core
    }

    private static func now() -> Int64 { Int64(NIODeadline.now().uptimeNanoseconds / 1_000_000) }

    package func handlerAdded(context: ChannelHandlerContext) { self.context = context }

    package func handlerRemoved(context: ChannelHandlerContext) {
        timer?.cancel()
        self.context = nil
        allocated?.fail(LoadError("closed"))
        bound?.promise.fail(LoadError("closed"))
        closed?.succeed()
    }

    package func allocate(_ promise: EventLoopPromise<Void>) {
        allocated = promise
        perform(core.start(now: Self.now()))
    }

    package func bindChannel(to peer: TransportAddress, _ promise: EventLoopPromise<UInt16>) {
        bound = (peer, promise)
        perform(core.send(ByteBuffer(bytes: [0]), to: peer, now: Self.now()))
    }

    package func release(_ promise: EventLoopPromise<Void>) {
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
                bound?.promise.fail(LoadError("CreatePermission failed: \(error)"))
            case .event(.failed(let error)):
                allocated?.fail(LoadError("\(error)"))
                bound?.promise.fail(LoadError("\(error)"))
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

    package func startFlood(channel: any Channel, payload: ByteBuffer, window: Int) {
        var frame = ByteBuffer()
        ChannelData(channel: channelNumber, data: payload).write(to: &frame, padded: false)
        packet = frame
        flooding = true
        for _ in 0..<window { channel.write(AddressedEnvelope(remoteAddress: server, data: packet), promise: nil) }
        channel.flush()
    }

    package func stop() { flooding = false }

    /// Packets owed for echoes of this read batch: sent at its end, as segmentation-offload
    /// messages where the kernel has them, so that the load tool is not what limits the run.
    private var owed = 0

    package func channelRead(context: ChannelHandlerContext, data: NIOAny) {
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

    package func channelReadComplete(context: ChannelHandlerContext) {
        while owed > 0 {
            let count = System.supportsUDPSegmentationOffload ? min(owed, 64) : 1
            owed -= count
            context.write(wrapOutboundOut(Self.segmented(packet, count: count, to: server)), promise: nil)
        }
        context.flush()
    }

    /// `count` copies of `packet` to `address`: one datagram, or one message the kernel cuts
    /// into `count` (UDP_SEGMENT).
    package static func segmented(_ packet: ByteBuffer, count: Int, to address: SocketAddress) -> AddressedEnvelope<ByteBuffer> {
        guard count > 1 else { return AddressedEnvelope(remoteAddress: address, data: packet) }
        var joined = ByteBuffer()
        joined.reserveCapacity(packet.readableBytes * count)
        for _ in 0..<count { joined.writeImmutableBuffer(packet) }
        return AddressedEnvelope(remoteAddress: address, data: joined, metadata: .init(
            ecnState: .transportNotCapable, packetInfo: nil, segmentSize: packet.readableBytes))
    }
}

extension TURNLoadClientHandler {
    package typealias OutboundOut = AddressedEnvelope<ByteBuffer>
}

/// Echoes every datagram to where it came from: the benchmark's peer. A read batch's
/// echoes of one size to one address go back as segmentation-offload messages.
package final class UDPEchoHandler: ChannelInboundHandler, @unchecked Sendable {
    package typealias InboundIn = AddressedEnvelope<ByteBuffer>
    package typealias OutboundOut = AddressedEnvelope<ByteBuffer>
    private var run: (envelope: AddressedEnvelope<ByteBuffer>, count: Int)?

    package init() {}

    package func channelRead(context: ChannelHandlerContext, data: NIOAny) {
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

    package func channelReadComplete(context: ChannelHandlerContext) {
        sendRun(context: context)
        context.flush()
    }

    private func sendRun(context: ChannelHandlerContext) {
        guard let (envelope, count) = run else { return }
        run = nil
        context.write(wrapOutboundOut(TURNLoadClientHandler.segmented(envelope.data, count: count, to: envelope.remoteAddress)),
                      promise: nil)
    }
}

