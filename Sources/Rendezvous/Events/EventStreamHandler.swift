import Foundation
import HTTPTypes
import Hummingbird
import HummingbirdCore
import Metrics
import NIOCore
import NIOHTTPTypes
import Store

/// EventStreamHandler serves `GET /v1/events` as Server-Sent Events straight from the
/// connection's NIO pipeline. It sits between the HTTP codec and Hummingbird (Hummingbird's
/// `additionalChannelHandlers`), lets every other request through, and takes over a
/// connection whose request is an SSE stream with a valid token.
///
/// Why: a stream served by a Hummingbird handler keeps its connection's task suspended inside
/// the handler for hours, and that task holds every async frame the request went through
/// (about 25 KB at 10k streams). Here a stream costs this handler, a hub entry and a place on
/// its loop's heartbeat wheel (`Heartbeats`); Hummingbird's task for the connection waits for
/// a next request with a shallow stack. Events are read and written on the channel's event
/// loop when the hub says some were stored, with no task in between.
///
/// Anything the fast path does not handle goes to the routed handler in `EventsAPI`, which
/// answers it with the same semantics: a missing or bad token (401 after the check here
/// failed), a bad Last-Event-ID (400), long-poll (`after=`/`wait=`), or a request that arrives
/// while an earlier one on the connection is still being answered.
final class EventStreamHandler: ChannelDuplexHandler, RemovableChannelHandler {
    typealias InboundIn = HTTPRequestPart
    typealias InboundOut = HTTPRequestPart
    typealias OutboundIn = HTTPResponsePart
    typealias OutboundOut = HTTPResponsePart

    /// What the streams need, shared by every connection's handler.
    struct Services: Sendable {
        var database: SwitchboardDatabase
        var hub: EventHub
        var presence: PresenceTracker
        var heartbeats: Heartbeats
        var serverName: String
    }

    private enum State {
        /// Requests pass to Hummingbird.
        case http
        /// An SSE request waits for its token check; its parts are held back.
        case authenticating([HTTPRequestPart])
        case streaming
        case closed
    }

    private let services: Services
    private var state = State.http
    /// Requests passed to Hummingbird whose response has not ended yet.
    private var requestsInFlight = 0
    private var context: ChannelHandlerContext?
    private var peer = ""
    private var subscription: UInt64?
    /// The stream's entry among the peer's consumers (`EventHub.acknowledge`).
    private var consumer: UInt64?
    private var cursor: Int64 = 0
    /// The first read acknowledges the client's cursor (Last-Event-ID); later ones do not.
    private var acknowledged = true
    private var heartbeat: Heartbeats.Membership?
    private var wroteSinceHeartbeat = false
    /// Events are waiting for the channel to become writable again.
    private var pumpWhenWritable = false

    private static let streams = Counter(
        label: "hb.requests",
        dimensions: [("http.route", "/v1/events"), ("http.request.method", "GET"), ("http.response.status_code", "200")])

    init(services: Services) { self.services = services }

    func handlerAdded(context: ChannelHandlerContext) { self.context = context }

    func handlerRemoved(context: ChannelHandlerContext) {
        self.context = nil
        endStream()
    }

    // MARK: Inbound

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        let part = unwrapInboundIn(data)
        switch state {
        case .http:
            if case .head(let request) = part {
                if requestsInFlight == 0, let start = Self.streamCursor(request), let token = Self.bearerToken(request) {
                    state = .authenticating([part])
                    authenticate(token: token, from: start, context: context)
                    return
                }
                requestsInFlight += 1
            }
            context.fireChannelRead(data)
        case .authenticating(var held):
            held.append(part)
            state = .authenticating(held)
        case .streaming, .closed:
            break  // nothing more is read from a stream's client
        }
    }

    func channelReadComplete(context: ChannelHandlerContext) {
        if case .http = state { context.fireChannelReadComplete() }
    }

    func channelInactive(context: ChannelHandlerContext) {
        endStream()
        context.fireChannelInactive()
    }

    func channelWritabilityChanged(context: ChannelHandlerContext) {
        if case .streaming = state, pumpWhenWritable, context.channel.isWritable {
            pumpWhenWritable = false
            pump()
        }
        context.fireChannelWritabilityChanged()
    }

    // MARK: Outbound (Hummingbird's responses)

    func write(context: ChannelHandlerContext, data: NIOAny, promise: EventLoopPromise<Void>?) {
        if case .end = unwrapOutboundIn(data) { requestsInFlight = max(0, requestsInFlight - 1) }
        context.write(data, promise: promise)
    }

    // MARK: Taking over

    /// The cursor an SSE request resumes from, or nil when this is not one the fast path
    /// takes (another path or method, long-poll, a Last-Event-ID that is no event id).
    static func streamCursor(_ request: HTTPRequest) -> Int64? {
        guard request.method == .get, let target = request.path else { return nil }
        let uri = URI(target)
        guard uri.path == "/v1/events" else { return nil }
        let query = uri.queryParameters
        guard query["after"] == nil, query["wait"] == nil else { return nil }
        return EventPump.resumeCursor(lastEventID: request.headerFields[.lastEventID])
    }

    static func bearerToken(_ request: HTTPRequest) -> String? {
        RendezvousAPI.bearerToken(header: request.headerFields[.authorization])
    }

    private func authenticate(token: String, from start: Int64, context: ChannelHandlerContext) {
        let loop = context.eventLoop
        let handler = NIOLoopBound(self, eventLoop: loop)
        let subscriber = Subscriber(handler: handler, loop: loop)
        let services = services
        Task {
            var accepted: (peer: String, subscription: UInt64)?
            if let peer = try? RendezvousAPI.authenticate(token: token, database: services.database,
                                                               presence: services.presence),
               let id = services.hub.subscribe(peer.id, subscriber) {
                accepted = (peer.id, id)
            }
            loop.execute { handler.value.authenticated(accepted, from: start) }
        }
    }

    private func authenticated(_ accepted: (peer: String, subscription: UInt64)?, from start: Int64) {
        guard case .authenticating(let held) = state, let context else {
            // The connection went while the token was checked.
            if let accepted { unsubscribe(accepted.peer, accepted.subscription) }
            return
        }
        guard let accepted else {
            // Refused (or the hub is shutting down): Hummingbird answers it as usual.
            state = .http
            for part in held {
                if case .head = part { requestsInFlight += 1 }
                context.fireChannelRead(wrapInboundOut(part))
            }
            context.fireChannelReadComplete()
            return
        }
        state = .streaming
        // No request follows on this connection: the HTTP connection guard's watches leave.
        context.triggerUserOutboundEvent(HTTPConnectionTakenOver(), promise: nil)
        peer = accepted.peer
        subscription = accepted.subscription
        consumer = services.hub.openConsumer(peer, acknowledged: start)
        cursor = start
        Self.streams.increment()
        var fields = EventPump.streamHeaders
        fields[.server] = services.serverName
        context.write(wrapOutboundOut(.head(HTTPResponse(status: .ok, headerFields: fields))), promise: nil)
        write(EventPump.openingComment(for: peer), context: context)
        // Streams that open together (10k clients reconnecting after a restart) are spread
        // over the period's ticks, so they do not all beat together ever after.
        heartbeat = services.heartbeats.join(on: context.eventLoop) { [weak self] in self?.beat() }
        pump()
    }

    // MARK: Streaming

    /// Sends what is stored after the cursor. Called when the stream opens, when a slow
    /// client can take more, and when a stored event cannot simply be sent as is (`deliver`).
    private func pump() {
        guard case .streaming = state, let context else { return }
        guard context.channel.isWritable else {
            pumpWhenWritable = true  // the client is slow: wait until the kernel takes more
            return
        }
        do {
            while true {
                let upTo = acknowledged ? services.hub.acknowledge(peer, by: consumer, upTo: cursor) : 0
                let events = try services.database.events(for: peer, after: cursor, deletingUpTo: upTo,
                                                          limit: EventPump.batch)
                acknowledged = false
                guard let last = events.last else { break }
                write(EventPump.serverSentEvents(events), context: context)
                cursor = last.id
                if events.count < EventPump.batch || !context.channel.isWritable { break }
            }
        } catch {
            // The store failed under us: end the stream; the client resumes from its cursor.
            context.close(promise: nil)
        }
    }

    /// Sends an event just stored for the peer. When the stream has sent everything up to the
    /// event stored before it (`previousID`), nothing can be missing in between and the event
    /// goes out as is; otherwise (events in flight, an acknowledgement to apply, a slow
    /// client) the stream reads the Store as usual.
    fileprivate func deliver(_ event: EventRecord) {
        guard case .streaming = state, let context, !acknowledged, context.channel.isWritable,
              let previous = event.previousID, previous == cursor else {
            pump()
            return
        }
        write(EventPump.serverSentEvents([event]), context: context)
        cursor = event.id
    }

    private func beat() {
        guard case .streaming = state, let context else { return }
        if !wroteSinceHeartbeat { write(EventPump.keepaliveComment, context: context) }
        wroteSinceHeartbeat = false
    }

    fileprivate func hubShutDown() {
        guard case .streaming = state, let context else { return }
        // Graceful shutdown ends the stream; the client reconnects with its cursor.
        context.writeAndFlush(wrapOutboundOut(.end(nil)), promise: nil)
        context.close(promise: nil)
    }

    private func write(_ text: String, context: ChannelHandlerContext) {
        wroteSinceHeartbeat = true
        context.writeAndFlush(wrapOutboundOut(.body(ByteBuffer(string: text))), promise: nil)
    }

    private func endStream() {
        if let heartbeat { services.heartbeats.leave(heartbeat) }
        heartbeat = nil
        if case .streaming = state, let subscription { unsubscribe(peer, subscription) }
        if let consumer { services.hub.closeConsumer(peer, consumer) }
        subscription = nil
        consumer = nil
        state = .closed
    }

    private func unsubscribe(_ peer: String, _ id: UInt64) {
        services.hub.unsubscribe(peer, id)
    }

    /// The hub's handle on one stream. An event stored by a request on the stream's own event
    /// loop (always, with one loop) is written at once, not queued for a later turn of the
    /// loop; from another loop it hops there. The hub calls without holding its lock, and
    /// `deliver` checks the event follows the stream's cursor (else it reads the Store), so
    /// events reaching it out of order from two loops are still sent in order.
    private struct Subscriber: EventSubscriber {
        let handler: NIOLoopBound<EventStreamHandler>
        let loop: any EventLoop

        func eventStored(_ event: EventRecord) {
            if loop.inEventLoop {
                handler.value.deliver(event)
            } else {
                loop.execute { handler.value.deliver(event) }
            }
        }
        func hubShutDown() { loop.execute { handler.value.hubShutDown() } }
    }
}
