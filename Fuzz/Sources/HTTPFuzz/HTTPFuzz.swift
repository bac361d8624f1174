import Admission
import Foundation
import FuzzSupport
import HTTPTypes
import NIOCore
@testable import Store
import Wire
@testable import Rendezvous

/// What the HTTP API parses from a request before anything is stored: JSON bodies (login,
/// WebSocket acknowledgements), SDP offers and trickle-ice-sdpfrag bodies (sessions and WHEP),
/// and headers (Authorization, If-Match, Last-Event-ID, the SSE fast path's request target).
/// The first byte picks the parser, the rest is the body or header value. Checked besides "no
/// trap": what the API accepts and passes on as an event stays one SSE `data:` line and reads
/// back as what was sent; parsed headers are within the bounds the API promises.
@_cdecl("LLVMFuzzerTestOneInput")
public func fuzz(_ start: UnsafeRawPointer, _ count: Int) -> CInt {
    var input = FuzzInput(start, count)
    let which = input.byte() % 6
    let bytes = input.rest()
    switch which {
    case 0:
        guard let login: RendezvousAPI.LoginRequest = try? RendezvousAPI.decodeJSON(ByteBuffer(bytes: bytes)) else { return 0 }
        if let id = try? PeerID(login.peer_id), id.rawValue != login.peer_id { violated("PeerID changed \(login.peer_id)") }
        _ = ClientSource(login.key)
    case 1:
        _ = try? RendezvousAPI.decodeJSON(ByteBuffer(bytes: bytes)) as WebSocketAPI.Ack
        _ = try? RendezvousAPI.decodeJSON(ByteBuffer(bytes: bytes)) as [RendezvousAPI.ICEServer]
    case 2:
        // A trickled fragment: the WHEP viewer check and the session PATCH's event.
        guard let text = String(validating: bytes, as: UTF8.self) else { return 0 }
        _ = try? WHEPAPI.checkFragment(text, remoteUfrag: "d0N5")
        guard (try? SDPText.validateFragment(text)) != nil else { return 0 }
        let data = try! SessionsAPI.eventJSON(SessionsAPI.CandidatesEvent(session: "s", sdpfrag: text))
        checkEvent(data, carries: text, key: "sdpfrag")
    case 3:
        guard let text = String(validating: bytes, as: UTF8.self), (try? SDPText.validateDescription(text)) != nil else {
            return 0
        }
        let data = try! SessionsAPI.eventJSON(SessionsAPI.AnswerEvent(session: "s", sdp: text))
        checkEvent(data, carries: text, key: "sdp")
    case 4:
        guard let text = String(validating: bytes, as: UTF8.self) else { return 0 }
        if let token = RendezvousAPI.bearerToken(header: text) {
            guard !token.isEmpty, token.utf8.count <= 256, token.trimmingOWS.count == token.count else {
                violated("bearer token \(token) out of bounds")
            }
        }
        if case .version(let version) = SessionsAPI.parseIfMatch(text), version < 0 { violated("If-Match version \(version)") }
        if let cursor = EventPump.resumeCursor(lastEventID: text), cursor < 0 { violated("Last-Event-ID cursor \(cursor)") }
        _ = PeerID.isValidName(text)
    default:
        // The SSE fast path reads the request target itself, before routing.
        guard let text = String(validating: bytes, as: UTF8.self) else { return 0 }
        var request = HTTPRequest(method: .get, scheme: nil, authority: nil, path: text)
        request.headerFields[.lastEventID] = "7"
        if let cursor = EventStreamHandler.streamCursor(request), cursor != 7 { violated("cursor \(cursor) from \(text)") }
    }
    return 0
}

/// An event as the sessions API stores it: one line of JSON (an SSE `data:` field, a WebSocket
/// text message) that gives back exactly the text the client sent.
func checkEvent(_ data: String, carries text: String, key: String) {
    if data.contains(where: { $0 == "\n" || $0 == "\r" || $0 == "\r\n" }) { violated("an event with a line break: \(data)") }
    let sse = EventPump.serverSentEvents([EventRecord(id: 1, peerID: "p", type: "candidates", sessionID: "s", data: data)])
    guard sse.split(separator: "\n", omittingEmptySubsequences: false).count == 5 else { violated("SSE framing: \(sse)") }
    guard let object = try? JSONSerialization.jsonObject(with: Data(data.utf8)) as? [String: Any],
          object[key] as? String == text else { violated("the event does not read back: \(data)") }
}

@_cdecl("HTTPFuzz_main")
public func fuzzMain(_ argc: CInt, _ argv: UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>?) -> CInt {
    runFuzzer(argc, argv) { start, length in fuzz(start, length) }
}
