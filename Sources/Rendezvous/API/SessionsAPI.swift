import Foundation
import HTTPTypes
import Hummingbird
import Store
import Wire

extension HTTPField.Name {
    static let connectMode = Self("Switchboard-Connect-Mode")!
    static let connectDescription = Self("Switchboard-Connect-Desc")!
    static let lastEventID = Self("Last-Event-ID")!
    static let link = Self("Link")!
}

/// Session brokering in the WHIP/WHEP shape (RFC 9725): POST an offer, PATCH the answer or
/// trickled candidates, DELETE to hang up; each party hears of the other's moves as events.
enum SessionsAPI {
    static func addRoutes(to v1: RouterGroup<SwitchboardRequestContext>, database: SwitchboardDatabase,
                          configuration: RendezvousConfiguration, hub: EventHub, presence: PresenceTracker) {
        v1.post("peers/:id/sessions") { request, context -> Response in
            var request = request
            let caller = try RendezvousAPI.authenticate(request, database: database, presence: presence)
            let callerID = try PeerID(caller.id)
            let offer = try await body(&request, contentType: "application/sdp", limit: configuration.maximumBodyBytes)
            do { try SDPText.validateDescription(offer) } catch {
                throw Problem(.badRequest, detail: "not an SDP offer: \(error)")
            }
            guard let mode = SessionMode(rawValue: request.headers[.connectMode]?.lowercased() ?? "auto") else {
                throw Problem(.badRequest, detail: "Switchboard-Connect-Mode must be auto, p2p or relay")
            }
            let description = request.headers[.connectDescription]
            if let description, description.count > 256 {
                throw Problem(.badRequest, detail: "Switchboard-Connect-Desc is longer than 256 characters")
            }
            guard let text = context.parameters.get("id"), let calleeID = try? PeerID(text), calleeID != callerID else {
                throw Problem(.notFound, detail: "no such peer")
            }
            let sessionID = randomID()
            let calleeServers = servers(for: calleeID.rawValue, mode: mode, configuration: configuration)
            let data = try eventJSON(OfferEvent(
                session: sessionID, from: callerID.rawValue, mode: mode, desc: description, sdp: offer,
                ice_servers: calleeServers, ice_transport_policy: mode == .relay ? "relay" : "all"))
            let session: SessionRecord, event: EventRecord
            do {
                (session, event) = try await database.createSession(
                    id: sessionID, caller: callerID, callee: calleeID, mode: mode, description: description, offer: offer,
                    offerTTL: configuration.offerTTL, eventTTL: configuration.eventTTL, eventData: data,
                    admission: OfferAdmission(open: configuration.aclOpen, limit: configuration.sessionsPerMinute))
            } catch let error as SessionError {
                throw problem(error)
            }
            hub.notify(event)

            let callerServers = servers(for: callerID.rawValue, mode: mode, configuration: configuration)
            var headers: HTTPFields = [
                .location: "/v1/sessions/\(session.id)", .eTag: etag(session.version), .contentType: "application/json",
            ]
            for server in callerServers {
                for url in server.urls {
                    var link = "<\(url)>; rel=\"ice-server\""
                    if let username = server.username, let credential = server.credential {
                        link += "; username=\"\(username)\"; credential=\"\(credential)\"; credential-type=\"password\""
                    }
                    headers.append(HTTPField(name: .link, value: link))
                }
            }
            return Response(status: .created, headers: headers, body: .init(byteBuffer: ByteBuffer(data: try RendezvousAPI.encoder.encode(
                SessionJSON(session, iceServers: callerServers)))))
        }

        v1.get("sessions/:sid") { request, context -> Response in
            let peer = try RendezvousAPI.authenticate(request, database: database, presence: presence)
            guard let id = context.parameters.get("sid"), let session = try await database.session(id, for: peer.id) else {
                throw Problem(.notFound, detail: "no such session")
            }
            var response = try RendezvousAPI.json(SessionJSON(session, iceServers: nil))
            response.headers[.eTag] = etag(session.version)
            return response
        }

        v1.patch("sessions/:sid") { request, context -> Response in
            var request = request
            let peer = try RendezvousAPI.authenticate(request, database: database, presence: presence)
            guard let id = context.parameters.get("sid") else { throw Problem(.notFound, detail: "no such session") }
            let type = request.headers[.contentType]?.lowercased() ?? ""
            do {
                if type.hasPrefix("application/sdp") {
                    let answer = try await body(&request, contentType: "application/sdp", limit: configuration.maximumBodyBytes)
                    do { try SDPText.validateDescription(answer) } catch {
                        throw Problem(.badRequest, detail: "not an SDP answer: \(error)")
                    }
                    let ifMatch = parseIfMatch(request.headers[.ifMatch])
                    let data = try eventJSON(AnswerEvent(session: id, sdp: answer))
                    let (session, event) = try await database.answerSession(
                        id, by: peer.id, sdp: answer, ifMatch: ifMatch, eventTTL: configuration.eventTTL, eventData: data)
                    hub.notify(event)
                    return Response(status: .noContent, headers: [.eTag: etag(session.version)])
                } else if type.hasPrefix("application/trickle-ice-sdpfrag") {
                    let fragment = try await body(&request, contentType: "application/trickle-ice-sdpfrag",
                                                  limit: configuration.maximumBodyBytes)
                    do { try SDPText.validateFragment(fragment) } catch {
                        throw Problem(.badRequest, detail: "not an SDP fragment: \(error)")
                    }
                    let ifMatch = parseIfMatch(request.headers[.ifMatch])
                    let data = try eventJSON(CandidatesEvent(session: id, sdpfrag: fragment))
                    let (session, event) = try await database.trickle(
                        id, by: peer.id, ifMatch: ifMatch, eventTTL: configuration.eventTTL, eventData: data)
                    hub.notify(event)
                    return Response(status: .noContent, headers: [.eTag: etag(session.version)])
                }
                throw Problem(.unsupportedMediaType, detail: "send application/sdp or application/trickle-ice-sdpfrag")
            } catch let error as SessionError {
                throw problem(error)
            }
        }

        v1.delete("sessions/:sid") { request, context -> Response in
            let peer = try RendezvousAPI.authenticate(request, database: database, presence: presence)
            guard let id = context.parameters.get("sid") else { throw Problem(.notFound, detail: "no such session") }
            do {
                let data = try eventJSON(SessionOnlyEvent(session: id))
                let event = try await database.closeSession(id, by: peer.id, eventTTL: configuration.eventTTL,
                                                            eventData: data)
                hub.notify(event)
                return Response(status: .noContent)
            } catch let error as SessionError {
                throw problem(error)
            }
        }
    }

    // MARK: - Shapes

    struct OfferEvent: Encodable {
        var session: String
        var from: String
        var mode: SessionMode
        var desc: String?
        var sdp: String
        var ice_servers: [RendezvousAPI.ICEServer]
        var ice_transport_policy: String
    }

    struct AnswerEvent: Encodable {
        var session: String
        var sdp: String
    }

    struct CandidatesEvent: Encodable {
        var session: String
        var sdpfrag: String
    }

    struct SessionOnlyEvent: Encodable {
        var session: String
    }

    struct SessionJSON: Encodable {
        var id: String
        var state: SessionState
        var caller: String
        var callee: String
        var mode: SessionMode
        var desc: String?
        var offer: String
        var answer: String?
        var ice_transport_policy: String
        var ice_servers: [RendezvousAPI.ICEServer]?

        init(_ session: SessionRecord, iceServers: [RendezvousAPI.ICEServer]?) {
            id = session.id
            state = session.state
            caller = session.caller
            callee = session.callee
            mode = session.mode
            desc = session.description
            offer = session.offer
            answer = session.answer
            ice_transport_policy = session.mode == .relay ? "relay" : "all"
            ice_servers = iceServers
        }
    }

    // MARK: - Helpers

    /// ICE servers for one side of a session: `relay` gives TURN only, `p2p` STUN only.
    static func servers(for peer: String, mode: SessionMode, configuration: RendezvousConfiguration) -> [RendezvousAPI.ICEServer] {
        var adjusted = configuration
        if mode == .relay { adjusted.stunURLs = [] }
        if mode == .p2p { adjusted.turnSecret = nil }
        return RendezvousAPI.iceServers(for: peer, configuration: adjusted)
    }

    static func eventJSON(_ value: some Encodable) throws -> String {
        String(decoding: try RendezvousAPI.encoder.encode(value), as: UTF8.self)
    }

    static func randomID() -> String {
        Base64URL.encode(randomBytes(16))
    }

    static func etag(_ version: Int64) -> String { "\"\(version)\"" }

    /// `If-Match: "N"` → version N; `*` or absent → any. ETags are compared as octets (RFC 9110
    /// §8.8.3.2), so `"012"` and a number past Int64 are tags in the documented form (`"[0-9]+"`)
    /// that match no version: 412, like any stale tag. Anything
    /// else — a weak tag, a list, a sign, text that is no ETag this API hands out — is malformed:
    /// a 400 once the session is known to exist (a missing session is a 404 first).
    static func parseIfMatch(_ value: String?) -> VersionPrecondition {
        guard let value else { return .any }
        let trimmed = value.trimmingOWS
        if trimmed == "*" { return .any }
        let bytes = Array(trimmed.utf8)
        guard bytes.count >= 3, bytes.first == UInt8(ascii: "\""), bytes.last == UInt8(ascii: "\"") else { return .malformed }
        let digits = bytes.dropFirst().dropLast()
        guard digits.allSatisfy({ (UInt8(ascii: "0")...UInt8(ascii: "9")).contains($0) }) else { return .malformed }
        guard digits.count == 1 || digits.first != UInt8(ascii: "0"),
              let version = Int64(String(decoding: digits, as: UTF8.self)) else { return .noVersion }
        return .version(version)
    }

    static func problem(_ error: SessionError) -> Problem {
        switch error {
        case .notFound: Problem(.notFound, detail: "no such session")
        case .conflict(let reason): Problem(.conflict, detail: reason)
        case .versionMismatch: Problem(.preconditionFailed, detail: "the session changed; fetch it again")
        case .malformedPrecondition:
            Problem(.badRequest, detail: #"If-Match must be * or an ETag of this session, such as "2""#)
        case .unreachable: Problem(.notFound, detail: "no such peer")
        case .tooManySessions:
            Problem(.tooManyRequests, detail: "too many sessions this minute",
                    headers: [.retryAfter: "\(OfferAdmission.standardWindow)"])
        }
    }

    static func body(_ request: inout Request, contentType: String, limit: Int) async throws -> String {
        let type = request.headers[.contentType]?.lowercased() ?? ""
        guard type.hasPrefix(contentType) else { throw Problem(.unsupportedMediaType, detail: "send \(contentType)") }
        let buffer = try await request.collectBody(upTo: limit)
        guard let text = String(validating: buffer.readableBytesView, as: UTF8.self) else {
            throw Problem(.badRequest, detail: "the body is not UTF-8")
        }
        return text
    }
}
