import AsyncHTTPClient
import Foundation
import HummingbirdWSClient
import Logging
import NIOCore
import NIOHTTP1
import NIOWebSocket

/// SignalingClient is a peer's side of Switchboard's HTTP API: it logs in with the peer ID
/// and key, offers, answers, trickles and hangs up sessions, and holds the event stream
/// (WebSocket, resumed after reconnects). A refused token (expired, revoked) logs in again
/// once and repeats the request.
public actor SignalingClient {
    public struct Configuration: Sendable {
        /// `http://host:port` of the server.
        public var baseURL: String
        public var peerID: String
        public var key: String
        public var requestTimeout: Duration = .seconds(10)
        /// Reconnect backoff of the event stream: from `first`, doubling up to `longest`,
        /// each wait with ±25 % jitter.
        public var firstRetry: Duration = .milliseconds(250)
        public var longestRetry: Duration = .seconds(15)

        public init(baseURL: String, peerID: String, key: String) {
            self.baseURL = baseURL.hasSuffix("/") ? String(baseURL.dropLast()) : baseURL
            self.peerID = peerID
            self.key = key
        }
    }

    public let configuration: Configuration
    private let http: HTTPClient
    private let logger: Logger
    private var current: LoginAnswer?
    /// The event stream's connection now, so that `reconnectEvents` can drop it.
    private var streamAttempt: Task<WebSocketCloseFrame?, any Error>?
    private var kicked = false
    private static let encoder = JSONEncoder()
    private static let decoder: JSONDecoder = {
        let decoder = JSONDecoder()
        decoder.dateDecodingStrategy = .iso8601
        return decoder
    }()

    public init(configuration: Configuration, http: HTTPClient = .shared, logger: Logger) {
        self.configuration = configuration
        self.http = http
        self.logger = logger
    }

    /// The last login's answer (token, expiry, ICE servers), if any.
    public var session: LoginAnswer? { current }

    // MARK: Login

    /// Logs in (again) and keeps the token for later requests.
    @discardableResult
    public func logIn() async throws(SignalingError) -> LoginAnswer {
        struct Body: Encodable { var peer_id: String; var key: String }
        let body = try Self.encode(Body(peer_id: configuration.peerID, key: configuration.key))
        let (status, _, data) = try await send("POST", "/v1/login", body: body, contentType: "application/json", token: nil)
        guard status == 200 else { throw Self.refusal(status, data) }
        let answer: LoginAnswer = try Self.decode(data)
        current = answer
        return answer
    }

    /// Revokes the current token on the server (`POST /v1/logout`); the next request logs in
    /// again. Tests use it to stand for a token the server stopped accepting.
    public func logOut() async throws(SignalingError) {
        guard let token = current?.token else { return }
        let (status, _, data) = try await send("POST", "/v1/logout", body: nil, contentType: nil, token: token)
        guard status == 204 || status == 200 || status == 401 else { throw Self.refusal(status, data) }
    }

    /// A token that is valid for at least another minute, logging in when needed.
    public func token() async throws(SignalingError) -> String {
        if let current, current.expiresAt.timeIntervalSinceNow > 60 { return current.token }
        return try await logIn().token
    }

    /// Fresh ICE servers, with TURN credentials of a new lifetime.
    public func iceServers() async throws(SignalingError) -> [ICEServer] {
        let (status, _, data) = try await authorized("GET", "/v1/ice-servers", body: nil, contentType: nil)
        guard status == 200 else { throw Self.refusal(status, data) }
        return try Self.decode(data)
    }

    // MARK: Sessions

    /// Offers a session to `peer` (the SDP offer, without candidates: trickle those).
    public func offer(to peer: String, mode: ConnectMode, description: String, sdp: String)
        async throws(SignalingError) -> SessionRecord
    {
        let path = "/v1/peers/\(Self.escape(peer))/sessions"
        let (status, _, data) = try await authorized("POST", path, body: Array(sdp.utf8), contentType: "application/sdp",
                                                     headers: [("Switchboard-Connect-Mode", mode.rawValue),
                                                               ("Switchboard-Connect-Desc", description)])
        guard status == 201 else { throw Self.refusal(status, data) }
        return try Self.decode(data)
    }

    /// Answers an offered session (the callee).
    public func answer(session: String, sdp: String) async throws(SignalingError) {
        let (status, _, data) = try await authorized("PATCH", "/v1/sessions/\(Self.escape(session))",
                                                     body: Array(sdp.utf8), contentType: "application/sdp")
        guard status == 204 else { throw Self.refusal(status, data) }
    }

    /// Trickles candidates: an SDP fragment (RFC 8840) with ufrag/pwd, `a=mid`, candidates and
    /// possibly `a=end-of-candidates`.
    public func trickle(session: String, fragment: String) async throws(SignalingError) {
        let (status, _, data) = try await authorized("PATCH", "/v1/sessions/\(Self.escape(session))",
                                                     body: Array(fragment.utf8),
                                                     contentType: "application/trickle-ice-sdpfrag")
        guard status == 204 else { throw Self.refusal(status, data) }
    }

    /// Hangs up; the other side gets a `closed` event. A session already gone is not an error.
    public func hangUp(session: String) async throws(SignalingError) {
        let (status, _, data) = try await authorized("DELETE", "/v1/sessions/\(Self.escape(session))", body: nil,
                                                     contentType: nil)
        guard status == 204 || status == 404 else { throw Self.refusal(status, data) }
    }

    // MARK: Events

    /// The peer's events, from a WebSocket that is reconnected (with backoff, resuming after
    /// the last event seen, logging in again when the token is refused) until the task that
    /// iterates the stream is cancelled. Every event is acknowledged once it is yielded.
    public nonisolated func events() -> AsyncStream<SignalingEvent> {
        let (stream, continuation) = AsyncStream.makeStream(of: SignalingEvent.self, bufferingPolicy: .unbounded)
        let task = Task { await self.runEvents(continuation) }
        continuation.onTermination = { _ in task.cancel() }
        return stream
    }

    private func runEvents(_ continuation: AsyncStream<SignalingEvent>.Continuation) async {
        var cursor: Int64 = 0
        var wait = configuration.firstRetry
        while !Task.isCancelled {
            do {
                let token = try await token()
                let connected = Cursor(cursor)
                let url = configuration.baseURL.replacingOccurrences(of: "http", with: "ws", options: .anchored)
                    + "/v1/ws?after=\(cursor)"
                var settings = WebSocketClientConfiguration()
                settings.additionalHeaders[.authorization] = "Bearer \(token)"
                settings.maxFrameSize = 1 << 20
                settings.autoPing = .enabled(timePeriod: .seconds(20))
                let logger = logger
                let attempt = Task {
                    try await WebSocketClient.connect(url: url, configuration: settings, logger: logger) {
                    inbound, outbound, _ in
                    for try await message in inbound.messages(maxSize: 1 << 20) {
                        guard case .text(let text) = message else { continue }
                        guard let envelope = try? Self.decoder.decode(EventEnvelope.self, from: Data(text.utf8)) else {
                            logger.warning("unreadable event from the server", metadata: ["event": "\(text.prefix(200))"])
                            continue
                        }
                        if let kind = envelope.kind {
                            continuation.yield(SignalingEvent(id: envelope.id, kind: kind))
                        }
                        connected.value = max(connected.value, envelope.id)
                        struct Ack: Encodable { var ack: Int64 }
                        if let ack = try? Self.encoder.encode(Ack(ack: envelope.id)) {
                            try await outbound.write(.text(String(decoding: ack, as: UTF8.self)))
                        }
                    }
                    }
                }
                streamAttempt = attempt
                let close = try await attempt.value
                streamAttempt = nil
                if connected.value > cursor { wait = configuration.firstRetry }
                cursor = connected.value
                if case .unknown(let code) = close?.closeCode, code == 4401 {
                    current = nil  // the token was refused: log in again before reconnecting
                }
                logger.debug("event stream closed", metadata: ["code": "\(String(describing: close?.closeCode))"])
            } catch {
                streamAttempt = nil
                logger.info("event stream lost", metadata: ["error": "\(error)"])
            }
            guard !Task.isCancelled else { break }
            if kicked {
                // Dropped on purpose (the network changed): straight back, from the cursor.
                kicked = false
                wait = configuration.firstRetry
                continue
            }
            try? await Task.sleep(for: Self.jittered(wait))
            wait = min(wait * 2, configuration.longestRetry)
        }
        continuation.finish()
    }

    /// Drops the event stream's connection and makes a new one at once, resuming after the
    /// last event seen. For when the network under it changed (a NAT rebinding, a new
    /// address): the old TCP connection may be dead without either end knowing for a while.
    /// Returns whether there was a connection to drop.
    @discardableResult
    public func reconnectEvents() -> Bool {
        guard let streamAttempt else { return false }
        kicked = true
        lastKick = .now
        streamAttempt.cancel()
        return true
    }

    /// `reconnectEvents()`, unless the stream was reconnected less than `spacing` ago (a hint
    /// that the network may have changed, not a sign that it did).
    @discardableResult
    public func reconnectEvents(notWithin spacing: Duration) -> Bool {
        if let lastKick, ContinuousClock.now - lastKick < spacing { return false }
        return reconnectEvents()
    }
    private var lastKick: ContinuousClock.Instant?

    /// The event cursor, written from the WebSocket handler and read after it returns.
    private final class Cursor: @unchecked Sendable {
        // Written by the one handler task, read after it finished: never concurrently.
        var value: Int64
        init(_ value: Int64) { self.value = value }
    }

    static func jittered(_ wait: Duration) -> Duration {
        wait * Double.random(in: 0.75...1.25)
    }

    // MARK: HTTP

    private func authorized(_ method: String, _ path: String, body: [UInt8]?, contentType: String?,
                            headers: [(String, String)] = []) async throws(SignalingError) -> (Int, HTTPHeaders, [UInt8])
    {
        let result = try await send(method, path, body: body, contentType: contentType, token: try await token(),
                                    headers: headers)
        guard result.0 == 401 else { return result }
        // Expired or revoked: log in once more and repeat.
        current = nil
        return try await send(method, path, body: body, contentType: contentType, token: try await token(),
                              headers: headers)
    }

    private func send(_ method: String, _ path: String, body: [UInt8]?, contentType: String?, token: String?,
                      headers: [(String, String)] = []) async throws(SignalingError) -> (Int, HTTPHeaders, [UInt8])
    {
        var request = HTTPClientRequest(url: configuration.baseURL + path)
        request.method = HTTPMethod(rawValue: method)
        if let token { request.headers.add(name: "Authorization", value: "Bearer \(token)") }
        if let contentType { request.headers.add(name: "Content-Type", value: contentType) }
        for (name, value) in headers { request.headers.add(name: name, value: value) }
        if let body { request.body = .bytes(ByteBuffer(bytes: body)) }
        let timeout = TimeAmount.nanoseconds(Int64(configuration.requestTimeout.components.seconds) * 1_000_000_000
            + configuration.requestTimeout.components.attoseconds / 1_000_000_000)
        // A kept-alive connection can be dead (the server closed it, or a NAT on the way forgot
        // it): requests that may be repeated are tried once more, on a new connection.
        let attempts = method == "POST" ? 1 : 2
        for attempt in 1...attempts {
            do {
                let response = try await http.execute(request, timeout: timeout)
                // The API's answers are small; anything past 1 MiB is not one of them.
                let buffer = try await response.body.collect(upTo: 1 << 20)
                return (Int(response.status.code), response.headers, Array(buffer.readableBytesView))
            } catch {
                if attempt < attempts, !Self.isTimeout(error) {
                    logger.debug("request failed, trying again", metadata: ["request": "\(method) \(path)", "error": "\(error)"])
                    continue
                }
                throw .unreachable("\(method) \(path): \(error)")
            }
        }
        throw .unreachable("\(method) \(path)")
    }

    private static func isTimeout(_ error: any Error) -> Bool {
        guard let error = error as? HTTPClientError else { return false }
        return error == .deadlineExceeded || error == .readTimeout || error == .connectTimeout
    }

    private static func refusal(_ status: Int, _ data: [UInt8]) -> SignalingError {
        let problem = try? decoder.decode(ProblemDocument.self, from: Data(data))
        return .refused(status: status, title: problem?.title ?? HTTPResponseStatus(statusCode: status).reasonPhrase,
                        detail: problem?.detail)
    }

    private static func decode<T: Decodable>(_ data: [UInt8]) throws(SignalingError) -> T {
        do { return try decoder.decode(T.self, from: Data(data)) } catch {
            throw .malformed("\(T.self): \(error)")
        }
    }

    private static func encode<T: Encodable>(_ value: T) throws(SignalingError) -> [UInt8] {
        do { return Array(try encoder.encode(value)) } catch { throw .malformed("\(error)") }
    }

    private static func escape(_ segment: String) -> String {
        segment.addingPercentEncoding(withAllowedCharacters: .alphanumerics.union(CharacterSet(charactersIn: "._-"))) ?? segment
    }
}
