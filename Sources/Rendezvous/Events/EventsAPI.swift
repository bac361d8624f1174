import Foundation
import Hummingbird
import ServiceLifecycle
import Store

/// A peer's event stream: Server-Sent Events (`GET /v1/events`, resumable with
/// Last-Event-ID) or long-poll (`GET /v1/events?after=N&wait=S`, a JSON array).
///
/// Most SSE streams never reach this route: `EventStreamHandler` serves them from the
/// connection's pipeline. This route answers what it passes on (refusals, pipelined requests).
enum EventsAPI {
    static func addRoutes(to v1: RouterGroup<SwitchboardRequestContext>, database: SwitchboardDatabase,
                          configuration: RendezvousConfiguration, hub: EventHub, presence: PresenceTracker) {
        v1.get("events") { request, context -> Response in
            let peer = try RendezvousAPI.authenticate(request, database: database, presence: presence)
            let query = request.uri.queryParameters
            if query["after"] != nil || query["wait"] != nil {
                return try await longPoll(peer.id, request: request, database: database, hub: hub,
                                          configuration: configuration)
            }
            guard let start = EventPump.resumeCursor(lastEventID: request.headers[.lastEventID]) else {
                throw Problem(.badRequest, detail: "Last-Event-ID must be an event id")
            }
            let peerID = peer.id
            let heartbeat = configuration.sseHeartbeat
            return Response(
                status: .ok,
                headers: EventPump.streamHeaders,
                body: .init { writer in
                    let consumer = hub.openConsumer(peerID, acknowledged: start)
                    defer { hub.closeConsumer(peerID, consumer) }
                    await EventPump.run(peer: peerID, from: start, consumer: consumer, database: database, hub: hub,
                                        heartbeat: heartbeat) { events in
                        try await writer.write(ByteBuffer(string: EventPump.serverSentEvents(events)))
                    } keepalive: {
                        try await writer.write(ByteBuffer(string: EventPump.keepaliveComment))
                    } opened: {
                        try await writer.write(ByteBuffer(string: EventPump.openingComment(for: peerID)))
                    }
                    try? await writer.finish(nil)
                })
        }
    }

    static func longPoll(_ peerID: String, request: Request, database: SwitchboardDatabase, hub: EventHub,
                         configuration: RendezvousConfiguration) async throws -> Response {
        let query = request.uri.queryParameters
        let after = query["after"].map(String.init) ?? "0"
        let wait = query["wait"].map(String.init) ?? "0"
        guard let cursor = Int64(after), cursor >= 0 else { throw Problem(.badRequest, detail: "after must be an event id") }
        guard let seconds = Int(wait), (0...configuration.maximumLongPollSeconds).contains(seconds) else {
            throw Problem(.badRequest, detail: "wait must be 0-\(configuration.maximumLongPollSeconds) seconds")
        }
        let seen = hub.version(of: peerID)
        var events = try database.events(for: peerID, after: cursor,
                                         deletingUpTo: hub.acknowledge(peerID, by: nil, upTo: cursor))
        if events.isEmpty && seconds > 0 {
            await hub.wait(peerID, since: seen, timeout: .seconds(seconds))
            events = try database.events(for: peerID, after: cursor)
        }
        var json = "["
        for (index, event) in events.enumerated() {
            if index > 0 { json += "," }
            json += #"{"id":\#(event.id),"type":"\#(event.type)","data":\#(event.data)}"#
        }
        json += "]"
        return Response(status: .ok, headers: [.contentType: "application/json"],
                        body: .init(byteBuffer: ByteBuffer(string: json)))
    }
}

/// EventPump feeds one peer's event stream (SSE or WebSocket) from the Store: it sends what is
/// stored after the cursor, then waits for the hub to say there is more. The cursor the client
/// brought (Last-Event-ID, `after=`) acknowledges everything up to it; the pump's own progress
/// does not, since the connection may be dead without the server knowing yet.
enum EventPump {
    /// Events read per query.
    static let batch = 100

    // What both ways of serving an SSE stream (this route and `EventStreamHandler`) send and
    // accept, so that the two cannot drift apart.

    static let streamHeaders: HTTPFields = [.contentType: "text/event-stream", .cacheControl: "no-store"]
    static let keepaliveComment = ": keepalive\n\n"

    /// A first comment, so clients see the stream is open.
    static func openingComment(for peer: String) -> String { ": switchboard events for \(peer)\n\n" }

    /// The cursor a Last-Event-ID header resumes from: 0 without one, nil when it is no event id.
    static func resumeCursor(lastEventID: String?) -> Int64? {
        guard let lastEventID else { return 0 }
        guard let value = Int64(lastEventID.trimmingOWS), value >= 0 else { return nil }
        return value
    }

    /// Events as Server-Sent Events text (`id:` the cursor, `event:` the type, `data:` JSON).
    static func serverSentEvents(_ events: [EventRecord]) -> String {
        var text = ""
        for event in events {
            text += "id: \(event.id)\nevent: \(event.type)\ndata: \(event.data)\n\n"
        }
        return text
    }

    /// `consumer` is the stream's entry in the hub (`EventHub.openConsumer`), opened and closed
    /// by the caller, which may acknowledge on it too (WebSocket acks).
    static func run(
        peer: String, from start: Int64, consumer: UInt64, database: SwitchboardDatabase, hub: EventHub,
        heartbeat: Duration, send: ([EventRecord]) async throws -> Void, keepalive: () async throws -> Void,
        opened: () async throws -> Void = {}
    ) async {
        var cursor = start
        var acknowledged = true
        // Graceful shutdown ends the stream; the client reconnects with its cursor.
        await withGracefulShutdownHandler {
            do {
                try await opened()
                while !Task.isCancelled, !hub.isShuttingDown {
                    // The version before the read: whatever is stored after it wakes the wait below.
                    let seen = hub.version(of: peer)
                    let upTo = acknowledged ? hub.acknowledge(peer, by: consumer, upTo: start) : 0
                    let events = try database.events(for: peer, after: cursor, deletingUpTo: upTo, limit: batch)
                    acknowledged = false
                    if !events.isEmpty {
                        try await send(events)
                        cursor = events[events.count - 1].id
                        if events.count == batch { continue }  // more may be stored already
                    }
                    // Caught up as of `seen`: wait for news (returns at once if some came meanwhile).
                    await hub.wait(peer, since: seen, timeout: heartbeat)
                    if hub.version(of: peer) == seen, !hub.isShuttingDown { try await keepalive() }
                }
            } catch {
                // The client went away (a write failed): end the stream.
            }
        } onGracefulShutdown: {
            hub.shutDown()
        }
    }
}
