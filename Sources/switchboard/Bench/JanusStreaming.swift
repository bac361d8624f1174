import Foundation
import LoadClients
import NIOHTTP1

/// JanusStreaming plays a Janus streaming-plugin mountpoint over Janus's REST API the way
/// its web clients do, so that `bench whep --janus` loads Janus exactly as it loads our WHEP
/// edge: create a session, attach the plugin, `watch` (Janus offers), long-poll for the
/// offer, `start` with the answer. Used by the benchmark only (Benchmarks/janus/).
struct JanusStreaming {
    let mountpoint: Int

    /// Session, handle and the offer for one viewer (video only, as the WHEP bench stream).
    func watch(on http: HTTPClientConnection) async throws -> (session: String, handle: String, offer: String) {
        let session = try Self.id(of: try await Self.post(["janus": "create"], to: "/janus", on: http))
        let handle = try Self.id(of: try await Self.post(["janus": "attach", "plugin": "janus.plugin.streaming"],
                                                               to: "/janus/\(session)", on: http))
        let watch = ["janus": "message", "body": ["request": "watch", "id": mountpoint, "media": ["v"]]] as [String: Any]
        _ = try await Self.post(watch, to: "/janus/\(session)/\(handle)", on: http)
        // The offer comes as an event on the session's long-poll, a few milliseconds later.
        let deadline = ContinuousClock.now + .seconds(10)
        while ContinuousClock.now < deadline {
            let reply = try await http.send(.GET, "/janus/\(session)?maxev=1", token: "", contentType: "application/json", body: "")
            let events = try JSONSerialization.jsonObject(with: Data(reply.body.utf8))
            for event in (events as? [[String: Any]]) ?? [events as? [String: Any]].compactMap({ $0 }) {
                if let error = ((event["plugindata"] as? [String: Any])?["data"] as? [String: Any])?["error"] {
                    throw LoadError("janus watch: \(error)")
                }
                if let jsep = event["jsep"] as? [String: Any], jsep["type"] as? String == "offer", let sdp = jsep["sdp"] as? String {
                    return (session, handle, sdp)
                }
            }
        }
        throw LoadError("janus: no offer within 10 s")
    }

    /// Answers the offer: Janus starts sending once ICE and DTLS are up.
    func start(session: String, handle: String, answer: String, on http: HTTPClientConnection) async throws {
        let start = ["janus": "message", "body": ["request": "start"], "jsep": ["type": "answer", "sdp": answer]] as [String: Any]
        _ = try await Self.post(start, to: "/janus/\(session)/\(handle)", on: http)
    }

    func destroy(session: String, on http: HTTPClientConnection) async {
        _ = try? await Self.post(["janus": "destroy"], to: "/janus/\(session)", on: http)
    }

    /// POSTs a Janus request (with a transaction) and returns its reply; "error" replies throw.
    private static func post(_ request: [String: Any], to path: String, on http: HTTPClientConnection) async throws -> [String: Any] {
        var request = request
        request["transaction"] = UUID().uuidString
        let body = String(decoding: try JSONSerialization.data(withJSONObject: request), as: UTF8.self)
        let reply = try await http.send(.POST, path, token: "", contentType: "application/json", body: body)
        guard reply.status == 200, let object = try JSONSerialization.jsonObject(with: Data(reply.body.utf8)) as? [String: Any] else {
            throw LoadError("janus \(path): \(reply.status) \(reply.body)")
        }
        if object["janus"] as? String == "error" { throw LoadError("janus \(path): \(reply.body)") }
        return object
    }

    private static func id(of reply: [String: Any]) throws -> String {
        guard let id = (reply["data"] as? [String: Any])?["id"] as? NSNumber else { throw LoadError("janus: no id in \(reply)") }
        return id.stringValue
    }
}
