import DTLS
import Foundation
import ICE
import Logging
import NIOCore
import NIOPosix
import TURNClient
import Wire

/// PeerAgent is what a device runs: it logs in to Switchboard, and either exposes local TCP
/// services to peers that connect to it, or connects to another peer by its ID and carries
/// local TCP connections to one of that peer's services. One peer connection (ICE, DTLS,
/// SCTP) per pair of peers, shared by all their streams; every peer connection and tunnel
/// runs on the agent's one event loop.
public final class PeerAgent: Sendable {
    public struct Configuration: Sendable {
        public var signaling: SignalingClient.Configuration
        /// Addresses for host candidates; empty means every IPv4 address of an interface that
        /// is up, loopback only when there is nothing else.
        public var hostAddresses: [String] = []
        /// Peer connections an exposing agent holds at once, in all and from one peer ID;
        /// offers past either are hung up (each connection costs sockets, relay allocations
        /// and buffers, and one peer must not take them all).
        public var maximumPeerConnections = 256
        public var maximumPeerConnectionsPerPeer = 16
        /// How often each live session is refreshed (its current ICE credentials sent again,
        /// with no new candidates), so that the server's session retention, counted from a
        /// session's last change, never purges one in use: an ICE restart after that would find
        /// no session to trickle to. nil: never.
        public var sessionRefresh: Duration? = .seconds(600)

        public init(signaling: SignalingClient.Configuration) {
            self.signaling = signaling
        }
    }

    /// The one loop every agent in the process runs its peer connections on: usrsctp keeps
    /// process-wide state that must only ever be touched from one thread.
    static let eventLoop: any EventLoop = MultiThreadedEventLoopGroup(numberOfThreads: 1).next()

    public let configuration: Configuration
    public let signaling: SignalingClient
    let loop: any EventLoop
    let logger: Logger
    let context: DTLSContext
    /// One line per change of a peer connection (`connected …`, `path …`, `disconnected …`).
    let report: @Sendable (String) -> Void
    /// Every peer connection of this agent, by signaling session.
    let sessions: SessionTable

    public init(configuration: Configuration, logger: Logger, report: @escaping @Sendable (String) -> Void) throws {
        self.configuration = configuration
        self.logger = logger
        self.report = report
        self.signaling = SignalingClient(configuration: configuration.signaling, logger: logger)
        self.loop = Self.eventLoop
        self.sessions = SessionTable(loop: Self.eventLoop)
        // SRTP profiles are offered though no media flows: aiortc fails a DTLS handshake that
        // negotiated none, and browsers offer them on data-channel-only connections too.
        self.context = try DTLSContext(certificate: try DTLSCertificate.generate(),
                                       srtpProfiles: [.aeadAes128Gcm, .aes128CmHmacSha1_80])
    }

    // MARK: Exposing

    /// Stays logged in and online; answers every offer and dials each incoming stream's
    /// service. Returns when the task is cancelled.
    public func expose(_ dialer: ServiceDialer) async throws {
        try await signaling.logIn()
        let sessions = self.sessions
        for await event in signaling.events() {
            await route(event) { offer in await self.answer(offer, dialer: dialer, sessions: sessions) }
        }
    }

    /// Hands a signaling event to the peer connection of its session (now, or once the
    /// session is added); offers go to `offer`.
    private func route(_ event: SignalingEvent, offer: (IncomingOffer) async -> Void) async {
        switch event.kind {
        case .offer(let incoming):
            await offer(incoming)
        case .answer(let session, let sdp):
            guard let description = try? DataChannelSDP(parsing: sdp) else {
                sessions.with(session) { $0.close(reason: "unreadable answer") }
                return
            }
            sessions.with(session) { $0.setRemoteDescription(description) }
        case .candidates(let session, let fragment):
            let parsed = TrickleFragment(parsing: fragment)
            sessions.with(session) { $0.remoteFragment(parsed) }
        case .closed(let session), .expired(let session):
            sessions.with(session) { $0.peerHungUp() }
        }
    }

    private func answer(_ offer: IncomingOffer, dialer: ServiceDialer, sessions: SessionTable) async {
        let remote: DataChannelSDP
        do {
            remote = try DataChannelSDP(parsing: offer.sdp)
        } catch {
            logger.info("offer refused: \(error)", metadata: ["from": "\(offer.from)"])
            try? await signaling.hangUp(session: offer.session)
            return
        }
        let mode: ConnectMode = offer.iceTransportPolicy == .relay ? .relay : offer.mode
        let options = await options(mode: mode, servers: offer.iceServers)
        let credentials = ICECredentials.random()
        let trickle = TrickleQueue(signaling: signaling, session: offer.session, credentials: credentials,
                                   refresh: configuration.sessionRefresh, logger: logger)
        let peer = offer.from
        let limits = (configuration.maximumPeerConnections, configuration.maximumPeerConnectionsPerPeer)
        enum Admission { case answer(String), refused }
        let admission: Admission? = try? await loop.submit { [self] () -> Admission in
            guard sessions.count < limits.0, sessions.count(from: peer) < limits.1 else { return .refused }
            let connection = PeerConnection(loop: loop, role: .callee, options: options, context: context,
                                            credentials: credentials, logger: logger)
            wire(connection, peer: peer, trickle: trickle) { sessions.remove(offer.session) }
            connection.callbacks.incomingStream = { [logger, loop] tunnel in
                dialer.accept(tunnel, service: tunnel.service, on: loop, logger: logger)
            }
            sessions.add(offer.session, connection, peer: peer)
            connection.setRemoteDescription(remote)
            connection.start()
            renewRelayCredentials(of: connection, mode: mode, servers: offer.iceServers)
            return .answer(connection.localDescription.text(sessionID: UInt64.random(in: 1 ... UInt64(Int64.max))))
        }.get()
        let answer: String
        switch admission {
        case nil: return  // the loop is shutting down
        case .answer(let text): answer = text
        case .refused:
            logger.warning("offer refused: too many peer connections", metadata: [
                "from": "\(peer)", "limit": "\(limits.0) in all, \(limits.1) per peer"])
            try? await signaling.hangUp(session: offer.session)
            return
        }
        do {
            try await signaling.answer(session: offer.session, sdp: answer)
            trickle.ready()
        } catch {
            logger.info("answer not delivered: \(error)")
            sessions.with(offer.session) { $0.close(reason: "answer not delivered") }
        }
    }

    // MARK: Connecting

    /// Listens on `host:port` and carries each accepted TCP connection to `peer`'s `service`.
    /// Returns the bound listener; it runs until closed.
    public func connect(to peer: String, mode: ConnectMode, service: String, listenHost: String, listenPort: Int)
        async throws -> TunnelListener
    {
        try await signaling.logIn()
        let sessions = self.sessions
        let current = NIOLoopBoundBox.makeEmptyBox(valueType: PeerConnection.self, eventLoop: loop)
        let listener = try await TunnelListener.bind(host: listenHost, port: listenPort, on: loop, logger: logger,
                                                     refused: { [report] reason in report("refused \(peer) reason=\(reason)") }) {
            [self] _ in
            if let connection = current.value, !connection.isClosed, !connection.isDisconnected {
                return connection.openStream(service: service)
            }
            let connection = PeerConnection(loop: loop, role: .caller, options: PeerConnection.Options(mode: mode),
                                            context: context, credentials: ICECredentials.random(), logger: logger)
            current.value = connection
            let tunnel = connection.openStream(service: service)
            Task { await self.offer(connection, to: peer, mode: mode, service: service, sessions: sessions) }
            return tunnel
        }
        let events = Task {
            for await event in signaling.events() {
                // This side only connects: an offer to it is hung up.
                await route(event) { offer in try? await self.signaling.hangUp(session: offer.session) }
            }
        }
        listener.channel.closeFuture.whenComplete { _ in events.cancel() }
        return listener
    }

    private func offer(_ connection: PeerConnection, to peer: String, mode: ConnectMode, service: String,
                       sessions: SessionTable) async {
        // The offer does not depend on the ICE servers; the session's answer carries fresh
        // TURN credentials for this mode (the login's may be older than their lifetime).
        let sdp: String = (try? await loop.submit {
            connection.localDescription.text(sessionID: UInt64.random(in: 1 ... UInt64(Int64.max)))
        }.get()) ?? ""
        do {
            let session = try await signaling.offer(to: peer, mode: mode, description: service, sdp: sdp)
            let options = await options(mode: mode, servers: session.iceServers ?? [])
            let trickle = TrickleQueue(signaling: signaling, session: session.id, credentials: connection.localCredentials,
                                       refresh: configuration.sessionRefresh, logger: logger)
            try await loop.submit { [self] in
                connection.reconfigure(options)
                wire(connection, peer: peer, trickle: trickle) { sessions.remove(session.id) }
                sessions.add(session.id, connection)
                connection.start()
            }.get()
            trickle.ready()
            renewRelayCredentials(of: connection, mode: mode, servers: session.iceServers ?? [])
        } catch {
            report("disconnected \(peer) reason=\(Self.oneLine("\(error)"))")
            loop.execute { connection.close(reason: "\(error)") }
        }
    }

    /// Ends every peer connection (DTLS close_notify, TURN allocations released, sessions
    /// hung up) so peers learn at once instead of by consent loss.
    public func shutdown() async {
        let connections = try? await loop.submit { [sessions] in sessions.all }.get()
        try? await loop.submit {
            for connection in connections ?? [] { connection.close(reason: "agent stopped") }
        }.get()
        // The hang-ups and the TURN refreshes go out from their own tasks and the loop.
        try? await Task.sleep(for: .milliseconds(300))
    }

    // MARK: Shared

    private func wire(_ connection: PeerConnection, peer: String, trickle: TrickleQueue, removed: @escaping () -> Void) {
        let report = self.report
        connection.callbacks.localCandidate = { trickle.candidate($0) }
        connection.callbacks.gatheringComplete = { trickle.end() }
        connection.callbacks.restarted = { [signaling] credentials in
            trickle.restart(credentials)
            // The network changed under us: the event stream's connection may be dead too.
            Task { await signaling.reconnectEvents() }
        }
        connection.callbacks.pathWentQuiet = { [signaling] in
            // A NAT that changed its mapping kills the event stream's TCP connection without
            // either end knowing, and the peer's ICE restart comes over it: a fresh connection
            // (at most one per `quietReconnectSpacing`) brings it at once.
            Task { await signaling.reconnectEvents(notWithin: Self.quietReconnectSpacing) }
        }
        connection.callbacks.connected = { report("connected \(peer) \($0)") }
        connection.callbacks.pathChanged = { report("path \(peer) \($0)") }
        connection.callbacks.closed = { reason in
            report("disconnected \(peer) reason=\(Self.oneLine(reason))")
            trickle.hangUp()
            removed()
        }
    }

    /// At most one event-stream reconnection per this long for quiet paths.
    static let quietReconnectSpacing: Duration = .seconds(15)

    static func oneLine(_ text: String) -> String {
        text.replacingOccurrences(of: "\n", with: " ")
    }

    /// Keeps a peer connection's relay credentials fresh: a quarter of their lifetime (at most
    /// 5 min) before the earliest TURN REST credential expires, fetch new ICE servers and let
    /// the connection allocate with them (an ICE restart; the old allocations go once a new
    /// pair is selected). Ends with the connection.
    func renewRelayCredentials(of connection: PeerConnection, mode: ConnectMode, servers: [ICEServer]) {
        guard mode != .p2p else { return }
        // Weak: the task sleeps for most of an hour and must not keep a closed connection.
        Task { [self, weak connection] in
            var servers = servers
            while let wait = Self.renewalDelay(servers: servers, now: Date().timeIntervalSince1970) {
                try? await Task.sleep(for: .seconds(wait))
                guard (try? await loop.submit({ [weak connection] in connection.map { !$0.isClosed } ?? false }).get()) == true
                else { return }
                guard let fresh = try? await signaling.iceServers() else {
                    // The old credentials stay (their delay is now the 5 s floor): try again.
                    logger.info("relay credentials not renewed: no answer from the server")
                    try? await Task.sleep(for: .seconds(30))
                    continue
                }
                servers = fresh
                let options = await options(mode: mode, servers: fresh)
                loop.execute { [weak connection] in connection?.renewRelays(options.turnServers) }
            }
        }
    }

    /// Seconds until the relay credentials in `servers` should be renewed: a quarter of the
    /// time they have left (at most 300 s) before the earliest expires, at least 5 s from now;
    /// nil when none is a TURN REST credential (nothing to renew).
    static func renewalDelay(servers: [ICEServer], now: Double) -> Double? {
        let expiries = servers.compactMap { server -> Int64? in
            guard server.urls.contains(where: { $0.hasPrefix("turn") }), let username = server.username else { return nil }
            return TURNRESTCredential.expiry(of: username)
        }
        guard let expiry = expiries.min() else { return nil }
        let left = Double(expiry) - now
        return max(5, left - min(300, left / 4))
    }

    /// Resolves the server's ICE servers into what a peer connection gathers with.
    func options(mode: ConnectMode, servers: [ICEServer]) async -> PeerConnection.Options {
        var options = PeerConnection.Options(mode: mode)
        // A peer that stopped answering is given up after 15 s (RFC 7675 allows 30): the
        // connecting side then starts a new peer connection for the next stream.
        options.ice.consentTimeout = .seconds(15)
        options.hostAddresses = configuration.hostAddresses.isEmpty ? Self.interfaceAddresses() : configuration.hostAddresses
        for server in servers {
            for url in server.urls {
                guard let parsed = ICEServerURL(url), let address = await Self.resolve(parsed.host, port: parsed.port) else {
                    continue
                }
                switch parsed.scheme {
                case "stun":
                    if let transport = TransportAddress(address) { options.stunServers.append(transport) }
                case "turn", "turns":
                    guard let username = server.username, let password = server.credential else { continue }
                    let transport: TURNClientTransport = parsed.scheme == "turns" ? .tls : parsed.transport == "tcp" ? .tcp : .udp
                    options.turnServers.append((address, transport, username, password))
                default:
                    continue
                }
            }
        }
        return options
    }

    /// A host name's address. getaddrinfo blocks (for seconds, when DNS does not answer), so
    /// it runs on NIO's blocking thread pool, never on a thread of the concurrency pool.
    static func resolve(_ host: String, port: Int) async -> SocketAddress? {
        if let literal = try? SocketAddress(ipAddress: host, port: port) { return literal }
        return try? await NIOThreadPool.singleton.runIfActive {
            try SocketAddress.makeAddressResolvingHost(host, port: port)
        }
    }

    /// Every IPv4 address of an interface that is up, without loopback unless there is
    /// nothing else.
    static func interfaceAddresses() -> [String] {
        let devices = (try? System.enumerateDevices()) ?? []
        var addresses: [String] = []
        var loopback: [String] = []
        for device in devices {
            guard let address = device.address, address.protocol == .inet, let ip = address.ipAddress else { continue }
            if ip.hasPrefix("127.") { loopback.append(ip) } else if !addresses.contains(ip) { addresses.append(ip) }
        }
        return addresses.isEmpty ? Array(loopback.prefix(1)) : addresses
    }
}

/// ICEServerURL reads `stun:host:port`, `turn:host:port?transport=udp|tcp`, `turns:…`.
struct ICEServerURL {
    var scheme: String
    var host: String
    var port: Int
    var transport: String

    init?(_ text: String) {
        let parts = text.split(separator: ":", maxSplits: 1)
        guard parts.count == 2 else { return nil }
        scheme = String(parts[0])
        var rest = String(parts[1])
        transport = "udp"
        if let question = rest.firstIndex(of: "?") {
            let query = rest[rest.index(after: question)...]
            if query.hasPrefix("transport=") { transport = String(query.dropFirst("transport=".count)) }
            rest = String(rest[..<question])
        }
        if rest.hasPrefix("[") {
            guard let close = rest.firstIndex(of: "]") else { return nil }
            host = String(rest[rest.index(after: rest.startIndex)..<close])
            let after = rest[rest.index(after: close)...]
            port = after.hasPrefix(":") ? Int(after.dropFirst()) ?? 0 : (scheme == "turns" ? 5349 : 3478)
        } else if let colon = rest.lastIndex(of: ":") {
            host = String(rest[..<colon])
            port = Int(rest[rest.index(after: colon)...]) ?? 0
        } else {
            host = rest
            port = scheme == "turns" ? 5349 : 3478
        }
        guard (1...65535).contains(port), !host.isEmpty else { return nil }
    }
}

/// SessionTable maps session IDs to peer connections; touched on the agent's loop only.
/// Events for a session not added yet (the answer can overtake the 201 of the offer that
/// created it) wait here, bounded, and run when it is added.
final class SessionTable: Sendable {
    private struct State {
        var connections: [String: PeerConnection] = [:]
        /// The peer ID of each session that has one (an exposing agent's callers).
        var peers: [String: String] = [:]
        var early: [(session: String, body: (PeerConnection) -> Void)] = []
    }
    private let state: NIOLoopBoundBox<State>
    let loop: any EventLoop
    static let earlyLimit = 256

    init(loop: any EventLoop) {
        self.loop = loop
        self.state = NIOLoopBoundBox.makeBoxSendingValue(State(), as: State.self, eventLoop: loop)
    }

    /// Call on the loop.
    func add(_ session: String, _ connection: PeerConnection, peer: String? = nil) {
        state.value.connections[session] = connection
        if let peer { state.value.peers[session] = peer }
        let waiting = state.value.early.filter { $0.session == session }
        state.value.early.removeAll { $0.session == session }
        for event in waiting { event.body(connection) }
    }
    /// Call on the loop.
    func remove(_ session: String) {
        state.value.connections[session] = nil
        state.value.peers[session] = nil
    }
    /// Call on the loop.
    var count: Int { state.value.connections.count }
    /// Call on the loop: the connections with `peer`.
    func count(from peer: String) -> Int { state.value.peers.values.lazy.filter { $0 == peer }.count }
    /// Call on the loop.
    var all: [PeerConnection] { Array(state.value.connections.values) }

    /// Runs `body` on the loop with the session's connection, now or once it is added.
    func with(_ session: String, _ body: @escaping @Sendable (PeerConnection) -> Void) {
        loop.execute { [state] in
            if let connection = state.value.connections[session] {
                body(connection)
            } else {
                if state.value.early.count >= Self.earlyLimit { state.value.early.removeFirst() }
                state.value.early.append((session, body))
            }
        }
    }
}

/// TrickleQueue sends a session's local candidates in order, batched, once the session can
/// take them (after the offer was posted or the answer sent), and ends with
/// end-of-candidates; every `refresh` it sends the current credentials again, with no
/// candidates (a no-op for the peer, which takes a missing end-of-candidates as nothing new;
/// a change for the server's retention); `hangUp` deletes the session.
final class TrickleQueue: Sendable {
    private enum Item { case candidate(String), end, hangUp, ready, restart(ICECredentials), refresh }
    private let continuation: AsyncStream<Item>.Continuation

    init(signaling: SignalingClient, session: String, credentials: ICECredentials, refresh: Duration?, logger: Logger) {
        let (stream, continuation) = AsyncStream.makeStream(of: Item.self)
        self.continuation = continuation
        let refresher = refresh.map { period in
            Task {
                while (try? await Task.sleep(for: period)) != nil {
                    if case .terminated = continuation.yield(.refresh) { return }
                }
            }
        }
        Task {
            defer { refresher?.cancel() }
            var ready = false
            var waiting: [String] = []
            var ended = false
            var credentials = credentials
            for await item in stream {
                var refreshing = false
                switch item {
                case .candidate(let candidate): waiting.append(candidate)
                case .end: ended = true
                case .ready: ready = true
                case .refresh: refreshing = true
                case .restart(let new):
                    // What waits belongs to the old generation: the new one sends all again.
                    credentials = new
                    waiting.removeAll()
                    ended = false
                    continue
                case .hangUp:
                    try? await signaling.hangUp(session: session)
                    continuation.finish()
                    return
                }
                guard ready, !waiting.isEmpty || ended || refreshing else { continue }
                let fragment = TrickleFragment(ufrag: credentials.ufrag, password: credentials.password,
                                               candidates: waiting, endOfCandidates: ended)
                waiting.removeAll()
                do {
                    try await signaling.trickle(session: session, fragment: fragment.text)
                } catch {
                    logger.info(refreshing ? "session not refreshed: \(error)" : "candidates not delivered: \(error)")
                }
                ended = false
            }
        }
    }

    /// A queue dropped without a hang-up (an offer refused, a connection never made) ends its
    /// tasks, the refresher with them.
    deinit { continuation.finish() }

    func candidate(_ attribute: String) { continuation.yield(.candidate(attribute)) }
    func end() { continuation.yield(.end) }
    func ready() { continuation.yield(.ready) }
    func hangUp() { continuation.yield(.hangUp) }
    /// An ICE restart: later candidates go with these credentials.
    func restart(_ credentials: ICECredentials) { continuation.yield(.restart(credentials)) }
}

