import Foundation
import HTTPTypes
import Hummingbird
import Admission
import Store
import NIOConcurrencyHelpers
import Wire

/// RendezvousConfiguration is what the peer API needs to know besides the database.
package struct RendezvousConfiguration: Sendable {
    /// Seconds a login token lives.
    package var tokenLifetime = 86_400
    /// STUN and TURN URLs handed to peers (RFC 7064 / RFC 7065 syntax).
    package var stunURLs: [String] = []
    package var turnURLs: [String] = []
    /// The relay's TURN REST secret; nil means no TURN credentials are handed out.
    package var turnSecret: String?
    /// Seconds a TURN credential from `/v1/ice-servers` or `/v1/login` lives.
    package var turnCredentialLifetime = 3600
    /// Failed logins one client source may make at once, and how often one more is allowed.
    package var loginFailureBurst = 20
    package var loginFailureInterval: Duration = .seconds(5)
    /// Largest request body accepted (413 beyond).
    package var maximumBodyBytes = 64 * 1024
    /// `--acl open`: every peer may reach every other (deny rules still apply).
    package var aclOpen = false
    /// A peer counts as online this long after it was last seen.
    package var onlineWindow = 30
    /// Seconds an unanswered offer waits before the caller gets `expired`.
    package var offerTTL = 30
    /// Seconds an undelivered event is kept.
    package var eventTTL = 300
    /// Seconds a session is kept after its last change, whatever its state.
    package var sessionRetention = 86400
    /// Seconds ended WHEP viewers and audit log rows are kept.
    package var historyRetention = 90 * 86400
    /// WHEP offers (POST /whep/NAME) one client source may make: a burst, then this many a
    /// minute (429 beyond). A player retrying a silent stream once a second stays well under.
    package var whepOfferBurst = 20
    package var whepOffersPerMinute = 120
    /// Sessions one peer may start per minute (429 beyond).
    package var sessionsPerMinute = 60
    /// Longest long-poll wait a client may ask for.
    package var maximumLongPollSeconds = 60
    /// How often an idle SSE stream gets a keepalive comment (also how soon a gone client is noticed).
    package var sseHeartbeat: Duration = .seconds(15)

    package init() {}
}

/// The peer-facing API: login, logout, ICE servers, peer lookup, and (SessionsAPI, EventsAPI)
/// session brokering with event streams.
package enum RendezvousAPI {
    package static func addRoutes(
        to router: Router<SwitchboardRequestContext>, database: SwitchboardDatabase,
        configuration: RendezvousConfiguration, limiter: SourceLimiter = SourceLimiter(), hub: EventHub = EventHub(),
        presence: PresenceTracker
    ) {
        let v1 = router.group("v1")
        SessionsAPI.addRoutes(to: v1, database: database, configuration: configuration, hub: hub, presence: presence)
        EventsAPI.addRoutes(to: v1, database: database, configuration: configuration, hub: hub, presence: presence)

        // A plain GET on the WebSocket endpoint (upgrades are taken before routing).
        v1.get("ws") { _, _ -> Response in
            throw Problem(.upgradeRequired, detail: "GET /v1/ws is a WebSocket endpoint; send Upgrade: websocket",
                          headers: [.upgrade: "websocket", .connection: "Upgrade"])
        }

        v1.post("login") { request, context -> Response in
            var request = request
            let login: LoginRequest = try await decodeJSON(&request, limit: configuration.maximumBodyBytes)
            let ip = context.clientIP
            let source = ClientSource(ip)
            if let wait = limiter.admit(source) {
                throw Problem(.tooManyRequests, detail: "too many failed logins from this address; try again later",
                              headers: [.retryAfter: "\(SourceLimiter.retryAfterSeconds(wait))"])
            }
            // The same answer whether the ID is unknown, invalid, disabled or the key is wrong.
            guard let id = try? PeerID(login.peer_id), let peer = try database.verifyKey(id, key: login.key) else {
                // Audited under the ID only when it is a valid one (recordLoginFailure checks).
                try await database.recordLoginFailure(peerID: login.peer_id, source: ip)
                throw Problem(.unauthorized, detail: "unknown peer ID or wrong key",
                              headers: [.wwwAuthenticate: #"Bearer realm="switchboard""#])
            }
            limiter.succeeded(source)
            let token = try await database.issueToken(
                for: try PeerID(peer.id), lifetime: configuration.tokenLifetime, source: ip)
            struct LoginResponse: Encodable {
                var token: String
                var expires_at: Date
                var ice_servers: [ICEServer]
            }
            return try json(LoginResponse(
                token: token.token, expires_at: token.expiresAt,
                ice_servers: iceServers(for: peer.id, configuration: configuration)))
        }

        v1.post("logout") { request, context -> Response in
            guard let token = bearerToken(header: request.headers[.authorization]),
                  try await database.revokeToken(token) else { throw unauthorized() }
            return Response(status: .noContent)
        }

        v1.get("ice-servers") { request, context -> Response in
            let peer = try authenticate(request, database: database, presence: presence)
            return try json(iceServers(for: peer.id, configuration: configuration))
        }

        // A peer the caller may reach; any other ID — unknown, disabled, or not allowed —
        // gets the same 404, so the API does not tell which IDs exist.
        v1.get("peers/:id") { request, context -> Response in
            let caller = try authenticate(request, database: database, presence: presence)
            let notFound = Problem(.notFound, detail: "no such peer")
            guard let text = context.parameters.get("id"), let id = try? PeerID(text),
                  try await database.mayReach(from: try PeerID(caller.id), to: id, open: configuration.aclOpen),
                  let peer = try database.peer(id) else { throw notFound }
            struct PeerResponse: Encodable {
                var id: String
                var online: Bool
                var last_seen: Date?
            }
            let lastSeen = [peer.lastSeenAt, presence.lastSeen(peer.id)].compactMap { $0 }.max()
            let recentlySeen = lastSeen.map { Date().timeIntervalSince($0) <= Double(configuration.onlineWindow) }
            let online = hub.isStreaming(peer.id) || recentlySeen == true
            return try json(PeerResponse(id: peer.id, online: online, last_seen: lastSeen))
        }
    }

    // MARK: - Authentication

    /// The token of an `Authorization: Bearer <token>` header, or nil.
    static func bearerToken(header: String?) -> String? {
        guard let header, header.utf8.count > 7, header.prefix(7).lowercased() == "bearer ",
              case let token = header.dropFirst(7).trimmingOWS, !token.isEmpty, token.utf8.count <= 256 else { return nil }
        return String(token)
    }

    /// Who a request comes from, once its token checked out.
    package struct AuthenticatedPeer: Sendable {
        package let id: String
    }

    /// The logged-in peer of a request, or 401. Marks the peer as seen.
    package static func authenticate(_ request: Request, database: SwitchboardDatabase,
                                     presence: PresenceTracker) throws -> AuthenticatedPeer {
        try authenticate(token: bearerToken(header: request.headers[.authorization]), database: database,
                               presence: presence)
    }

    /// The peer holding `token`, or 401. Marks the peer as seen.
    static func authenticate(token: String?, database: SwitchboardDatabase, presence: PresenceTracker) throws
        -> AuthenticatedPeer
    {
        guard let token, !token.isEmpty, token.utf8.count <= 256,
              let id = try database.peerID(forToken: token) else { throw unauthorized() }
        presence.seen(id)
        return AuthenticatedPeer(id: id)
    }

    static func unauthorized() -> Problem {
        Problem(.unauthorized, detail: "missing, expired or revoked token",
                headers: [.wwwAuthenticate: #"Bearer realm="switchboard""#])
    }

    // MARK: - ICE servers

    /// An RTCIceServer dictionary (W3C WebRTC §4.2.2).
    package struct ICEServer: Codable, Sendable, Equatable {
        package var urls: [String]
        package var username: String?
        package var credential: String?
    }

    package static func iceServers(for peerID: String, configuration: RendezvousConfiguration,
                                   now: Date = Date()) -> [ICEServer] {
        var servers: [ICEServer] = []
        if !configuration.stunURLs.isEmpty { servers.append(ICEServer(urls: configuration.stunURLs)) }
        if let secret = configuration.turnSecret, !configuration.turnURLs.isEmpty {
            let credential = TURNRESTCredential(
                secret: secret, name: peerID,
                expiry: Int64(now.timeIntervalSince1970) + Int64(configuration.turnCredentialLifetime))
            servers.append(ICEServer(urls: configuration.turnURLs, username: credential.username,
                                     credential: credential.password))
        }
        return servers
    }

    // MARK: - JSON

    /// `POST /v1/login`'s body.
    struct LoginRequest: Decodable {
        var peer_id: String
        var key: String
    }

    static func decodeJSON<T: Decodable>(_ request: inout Request, limit: Int) async throws -> T {
        let type = request.headers[.contentType]?.lowercased() ?? ""
        guard type.hasPrefix("application/json") else {
            throw Problem(.unsupportedMediaType, detail: "send application/json")
        }
        return try decodeJSON(try await request.collectBody(upTo: limit))
    }

    /// A request body as `T`, or 400.
    static func decodeJSON<T: Decodable>(_ body: ByteBuffer) throws(Problem) -> T {
        do {
            return try JSONDecoder().decode(T.self, from: Data(buffer: body))
        } catch {
            throw Problem(.badRequest, detail: "the body is not the JSON object this endpoint takes")
        }
    }

    /// The API's JSON: sorted keys, unescaped slashes, ISO 8601 dates.
    static let encoder: JSONEncoder = {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys, .withoutEscapingSlashes]
        encoder.dateEncodingStrategy = .iso8601
        return encoder
    }()

    static func json(_ value: some Encodable, status: HTTPResponse.Status = .ok) throws -> Response {
        Response(status: status, headers: [.contentType: "application/json"],
                 body: .init(byteBuffer: ByteBuffer(data: try encoder.encode(value))))
    }
}

/// PresenceTracker keeps `last_seen_at` for peers making requests. A peer's time is taken at
/// most every 10 seconds, and the times taken are stored together every `flushInterval`, in
/// transactions of 100 peers: with thousands of peers polling, a write per peer per 10 s was
/// as many write transactions as the sessions themselves made, and one transaction for all
/// of them held the write lock for milliseconds. The interval is short (100 ms) so that the
/// work comes in small pieces: at 1000 sessions/s among 10k peers, a flush per second was
/// ~1000 rows (5 ms of CPU) at once, and offers arriving then waited; nearly half the offers
/// over 5 ms came in the tenth of each second after it. Until a time is stored, `lastSeen`
/// answers from memory, so presence reads never lag; a stop loses at most one interval of
/// `last_seen_at` updates.
///
/// Its state sits behind a lock rather than in an actor: every API request marks its peer as
/// seen, a dictionary lookup that needs no executor switch.
package final class PresenceTracker: Sendable {
    private struct State {
        /// When each peer was last seen, to within 10 s.
        var lastSeenAt: [String: Date] = [:]
        var unstored: [String: Date] = [:]
        var flusher: Task<Void, Never>?
    }

    private let database: SwitchboardDatabase
    private let flushInterval: Duration
    private let state = NIOLockedValueBox(State())

    package init(database: SwitchboardDatabase, flushInterval: Duration = .milliseconds(100)) {
        self.database = database
        self.flushInterval = flushInterval
    }

    package func seen(_ id: String) {
        let now = Date()
        state.withLockedValue { state in
            if let last = state.lastSeenAt[id], now.timeIntervalSince(last) < 10 { return }
            state.lastSeenAt[id] = now
            state.unstored[id] = now
            if state.lastSeenAt.count > 200_000 {
                state.lastSeenAt = state.lastSeenAt.filter { now.timeIntervalSince($0.value) < 10 }
            }
            guard state.flusher == nil else { return }
            let interval = flushInterval
            state.flusher = Task { [weak self] in
                try? await Task.sleep(for: interval)
                await self?.flush()
            }
        }
    }

    /// When the peer was last seen by this process (to within 10 s), nil if not lately.
    package func lastSeen(_ id: String) -> Date? { state.withLockedValue { $0.lastSeenAt[id] } }

    /// Stores the times taken since the last flush.
    package func flush() async {
        let unstored = state.withLockedValue { state in
            state.flusher = nil
            defer { state.unstored.removeAll() }
            return state.unstored
        }
        let batch = unstored.compactMap { id, at in (try? PeerID(id)).map { (id: $0, at: at) } }
        try? await database.touch(batch)
    }
}
