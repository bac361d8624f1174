import Foundation
import HTTPTypes
import Hummingbird
import HummingbirdCore
import HummingbirdWebSocket
import Logging
import NIOCore
import Store

/// `GET /v1/ws`: a peer's event stream over WebSocket. The server sends one text message per
/// event, `{"id","type","data"}`; the client may send `{"ack": <id>}` to let the server drop
/// what it has seen, and resumes after a reconnect with `?after=<id>`. The token comes in
/// `Authorization: Bearer` or, for browsers that cannot set headers, `?access_token=`
/// (RFC 6750 §2.3).
///
/// A refused connection is upgraded and closed at once with an `error` message carrying the
/// problem document and a close code of 4000 + the HTTP status (4401, 4400): a plain HTTP
/// error during the handshake is not something browser WebSocket APIs let the page read.
package enum WebSocketAPI {
    package static let path = "/v1/ws"

    package static func shouldUpgrade(
        _ head: HTTPRequest, database: SwitchboardDatabase, configuration: RendezvousConfiguration,
        hub: EventHub, presence: PresenceTracker
    ) async throws -> ShouldUpgradeResult<WebSocketDataHandler<HTTP1WebSocketUpgradeChannel.Context>> {
        let uri = URI(head.path ?? "/")
        // Upgrades anywhere else are refused with 400 during the handshake.
        guard uri.path == path else { throw Problem(.notFound, detail: "no WebSocket endpoint here") }
        let query = uri.queryParameters
        var cursor: Int64 = 0
        if let after = query["after"] {
            guard let value = Int64(String(after)), value >= 0 else {
                return refuse(Problem(.badRequest, detail: "after must be an event id"))
            }
            cursor = value
        }
        // A Bearer header wins over ?access_token=.
        let header = head.headerFields[.authorization]
        let token = header?.lowercased().hasPrefix("bearer ") == true
            ? RendezvousAPI.bearerToken(header: header) : query["access_token"].map(String.init)
        let peer: RendezvousAPI.AuthenticatedPeer
        do {
            peer = try RendezvousAPI.authenticate(token: token, database: database, presence: presence)
        } catch let problem as Problem {
            return refuse(problem)
        }
        let start = cursor
        let heartbeat = configuration.sseHeartbeat
        return .upgrade([:]) { inbound, outbound, context in
            let consumer = hub.openConsumer(peer.id, acknowledged: start)
            defer { hub.closeConsumer(peer.id, consumer) }
            try await withThrowingTaskGroup(of: Void.self) { group in
                // Reader: acknowledgements; when the client goes, everything ends.
                group.addTask {
                    for try await message in inbound.messages(maxSize: 4096) {
                        guard case .text(let text) = message,
                              let ack = try? JSONDecoder().decode(Ack.self, from: Data(text.utf8)), ack.ack >= 0 else {
                            try await outbound.write(.text(errorMessage(
                                Problem(.badRequest, detail: #"send {"ack": <event id>} or nothing"#))))
                            continue
                        }
                        let upTo = hub.acknowledge(peer.id, by: consumer, upTo: ack.ack)
                        if upTo > 0 { try await database.acknowledgeEvents(for: peer.id, upTo: upTo) }
                        presence.seen(peer.id)
                    }
                }
                group.addTask {
                    await EventPump.run(peer: peer.id, from: start, consumer: consumer, database: database, hub: hub,
                                        heartbeat: heartbeat) { events in
                        for event in events {
                            try await outbound.write(.text(
                                #"{"id":\#(event.id),"type":"\#(event.type)","data":\#(event.data)}"#))
                        }
                    } keepalive: {
                        try await outbound.write(.custom(.init(fin: true, opcode: .ping, data: ByteBuffer())))
                    }
                    // The pump ends on graceful shutdown: say so, the client reconnects.
                    try? await outbound.close(.goingAway, reason: "server shutting down")
                }
                _ = try await group.next()
                group.cancelAll()
            }
        }
    }

    struct Ack: Decodable {
        var ack: Int64
    }

    /// `{"type":"error","data":<problem document>}`.
    static func errorMessage(_ problem: Problem) -> String {
        let document = (try? problem.json(instance: path)).map { String(decoding: $0, as: UTF8.self) } ?? "{}"
        return #"{"type":"error","data":\#(document)}"#
    }

    static func refuse(_ problem: Problem) -> ShouldUpgradeResult<WebSocketDataHandler<HTTP1WebSocketUpgradeChannel.Context>> {
        .upgrade([:]) { _, outbound, _ in
            try await outbound.write(.text(errorMessage(problem)))
            try await outbound.close(.unknown(UInt16(4000 + problem.status.code)), reason: problem.status.reasonPhrase)
        }
    }
}
