import Foundation

/// ConnectMode is how a connection may go (the `Switchboard-Connect-Mode` header): directly
/// when possible and through the relay otherwise, directly only, or through the relay only.
public enum ConnectMode: String, Sendable, Codable, CaseIterable {
    case auto, p2p, relay
}

/// ICETransportPolicy is which candidates a session asks both sides to use.
public enum ICETransportPolicy: String, Sendable, Codable {
    case all, relay
}

/// ICEServer is one entry of the server's `ice_servers` (an RTCIceServer): STUN and TURN URLs
/// and, for TURN, the REST credentials the relay accepts.
public struct ICEServer: Sendable, Codable, Equatable {
    public var urls: [String]
    public var username: String?
    public var credential: String?
}

/// SessionState is where a brokered session is.
public enum SessionState: String, Sendable, Codable {
    case offered, answered, closed, expired
}

/// LoginAnswer is what `POST /v1/login` gives a peer.
public struct LoginAnswer: Sendable, Codable {
    public var token: String
    public var expiresAt: Date
    public var iceServers: [ICEServer]

    enum CodingKeys: String, CodingKey {
        case token, expiresAt = "expires_at", iceServers = "ice_servers"
    }
}

/// SessionRecord is a brokered session as the API shows it to its two parties.
public struct SessionRecord: Sendable, Codable {
    public var id: String
    public var state: SessionState
    public var caller: String
    public var callee: String
    public var mode: ConnectMode
    public var desc: String?
    public var offer: String
    public var answer: String?
    public var iceTransportPolicy: ICETransportPolicy
    /// The caller's ICE servers for this session (in the answer to the offer only).
    public var iceServers: [ICEServer]?

    enum CodingKeys: String, CodingKey {
        case id, state, caller, callee, mode, desc, offer, answer
        case iceTransportPolicy = "ice_transport_policy", iceServers = "ice_servers"
    }
}

/// IncomingOffer is the `offer` event: another peer wants a session.
public struct IncomingOffer: Sendable, Codable {
    public var session: String
    public var from: String
    public var mode: ConnectMode
    public var desc: String?
    public var sdp: String
    public var iceServers: [ICEServer]
    public var iceTransportPolicy: ICETransportPolicy

    enum CodingKeys: String, CodingKey {
        case session, from, mode, desc, sdp
        case iceServers = "ice_servers", iceTransportPolicy = "ice_transport_policy"
    }
}

/// SignalingEvent is one event of a peer's event stream, with its cursor.
public struct SignalingEvent: Sendable {
    public enum Kind: Sendable {
        case offer(IncomingOffer)
        case answer(session: String, sdp: String)
        case candidates(session: String, fragment: String)
        case closed(session: String)
        case expired(session: String)
    }

    public var id: Int64
    public var kind: Kind

    public var session: String {
        switch kind {
        case .offer(let offer): offer.session
        case .answer(let session, _), .candidates(let session, _), .closed(let session), .expired(let session): session
        }
    }
}

/// The event envelope on the wire: `{"id": N, "type": "...", "data": {...}}`.
struct EventEnvelope: Decodable {
    struct SessionOnly: Decodable { var session: String }
    struct Answer: Decodable { var session: String; var sdp: String }
    struct Candidates: Decodable { var session: String; var sdpfrag: String }

    var id: Int64
    var type: String
    var kind: SignalingEvent.Kind?

    enum CodingKeys: String, CodingKey { case id, type, data }

    init(from decoder: any Decoder) throws {
        let container = try decoder.container(keyedBy: CodingKeys.self)
        id = try container.decode(Int64.self, forKey: .id)
        type = try container.decode(String.self, forKey: .type)
        switch type {
        case "offer": kind = .offer(try container.decode(IncomingOffer.self, forKey: .data))
        case "answer":
            let answer = try container.decode(Answer.self, forKey: .data)
            kind = .answer(session: answer.session, sdp: answer.sdp)
        case "candidates":
            let candidates = try container.decode(Candidates.self, forKey: .data)
            kind = .candidates(session: candidates.session, fragment: candidates.sdpfrag)
        case "closed": kind = .closed(session: try container.decode(SessionOnly.self, forKey: .data).session)
        case "expired": kind = .expired(session: try container.decode(SessionOnly.self, forKey: .data).session)
        default: kind = nil  // a newer server's event type: skipped, still acknowledged
        }
    }
}

/// SignalingError is what the server or the way to it said no with.
public enum SignalingError: Error, Sendable, CustomStringConvertible {
    /// The server answered with a problem document (RFC 9457) or an unexpected status.
    case refused(status: Int, title: String, detail: String?)
    /// The server's answer could not be read.
    case malformed(String)
    /// The server could not be reached.
    case unreachable(String)

    public var description: String {
        switch self {
        case .refused(let status, let title, let detail): "server refused (\(status) \(title))" + (detail.map { ": \($0)" } ?? "")
        case .malformed(let what): "unreadable answer from the server: \(what)"
        case .unreachable(let why): "server unreachable: \(why)"
        }
    }

    public var status: Int? {
        if case .refused(let status, _, _) = self { return status }
        return nil
    }
}

struct ProblemDocument: Decodable {
    var title: String?
    var status: Int?
    var detail: String?
}
