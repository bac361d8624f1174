import Foundation
import Hummingbird
import ServiceLifecycle
import Store

/// A peer's event stream: Server-Sent Events (`GET /v1/events`, resumable with
/// Last-Event-ID) or long-poll (`GET /v1/events?after=N&wait=S`, a JSON array).
enum EventsAPI {
    static func addRoutes(to v1: RouterGroup<SwitchboardRequestContext>, database: SwitchboardDatabase,
                          configuration: RendezvousConfiguration, hub: EventHub, presence: PresenceTracker) {
        v1.get("events") { request, context -> Response in
            let peer = try await RendezvousAPI.authenticate(request, database: database, presence: presence)
            let query = request.uri.queryParameters
            if query["after"] != nil || query["wait"] != nil {
                return try await longPoll(peer.id, request: request, database: database, hub: hub,
                                          configuration: configuration)
            }
            var resumeFrom: Int64 = 0
            if let last = request.headers[.lastEventID] {
                guard let value = Int64(last.trimmingCharacters(in: .whitespaces)), value >= 0 else {
                    throw Problem(.badRequest, detail: "Last-Event-ID must be an event id")
                }
                resumeFrom = value
            }
            let start = resumeFrom
            let peerID = peer.id
            let heartbeat = configuration.sseHeartbeat
            return Response(
                status: .ok,
                headers: [.contentType: "text/event-stream", .cacheControl: "no-store"],
                body: .init { writer in
                    var cursor = start
                    var acknowledged = true  // the first read acknowledges Last-Event-ID
                    await hub.streamOpened(peerID)
                    // Graceful shutdown ends the stream; the client reconnects with Last-Event-ID.
                    await withGracefulShutdownHandler {
                    do {
                        // A first comment so clients see the stream is open.
                        try await writer.write(ByteBuffer(string: ": switchboard events for \(peerID)\n\n"))
                        while !Task.isCancelled, await !hub.isShuttingDown {
                            let seen = await hub.version(of: peerID)
                            let events = try await database.events(for: peerID, after: cursor,
                                                                   acknowledged: acknowledged)
                            acknowledged = false
                            if events.isEmpty {
                                await hub.wait(peerID, since: seen, timeout: heartbeat)
                                if await hub.version(of: peerID) == seen {
                                    try await writer.write(ByteBuffer(string: ": keepalive\n\n"))
                                }
                                continue
                            }
                            var text = ""
                            for event in events {
                                text += "id: \(event.id)\nevent: \(event.type)\ndata: \(event.data)\n\n"
                                cursor = event.id
                            }
                            try await writer.write(ByteBuffer(string: text))
                        }
                    } catch {
                        // The client went away (a write failed): end the stream.
                    }
                    } onGracefulShutdown: {
                        Task { await hub.shutDown() }
                    }
                    await hub.streamClosed(peerID)
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
        let seen = await hub.version(of: peerID)
        var events = try await database.events(for: peerID, after: cursor, acknowledged: true)
        if events.isEmpty && seconds > 0 {
            await hub.wait(peerID, since: seen, timeout: .seconds(seconds))
            events = try await database.events(for: peerID, after: cursor, acknowledged: false)
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
