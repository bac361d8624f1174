import NIOCore
import NIOPosix
import NIOSSL
import Wire

/// TURNTLSOptions says how a TLS connection to the TURN server checks the server.
package struct TURNTLSOptions: Sendable {
    package enum Verification: Sendable {
        /// Chain and host name (`serverHostname`) against `trustRoots`.
        case full
        /// Chain only: for servers reached by IP address.
        case noHostnameVerification
        /// Nothing: the tests' and the lab's self-signed certificates. Say so explicitly.
        case none
    }

    package var verification: Verification
    /// SNI and the name checked; nil for a server reached by IP address.
    package var serverHostname: String?
    package var trustRoots: NIOSSLTrustRoots

    package init(verification: Verification = .full, serverHostname: String? = nil,
                 trustRoots: NIOSSLTrustRoots = .default) {
        self.verification = verification
        self.serverHostname = serverHostname
        self.trustRoots = trustRoots
    }

    package static let noVerification = TURNTLSOptions(verification: .none)

    func makeContext() throws -> NIOSSLContext {
        var configuration = TLSConfiguration.makeClientConfiguration()
        configuration.trustRoots = trustRoots
        switch verification {
        case .full: configuration.certificateVerification = .fullVerification
        case .noHostnameVerification: configuration.certificateVerification = .noHostnameVerification
        case .none: configuration.certificateVerification = .none
        }
        return try NIOSSLContext(configuration: configuration)
    }
}

/// TURNConnection is one allocation on a TURN server over UDP, TCP or TLS: a `TURNClientCore`
/// run on the event loop of its channel, with timers scheduled from the core's deadline.
///
/// Threading: everything happens on `eventLoop` — the loop passed to `connect` — and
/// `onEvent` is always called there (several connections may share one loop; none starts a
/// thread). `send` and `close` may be called from any thread; called on the loop they act at once.
package final class TURNConnection: Sendable {
    package struct Configuration: Sendable {
        package var server: SocketAddress
        package var client: TURNClientConfiguration
        /// Used when `client.transport` is `.tls`.
        package var tls: TURNTLSOptions
        /// Local address to bind (UDP) or connect from (TCP/TLS); nil for any.
        package var localAddress: SocketAddress?
        package var connectTimeout: TimeAmount = .seconds(10)

        package init(server: SocketAddress, client: TURNClientConfiguration, tls: TURNTLSOptions = TURNTLSOptions(),
                     localAddress: SocketAddress? = nil) {
            self.server = server
            self.client = client
            self.tls = tls
            self.localAddress = localAddress
        }
    }

    package let eventLoop: any EventLoop
    package let channel: any Channel
    /// Succeeds with the allocation, or fails with a `TURNClientError`.
    package let allocation: EventLoopFuture<TURNAllocation>
    private let handler: NIOLoopBound<TURNClientHandler>

    private init(channel: any Channel, handler: TURNClientHandler, allocation: EventLoopFuture<TURNAllocation>) {
        self.eventLoop = channel.eventLoop
        self.channel = channel
        self.handler = NIOLoopBound(handler, eventLoop: channel.eventLoop)
        self.allocation = allocation
    }

    /// Opens the transport to the server and starts allocating. The future fails only when
    /// the transport cannot be opened; the allocation's outcome is `allocation` (and events).
    package static func connect(
        _ configuration: Configuration, on loop: any EventLoop,
        onEvent: @escaping @Sendable (TURNClientEvent) -> Void = { _ in }
    ) -> EventLoopFuture<TURNConnection> {
        let promise = loop.makePromise(of: TURNAllocation.self)
        let opened: EventLoopFuture<any Channel>
        let client = configuration.client
        switch client.transport {
        case .udp:
            let server = configuration.server
            let local = configuration.localAddress
                ?? (try! SocketAddress(ipAddress: server.protocol == .inet6 ? "::" : "0.0.0.0", port: 0))
            opened = DatagramBootstrap(group: loop)
                // recvmmsg: up to 16 datagrams of up to 2 KiB per read (the agent sends at most
                // 1280-byte packets; a larger datagram is cut and fails its checks).
                .channelOption(.datagramVectorReadMessageCount, value: 16)
                .channelOption(.recvAllocator, value: FixedSizeRecvByteBufferAllocator(capacity: 16 * 2048))
                .channelInitializer { channel in
                    channel.eventLoop.makeCompletedFuture {
                        try channel.pipeline.syncOperations.addHandlers(
                            UDPServerAdapter(server: server),
                            TURNClientHandler(configuration: client, allocation: promise, onEvent: onEvent))
                    }
                }
                .bind(to: local)
        case .tcp, .tls:
            let context: NIOSSLContext?
            do {
                context = client.transport == .tls ? try configuration.tls.makeContext() : nil
            } catch {
                promise.fail(TURNClientError.transport("\(error)"))
                return loop.makeFailedFuture(error)
            }
            let hostname = configuration.tls.serverHostname
            var bootstrap = ClientBootstrap(group: loop)
                .connectTimeout(configuration.connectTimeout)
                .channelOption(.socketOption(.tcp_nodelay), value: 1)
                .channelInitializer { channel in
                    channel.eventLoop.makeCompletedFuture {
                        let sync = channel.pipeline.syncOperations
                        if let context {
                            try sync.addHandler(NIOSSLClientHandler(context: context, serverHostname: hostname))
                        }
                        try sync.addHandler(ByteToMessageHandler(TURNStreamDecoder()))
                        try sync.addHandler(TURNClientHandler(configuration: client, allocation: promise, onEvent: onEvent))
                    }
                }
            if let local = configuration.localAddress { bootstrap = bootstrap.bind(to: local) }
            opened = bootstrap.connect(to: configuration.server)
        }
        return opened.flatMapError { error in
            promise.fail(TURNClientError.transport("\(error)"))
            return loop.makeFailedFuture(error)
        }.flatMapThrowing { channel in
            let handler = try channel.pipeline.syncOperations.handler(type: TURNClientHandler.self)
            return TURNConnection(channel: channel, handler: handler, allocation: promise.futureResult)
        }
    }

    /// Sends `data` to `peer` through the relay (queued while its permission is pending).
    package func send(_ data: ByteBuffer, to peer: TransportAddress) {
        if eventLoop.inEventLoop {
            handler.value.send(data, to: peer)
        } else {
            let handler = self.handler
            eventLoop.execute { handler.value.send(data, to: peer) }
        }
    }

    /// Ends the allocation (Refresh with LIFETIME 0) and closes the transport once the server
    /// answered or the request timed out. The future succeeds when the channel is closed.
    @discardableResult
    package func close() -> EventLoopFuture<Void> {
        let handler = self.handler
        eventLoop.execute { handler.value.close() }
        return channel.closeFuture
    }

    /// The core's counters; on the event loop only.
    package var counters: TURNClientCore.Counters { handler.value.core.counters }

    /// The channel bound to `peer`, if any; on the event loop only.
    package func boundChannel(for peer: TransportAddress) -> UInt16? {
        handler.value.core.boundChannel(for: peer, now: TURNClientHandler.now())
    }
}

/// TURNClientHandler runs a `TURNClientCore` on its channel: frames in, actions out, one timer.
final class TURNClientHandler: ChannelInboundHandler {
    typealias InboundIn = ByteBuffer
    typealias OutboundOut = ByteBuffer

    private(set) var core: TURNClientCore
    private let allocationPromise: EventLoopPromise<TURNAllocation>
    private let onEvent: @Sendable (TURNClientEvent) -> Void
    private var context: ChannelHandlerContext?
    private var timer: (deadline: Int64, task: Scheduled<Void>)?
    private var finished = false

    init(configuration: TURNClientConfiguration, allocation: EventLoopPromise<TURNAllocation>,
         onEvent: @escaping @Sendable (TURNClientEvent) -> Void) {
        self.core = TURNClientCore(configuration: configuration)
        self.allocationPromise = allocation
        self.onEvent = onEvent
    }

    /// Monotonic milliseconds: the core's clock.
    static func now() -> Int64 { Int64(NIODeadline.now().uptimeNanoseconds / 1_000_000) }

    func handlerAdded(context: ChannelHandlerContext) {
        self.context = context
        if context.channel.isActive { perform(core.start(now: Self.now())) }
    }

    func handlerRemoved(context: ChannelHandlerContext) {
        timer?.task.cancel()
        timer = nil
        self.context = nil
    }

    func channelActive(context: ChannelHandlerContext) {
        perform(core.start(now: Self.now()))
        context.fireChannelActive()
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        perform(core.receive(unwrapInboundIn(data), now: Self.now()))
    }

    func channelInactive(context: ChannelHandlerContext) {
        perform(core.connectionLost(now: Self.now()))
        timer?.task.cancel()
        timer = nil
        allocationPromise.fail(TURNClientError.connectionClosed)  // no-op once completed
        context.fireChannelInactive()
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        perform(core.transportFailed("\(error)", now: Self.now()))
        context.close(promise: nil)
    }

    /// Data to the peer is flushed once per loop pass, not per message: what one pass
    /// produced (an SCTP burst) leaves in one sendmmsg, or one TCP/TLS write.
    func send(_ data: ByteBuffer, to peer: TransportAddress) {
        perform(core.send(data, to: peer, now: Self.now()), deferFlush: true)
    }

    private var flushScheduled = false

    private func scheduleFlush(_ context: ChannelHandlerContext) {
        guard !flushScheduled else { return }
        flushScheduled = true
        let handler = NIOLoopBound(self, eventLoop: context.eventLoop)
        context.eventLoop.execute {
            handler.value.flushScheduled = false
            handler.value.context?.flush()
        }
    }

    func close() {
        guard let context else { return }
        switch core.state {
        case .closed, .failed: context.close(promise: nil)
        default: perform(core.close(now: Self.now()))
        }
    }

    private func perform(_ actions: [TURNClientAction], deferFlush: Bool = false) {
        guard let context else { return }
        var wrote = false
        var closeAfter = false
        for action in actions {
            switch action {
            case .send(let bytes):
                context.write(wrapOutboundOut(bytes), promise: nil)
                wrote = true
            case .event(let event):
                switch event {
                case .allocated(let relayed, let mapped, let lifetime):
                    allocationPromise.succeed(TURNAllocation(relayed: relayed, mapped: mapped, lifetime: lifetime))
                case .failed(let error):
                    allocationPromise.fail(error)
                    closeAfter = true
                case .closed:
                    allocationPromise.fail(TURNClientError.connectionClosed)
                    closeAfter = true
                default:
                    break
                }
                if !finished { onEvent(event) }
                if case .failed = event { finished = true }
                if case .closed = event { finished = true }
            }
        }
        if wrote {
            if deferFlush && !closeAfter { scheduleFlush(context) } else { context.flush() }
        }
        if closeAfter {
            timer?.task.cancel()
            timer = nil
            context.close(promise: nil)
            return
        }
        schedule(context: context)
    }

    private func schedule(context: ChannelHandlerContext) {
        guard let deadline = core.nextDeadline else {
            timer?.task.cancel()
            timer = nil
            return
        }
        if let timer, timer.deadline == deadline { return }
        timer?.task.cancel()
        let nanos = UInt64(max(0, deadline)) * 1_000_000
        let task = context.eventLoop.assumeIsolated().scheduleTask(deadline: .uptimeNanoseconds(nanos)) { [self] in
            timer = nil
            perform(core.tick(now: Self.now()))
        }
        timer = (deadline, task)
    }
}

@available(*, unavailable)
extension TURNClientHandler: Sendable {}

/// UDPServerAdapter keeps a UDP channel to the server: datagrams from elsewhere are dropped,
/// and what the client writes goes to the server.
final class UDPServerAdapter: ChannelDuplexHandler {
    typealias InboundIn = AddressedEnvelope<ByteBuffer>
    typealias InboundOut = ByteBuffer
    typealias OutboundIn = ByteBuffer
    typealias OutboundOut = AddressedEnvelope<ByteBuffer>

    private let server: SocketAddress
    private(set) var foreign = 0

    init(server: SocketAddress) { self.server = server }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        let envelope = unwrapInboundIn(data)
        guard envelope.remoteAddress == server else {
            foreign += 1
            return
        }
        context.fireChannelRead(wrapInboundOut(envelope.data))
    }

    func write(context: ChannelHandlerContext, data: NIOAny, promise: EventLoopPromise<Void>?) {
        context.write(wrapOutboundOut(AddressedEnvelope(remoteAddress: server, data: unwrapOutboundIn(data))),
                      promise: promise)
    }

    /// A refused datagram (ICMP port unreachable) is not the end over UDP: retransmission
    /// and timeouts decide.
    func errorCaught(context: ChannelHandlerContext, error: any Error) {}
}

@available(*, unavailable)
extension UDPServerAdapter: Sendable {}

/// TURNStreamDecoder cuts the TCP/TLS byte stream from the server into STUN messages and
/// ChannelData frames (RFC 8656 §12.5). A byte that starts neither is an error: the stream
/// cannot be resynchronised, so the connection fails.
struct TURNStreamDecoder: ByteToMessageDecoder {
    typealias InboundOut = ByteBuffer

    mutating func decode(context: ChannelHandlerContext, buffer: inout ByteBuffer) throws -> DecodingState {
        guard let frame = try StreamFrame.next(in: buffer), let slice = buffer.readSlice(length: frame.length) else {
            return .needMoreData
        }
        context.fireChannelRead(wrapInboundOut(slice))
        return .continue
    }
}
