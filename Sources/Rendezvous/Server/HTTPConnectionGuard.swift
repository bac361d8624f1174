import Admission
import HummingbirdCore
import Logging
import Metrics
import NIOCore
import NIOHTTP1
import NIOConcurrencyHelpers
import Wire

/// HTTPConnectionLimits bound what one HTTP connection, or one source's connections, may hold.
package struct HTTPConnectionLimits: Sendable {
    /// A request's head and body must arrive within this of its first byte (or of the accept).
    package var requestTimeout: Duration = .seconds(10)
    /// A kept-alive connection may be silent this long between requests.
    package var idleTimeout: Duration = .seconds(75)
    /// Open connections per source (IPv4 address or IPv6 /64), more are closed at accept;
    /// 0 means no limit.
    package var perSource = 256

    package init() {}
}

/// HTTPSourceCounter counts open connections per source across the HTTP server's loops.
package final class HTTPSourceCounter: Sendable {
    private let counts: NIOLockedValueBox<SourceCounts>

    package init(limit: Int) { counts = NIOLockedValueBox(SourceCounts(limit: limit)) }

    package var limit: Int { counts.withLockedValue { $0.limit } }

    /// Takes a place for a connection from `address`: false when its source is full.
    package func acquire(_ address: IPAddress) -> Bool {
        counts.withLockedValue { $0.acquire(ClientSource(address)) }
    }

    package func release(_ address: IPAddress) {
        counts.withLockedValue { $0.release(ClientSource(address)) }
    }

    package func count(_ address: IPAddress) -> Int {
        counts.withLockedValue { $0.count(ClientSource(address)) }
    }
}

/// HTTPConnectionGuard admits an HTTP connection under the per-source cap and puts the
/// request and idle timeouts on it (`HTTPConnectionTimer`), around Hummingbird's channel setup
/// (`ConnectionOnItsLoop` calls it). It is not a `ServerChildChannel` wrapper of its own: each
/// wrapper's `handle` is one more async frame for the connection's whole life, and that one
/// took a task-stack slab of its own, about 1 KB per connection (heaptrack, 2000 SSE peers).
///
/// Why not Hummingbird's `idleTimeout` (HTTP1Channel.Configuration, 2.28): with the WebSocket
/// upgrade channel its handler is added only once the first request head has arrived, so a
/// header sent a byte at a time is never timed; it counts parts, not bytes, so a request
/// that began arriving is not told from an idle connection; and it never sees the SSE
/// streams `EventStreamHandler` takes over, so it would cut them.
struct HTTPConnectionGuard: Sendable {
    let limits: HTTPConnectionLimits
    let sources: HTTPSourceCounter

    /// `inner` is the wrapped channel's own setup.
    func setup<Value>(channel: any Channel, logger: Logger, inner: () -> EventLoopFuture<Value>) -> EventLoopFuture<Value> {
        let address = channel.remoteAddress.flatMap(TransportAddress.init)?.ip
        if let address {
            guard sources.acquire(address) else {
                HTTPTimeouts.refusedPerSource.increment()
                logger.trace("http connection refused", metadata: ["client": "\(address)", "reason": "per_source"])
                // Hummingbird still gets its value; the channel is closed once registered,
                // before anything is read from it.
                return inner().map { value in
                    channel.eventLoop.execute { channel.close(promise: nil) }
                    return value
                }
            }
            let sources = self.sources
            channel.closeFuture.whenComplete { _ in sources.release(address) }
        }
        let limits = self.limits
        return inner().flatMapThrowing { value in
            let timeouts = HTTPTimeouts(limits: limits, channel: channel)
            let pipeline = channel.pipeline.syncOperations
            // Bytes are seen before the HTTP decoder (a header trickle is activity the decoder
            // keeps to itself), request and response ends right after it.
            let bytes = HTTPByteWatch(timeouts)
            try pipeline.addHandler(bytes, position: .first)
            let decoder = try pipeline.handler(type: ByteToMessageHandler<HTTPRequestDecoder>.self)
            try pipeline.addHandler(HTTPPartWatch(timeouts, bytes: bytes), position: .after(decoder))
            timeouts.arm()
            return value
        }
    }
}

/// HTTPTimeouts carries out one connection's `HTTPConnectionTimer` on its event loop: one
/// scheduled task at the current deadline, which looks again when it fires.
final class HTTPTimeouts {
    private var timer: HTTPConnectionTimer
    private let channel: any Channel
    private var scheduled: Scheduled<Void>?
    private var scheduledFor: ContinuousClock.Instant?

    static let refusedPerSource = Counter(
        label: "switchboard_http_connections_refused_total", dimensions: [("reason", "per_source")])
    private static let requestTimeouts = Counter(
        label: "switchboard_http_connections_closed_total", dimensions: [("reason", "request_timeout")])
    private static let idleClosed = Counter(
        label: "switchboard_http_connections_closed_total", dimensions: [("reason", "idle")])

    init(limits: HTTPConnectionLimits, channel: any Channel) {
        self.timer = HTTPConnectionTimer(
            limits: .init(request: limits.requestTimeout, idle: limits.idleTimeout), acceptedAt: .now)
        self.channel = channel
    }

    func bytesArrived() {
        guard timer.phase == .idle else { return }
        timer.bytesArrived(at: .now)
        arm()
    }

    func requestEnded() {
        timer.requestEnded()
        arm()
    }

    func responseEnded() {
        timer.responseEnded(at: .now)
        arm()
    }

    func upgraded() {
        timer.upgraded()
        arm()
    }

    /// Makes sure a task runs no later than the deadline; a later deadline is found by the
    /// earlier task when it fires.
    func arm() {
        guard let deadline = timer.deadline else {
            scheduled?.cancel()
            scheduled = nil
            scheduledFor = nil
            return
        }
        if let scheduledFor, scheduledFor <= deadline { return }
        scheduled?.cancel()
        scheduledFor = deadline
        scheduled = channel.eventLoop.assumeIsolated().scheduleTask(in: TimeAmount(deadline - .now)) {
            self.fire()
        }
    }

    private func fire() {
        scheduled = nil
        scheduledFor = nil
        guard timer.expired(at: .now) else {
            arm()
            return
        }
        if timer.phase == .idle { Self.idleClosed.increment() } else { Self.requestTimeouts.increment() }
        channel.close(promise: nil)
    }

    func cancel() {
        scheduled?.cancel()
        scheduled = nil
        scheduledFor = nil
    }
}

/// HTTPByteWatch sees every byte a client sends, before the HTTP decoder.
final class HTTPByteWatch: ChannelInboundHandler, RemovableChannelHandler {
    typealias InboundIn = ByteBuffer
    typealias InboundOut = ByteBuffer
    private let timeouts: HTTPTimeouts

    init(_ timeouts: HTTPTimeouts) { self.timeouts = timeouts }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        timeouts.bytesArrived()
        context.fireChannelRead(data)
    }

    func channelInactive(context: ChannelHandlerContext) {
        timeouts.cancel()
        context.fireChannelInactive()
    }
}

/// Sent down a connection's pipeline (`triggerUserOutboundEvent`) by a handler that takes the
/// connection over for good, as `EventStreamHandler` does with an SSE stream: no request
/// follows on it, so the guard's watches and their timer leave (about 0.7 KB a stream).
struct HTTPConnectionTakenOver {}

/// HTTPPartWatch sees requests end as the decoder reads them and responses end as they are
/// written. When the connection switches protocols or is taken over (`HTTPConnectionTakenOver`),
/// it leaves the pipeline with the byte watch: nothing is timed from then on.
final class HTTPPartWatch: ChannelDuplexHandler, RemovableChannelHandler {
    typealias InboundIn = HTTPServerRequestPart
    typealias InboundOut = HTTPServerRequestPart
    typealias OutboundIn = HTTPServerResponsePart
    typealias OutboundOut = HTTPServerResponsePart
    private let timeouts: HTTPTimeouts
    private let bytes: HTTPByteWatch
    /// The 101 went by: leave once it is flushed (a writeAndFlush calls flush on this
    /// handler after write, and a handler gone by then drops the flush).
    private var leaving = false

    init(_ timeouts: HTTPTimeouts, bytes: HTTPByteWatch) {
        self.timeouts = timeouts
        self.bytes = bytes
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        if case .end = unwrapInboundIn(data) { timeouts.requestEnded() }
        context.fireChannelRead(data)
    }

    func write(context: ChannelHandlerContext, data: NIOAny, promise: EventLoopPromise<Void>?) {
        switch unwrapOutboundIn(data) {
        case .head(let head) where head.status == .switchingProtocols:
            timeouts.upgraded()
            leaving = true
            context.write(data, promise: promise)
        case .end:
            timeouts.responseEnded()
            context.write(data, promise: promise)
        default:
            context.write(data, promise: promise)
        }
    }

    func flush(context: ChannelHandlerContext) {
        context.flush()
        guard leaving else { return }
        leaving = false
        // What follows is WebSocket frames, which this handler must not see.
        leave(context: context)
    }

    func triggerUserOutboundEvent(context: ChannelHandlerContext, event: Any, promise: EventLoopPromise<Void>?) {
        guard event is HTTPConnectionTakenOver else {
            context.triggerUserOutboundEvent(event, promise: promise)
            return
        }
        leave(context: context)
        promise?.succeed(())
    }

    private func leave(context: ChannelHandlerContext) {
        timeouts.cancel()
        let pipeline = context.pipeline.syncOperations
        pipeline.removeHandler(bytes, promise: nil)
        pipeline.removeHandler(context: context, promise: nil)
    }
}

@available(*, unavailable)
extension HTTPTimeouts: Sendable {}
@available(*, unavailable)
extension HTTPByteWatch: Sendable {}
@available(*, unavailable)
extension HTTPPartWatch: Sendable {}
