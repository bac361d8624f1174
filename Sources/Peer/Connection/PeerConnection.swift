import DTLS
import DataChannel
import ICE
import Logging
import NIOCore
import NIOPosix
import TURNClient
import Wire

/// PathReport says how a peer connection carries its bytes right now.
public struct PathReport: Sendable, Equatable, CustomStringConvertible {
    public enum Path: String, Sendable { case direct, relay }
    public var path: Path
    /// Candidate types of the selected pair (host, srflx, prflx, relay).
    public var local: String
    public var remote: String
    /// The TURN transport when the local side relays (udp, tcp, tls).
    public var relayTransport: String?
    public var rttMilliseconds: Int?

    public var description: String {
        var text = "path=\(path.rawValue)"
        if let relayTransport { text += " relay=\(relayTransport)" }
        text += " local=\(local) remote=\(remote)"
        if let rttMilliseconds { text += " rtt_ms=\(rttMilliseconds)" }
        return text
    }
}

/// PeerConnection is one WebRTC connection with another peer, data channels only: a full
/// ICE agent over local UDP sockets and TURN allocations, DTLS over the selected pair, SCTP
/// over DTLS, one data channel per tunnelled stream. Everything runs on one event loop (the
/// one usrsctp runs on): every method must be called there, and every callback comes there.
final class PeerConnection: @unchecked Sendable {
    // Sendable only so NIO's @Sendable callbacks (bind, connect, TURN events, timers) can
    // carry it: every one of them runs on `loop`, as every method call does.
    enum Role { case caller, callee }

    struct Options {
        var mode: ConnectMode
        var stunServers: [TransportAddress] = []
        var turnServers: [(address: SocketAddress, transport: TURNClientTransport, username: String, password: String)] = []
        /// Local addresses for host candidates (each gets its own UDP socket).
        var hostAddresses: [String] = []
        var ice = ICEConfiguration()
    }

    struct Callbacks {
        var localCandidate: (String) -> Void = { _ in }
        var gatheringComplete: () -> Void = {}
        var connected: (PathReport) -> Void = { _ in }
        var pathChanged: (PathReport) -> Void = { _ in }
        /// A stream the peer opened; by default refused (a connecting agent exposes nothing).
        var incomingStream: (DataChannelTunnel) -> Void = { $0.refuse("this peer exposes no services") }
        /// An ICE restart began with these new local credentials: the candidates that follow
        /// go to the peer with them (in a trickle fragment, RFC 8840, which tells it so).
        var restarted: (ICECredentials) -> Void = { _ in }
        /// The peer's datagrams stopped while the path had carried them: the network may have
        /// changed under us, and with it the signaling connection the peer's restart would
        /// come over.
        var pathWentQuiet: () -> Void = {}
        var closed: (String) -> Void = { _ in }
    }

    let loop: any EventLoop
    let role: Role
    var options: Options
    let logger: Logger
    var callbacks = Callbacks()
    var localCredentials: ICECredentials
    let context: DTLSContext
    var agent: ICEAgent
    let started = NIODeadline.now()
    var sockets: [Int: any Channel] = [:]
    var relays: [Int: (connection: TURNConnection, transport: TURNClientTransport)] = [:]
    var nextBase = 0
    var pendingTURN = 0
    var iceGatheringDone = false
    var gatheringReported = false
    var remote: DataChannelSDP?
    var dtls: DTLSEndpoint?
    var dtlsRole: DTLSEndpoint.Role?
    var dtlsStarted = false
    var sctp: SCTPAssociation?
    var selected: ICECandidatePair?
    var lastInbound: (base: ICEBase, from: TransportAddress)?
    var earlyDatagrams: [[UInt8]] = []
    var unverified: [(base: ICEBase, from: TransportAddress, bytes: [UInt8])] = []
    var timer: Scheduled<Void>?
    var timerDeadline: NIODeadline?
    var tunnels: [DataChannelID: DataChannelTunnel] = [:]
    var unopened: [DataChannelTunnel] = []
    var pausedTunnels = 0
    /// When to restart ICE, and which generation a trickle fragment belongs to.
    var restartPolicy = RestartPolicy()
    var watchdog: RepeatedTask?
    /// Relay bases of an older generation, released when a pair of the new one is selected.
    var retiringRelays: Set<Int> = []
    var retirement: Scheduled<Void>?
    /// A flush of the sockets is due after this loop pass (datagrams are written, not flushed).
    var flushScheduled = false
    var reportedConnected = false
    var isClosed = false
    /// ICE lost consent for a while (it may come back): new streams go elsewhere.
    var isDisconnected = false
    var path: PathReport?

    init(loop: any EventLoop, role: Role, options: Options, context: DTLSContext, credentials: ICECredentials,
         logger: Logger) {
        self.localCredentials = credentials
        self.loop = loop
        self.role = role
        self.options = options
        self.context = context
        self.logger = logger
        self.agent = ICEAgent(role: role == .caller ? .controlling : .controlled, local: credentials,
                              tieBreaker: UInt64.random(in: .min ... .max), configuration: options.ice, now: ICETime(.zero))
    }

    var now: ICETime { ICETime(.nanoseconds((NIODeadline.now() - started).nanoseconds)) }

    /// Our description: the caller offers `actpass`; the callee answers `active` (the
    /// answerer is the DTLS client, as JSEP recommends) unless the offer said `active`.
    var localDescription: DataChannelSDP {
        let setup: DTLSSetup = role == .caller ? .actpass : remote?.setup == .active ? .passive : .active
        return DataChannelSDP(ufrag: localCredentials.ufrag, password: localCredentials.password,
                              fingerprint: ("sha-256", context.certificate.sha256Fingerprint.hex), setup: setup,
                              streamWindow: Self.streamWindow)
    }

    /// The window each stream grants the peer (`StreamCredit`), as large as the association's
    /// receive window: what is in flight on a stream also waits in the queues between the TCP
    /// socket and the peer's reader, and a smaller window starves a lone stream (512 KiB
    /// carried ~330 Mbit/s on loopback here, 1 MiB 500–660, larger no more).
    /// It is also what one stream whose reader stalls can hold at the receiving agent.
    static let streamWindow = 1024 * 1024

    /// Per-stream credit for a new stream, if the peer's description says it grants it too.
    func makeCredit() -> StreamCredit? {
        remote?.streamWindow.map { StreamCredit(window: Self.streamWindow, peerWindow: $0) }
    }


    /// Replaces the options before `start()` (the caller learns its ICE servers after it
    /// created the connection for its first stream).
    func reconfigure(_ options: Options) {
        self.options = options
        agent = ICEAgent(role: role == .caller ? .controlling : .controlled, local: localCredentials,
                         tieBreaker: UInt64.random(in: .min ... .max), configuration: options.ice, now: now)
    }

    // MARK: Gathering

    /// Opens the sockets and starts gathering: host candidates at once, server-reflexive
    /// and relayed ones as their servers answer. Relay mode gathers relayed candidates only,
    /// p2p mode none.
    func start() {
        loop.assertInEventLoop()
        // The peer may have hung up already (its event ran as the session was added).
        guard !isClosed else { return }
        let relayOnly = options.mode == .relay
        if !relayOnly {
            for address in options.hostAddresses { openSocket(address) }
        }
        if options.mode != .p2p {
            for server in options.turnServers { allocate(server) }
        }
        if options.stunServers.isEmpty || relayOnly { iceGatheringDone = true }
        checkGatheringComplete()
        flush()
        // ICE gives up on its own; this bounds DTLS and SCTP after it (a peer that never
        // finishes its handshake must not hold streams forever).
        loop.scheduleTask(in: .seconds(30)) { [self] in
            if sctp?.isUp != true { fail("no connection to the peer within 30 s") }
        }
    }

    func openSocket(_ address: String) {
        let base = nextBase
        nextBase += 1
        let bootstrap = DatagramBootstrap(group: loop)
            .channelOption(.socketOption(.so_reuseaddr), value: 1)
            // recvmmsg: up to 16 datagrams of up to 2 KiB per read (DTLS records here stay
            // under the 1280-byte path; a larger datagram is cut and fails its checks).
            .channelOption(.datagramVectorReadMessageCount, value: 16)
            .channelOption(.recvAllocator, value: FixedSizeRecvByteBufferAllocator(capacity: 16 * 2048))
            .channelInitializer { [self] channel in
                channel.eventLoop.makeCompletedFuture {
                    try channel.pipeline.syncOperations.addHandler(SocketHandler(connection: self, base: base))
                }
            }
        // Bound synchronously enough for gathering: the host candidate follows the bind.
        bootstrap.bind(host: address, port: 0).whenComplete { [self] (result: Result<any Channel, any Error>) in
            switch result {
            case .success(let channel):
                guard !isClosed else { channel.close(promise: nil); return }
                sockets[base] = channel
                guard let local = channel.localAddress, let transport = TransportAddress(local) else { return }
                agent.addLocalCandidate(.host(transport, base: ICEBase(id: base)), now: now)
                if options.mode != .relay {
                    for server in options.stunServers where server.ip.isIPv4 == transport.ip.isIPv4 {
                        agent.addServerReflexiveServer(server, base: ICEBase(id: base), now: now)
                    }
                }
                flush()
            case .failure(let error):
                logger.warning("no UDP socket on \(address): \(error)")
            }
        }
    }

    func allocate(_ server: (address: SocketAddress, transport: TURNClientTransport, username: String, password: String)) {
        let base = nextBase
        nextBase += 1
        pendingTURN += 1
        var client = TURNClientConfiguration(username: server.username, password: server.password,
                                             transport: server.transport)
        client.useChannels = true
        var configuration = TURNConnection.Configuration(server: server.address, client: client)
        // The relay's certificate is checked by nothing here: TURN authenticates with the
        // REST credentials, and what is relayed is DTLS with a checked fingerprint.
        configuration.tls = TURNTLSOptions(verification: .none)
        let transport = server.transport
        TURNConnection.connect(configuration, on: loop) { [self] event in
            loop.assertInEventLoop()
            turnEvent(event, base: base)
        }.whenComplete { [self] result in
            switch result {
            case .success(let connection):
                guard !isClosed else { _ = connection.close(); return }
                relays[base] = (connection, transport)
                connection.allocation.whenComplete { [self] allocation in
                    pendingTURN -= 1
                    switch allocation {
                    case .success(let allocation):
                        let preference: UInt16 = transport == .udp ? 65535 : transport == .tcp ? 32767 : 16383
                        agent.addLocalCandidate(.relay(allocation.relayed, mapped: allocation.mapped,
                                                       base: ICEBase(id: base), localPreference: preference), now: now)
                    case .failure(let error):
                        logger.info("no TURN allocation over \(transport): \(error)")
                    }
                    checkGatheringComplete()
                    flush()
                }
            case .failure(let error):
                pendingTURN -= 1
                logger.info("TURN server unreachable over \(transport): \(error)")
                checkGatheringComplete()
            }
        }
    }

    /// Releases the allocations an ICE restart replaced, except the one the selected pair uses.
    func retireRelays(keeping base: Int?) {
        guard !isClosed else { return }
        for old in retiringRelays where old != base {
            if let relay = relays.removeValue(forKey: old) { _ = relay.connection.close() }
        }
        retiringRelays = retiringRelays.filter { $0 == base }
    }

    func turnEvent(_ event: TURNClientEvent, base: Int) {
        switch event {
        case .data(let from, let bytes):
            receive(Array(bytes.readableBytesView), from: from, base: base)
        case .failed(let error):
            logger.info("TURN allocation failed: \(error)")
        default:
            break
        }
    }

    func checkGatheringComplete() {
        guard !gatheringReported, iceGatheringDone, pendingTURN == 0 else { return }
        gatheringReported = true
        callbacks.gatheringComplete()
    }

    // MARK: Remote side

    func setRemoteDescription(_ description: DataChannelSDP) {
        loop.assertInEventLoop()
        remote = description
        restartPolicy.described(ufrag: description.ufrag)
        agent.setRemoteCredentials(ICECredentials(ufrag: description.ufrag, password: description.password), now: now)
        addRemoteCandidates(description.candidates, end: description.endOfCandidates)
        // DTLS roles: the answerer said active (it is the client) or passive.
        let role: DTLSEndpoint.Role
        switch (self.role, description.setup) {
        case (.caller, .passive): role = .client
        case (.caller, _): role = .server
        case (.callee, .active): role = .server
        case (.callee, _): role = .client
        }
        dtlsRole = role
        let fingerprints = DTLSFingerprint(sdp: "\(description.fingerprint.hash) \(description.fingerprint.value)").map { [$0] } ?? []
        do {
            dtls = try DTLSEndpoint(context: context, role: role, remoteFingerprints: fingerprints)
        } catch {
            fail("DTLS endpoint: \(error)")
            return
        }
        flush()
    }

    func addRemoteCandidates(_ candidates: [String], end: Bool) {
        loop.assertInEventLoop()
        for text in candidates {
            guard let candidate = try? ICECandidate(sdpAttribute: text) else {
                logger.debug("unreadable remote candidate", metadata: ["candidate": "\(text)"])
                continue
            }
            logger.debug("remote candidate", metadata: ["candidate": "\(text)"])
            agent.addRemoteCandidate(candidate, now: now)
        }
        if end { agent.endOfRemoteCandidates(now: now) }
        flush()
    }

    /// A trickle fragment from the peer. New ICE credentials in it mean the peer restarted
    /// ICE (RFC 8838/8840): we restart too, unless the restart was ours, and check the new
    /// generation's candidates. A late fragment of an older generation is dropped.
    func remoteFragment(_ fragment: TrickleFragment) {
        loop.assertInEventLoop()
        guard !isClosed else { return }
        switch restartPolicy.fragment(ufrag: fragment.ufrag, hasPassword: fragment.password != nil) {
        case .current:
            break
        case .old:
            return
        case .unusable:
            logger.debug("a fragment with new ICE credentials but no password ignored")
            return
        case .peerRestarted(let alsoRestart):
            guard let ufrag = fragment.ufrag, let password = fragment.password else { return }
            if alsoRestart { restartICE(reason: "the peer restarted ICE", answeringPeer: true) }
            logger.info("ICE restart: the peer's new credentials", metadata: ["ufrag": "\(ufrag)"])
            agent.setRemoteCredentials(ICECredentials(ufrag: ufrag, password: password), now: now)
        }
        addRemoteCandidates(fragment.candidates, end: fragment.endOfCandidates)
    }

    /// New TURN credentials (the old ones run out soon, and the relay refuses to refresh an
    /// allocation with an expired one): an ICE restart allocates with them, make before break.
    func renewRelays(_ turnServers: [(address: SocketAddress, transport: TURNClientTransport, username: String, password: String)]) {
        loop.assertInEventLoop()
        guard !isClosed, options.mode != .p2p, !turnServers.isEmpty, !relays.isEmpty else { return }
        options.turnServers = turnServers
        restartICE(reason: "relay credentials renewed")
    }

    // MARK: ICE restart

    /// Watches the path once connected: silence after sending, or ICE's consent going
    /// unanswered, restarts ICE through signaling; DTLS and SCTP carry on over the new pair.
    func startWatchdog() {
        watchdog = loop.scheduleRepeatedTask(initialDelay: .milliseconds(250), delay: .milliseconds(250)) { [weak self] _ in
            self?.checkPath()
        }
    }

    func checkPath() {
        guard !isClosed, remote != nil else { return }
        let clock = NIODeadline.now()  // the policy's clock; the ICE agent's is `now`
        if selected != nil, restartPolicy.probeDue(now: clock) {
            logger.trace("the path went quiet: consent request now")
            agent.probeSelectedPair(now: now)
            flush()
            callbacks.pathWentQuiet()
        }
        guard let reason = restartPolicy.restartReason(now: clock, consentLost: agent.state == .disconnected) else { return }
        restartICE(reason: reason)
    }

    /// ICE restart: new local credentials, the STUN servers asked again (the NAT may map us
    /// elsewhere now), every candidate sent again with the new ufrag; the selected pair goes on
    /// carrying DTLS until a pair of the new generation is selected. `answeringPeer`: the
    /// peer restarted first and its credentials are already taken.
    func restartICE(reason: String, answeringPeer: Bool = false) {
        guard !isClosed, remote != nil else { return }
        restartPolicy.restarting(at: .now(), answeringPeer: answeringPeer)
        logger.info("ICE restart", metadata: ["reason": "\(reason)", "restarts": "\(restartPolicy.restarts)"])
        let credentials = ICECredentials.random()
        localCredentials = credentials
        iceGatheringDone = options.stunServers.isEmpty || options.mode == .relay
        gatheringReported = false
        callbacks.restarted(credentials)
        if options.mode != .relay { agent.regatherServerReflexive(now: now) }
        // The relay's allocations may be gone with the old NAT mapping (TURN binds them to
        // the client's address), or their credentials run out: new ones make the new
        // generation's relayed candidates, and the old ones (not offered again) are released
        // after a new pair is selected.
        let reallocate = options.mode != .p2p && !options.turnServers.isEmpty
        if reallocate {
            retiringRelays.formUnion(relays.keys)
            for base in relays.keys { agent.removeLocalCandidates(base: ICEBase(id: base)) }
        }
        agent.restart(local: credentials, role: nil, now: now)
        if reallocate {
            for server in options.turnServers { allocate(server) }
        }
        flush()
        checkGatheringComplete()
    }

}


/// Hands a UDP socket's datagrams to its connection (on the connection's event loop).
private final class SocketHandler: ChannelInboundHandler, @unchecked Sendable {
    typealias InboundIn = AddressedEnvelope<ByteBuffer>
    // The connection is confined to this channel's event loop, like the handler.
    private weak var connection: PeerConnection?
    private let base: Int

    init(connection: PeerConnection, base: Int) {
        self.connection = connection
        self.base = base
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        let envelope = unwrapInboundIn(data)
        guard let from = TransportAddress(envelope.remoteAddress) else { return }
        connection?.receive(Array(envelope.data.readableBytesView), from: from, base: base)
    }
}

extension SocketAddress {
    /// The NIO address of a Wire transport address.
    init(_ address: TransportAddress) {
        switch address.kernelAddress {
        case .v4(let kernel): self.init(kernel, host: "")
        case .v6(let kernel): self.init(kernel, host: "")
        }
    }
}
