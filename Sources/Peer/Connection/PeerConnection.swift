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
    private(set) var options: Options
    let logger: Logger
    var callbacks = Callbacks()
    private(set) var localCredentials: ICECredentials
    private let context: DTLSContext
    private var agent: ICEAgent
    private let started = NIODeadline.now()
    private var sockets: [Int: any Channel] = [:]
    private var relays: [Int: (connection: TURNConnection, transport: TURNClientTransport)] = [:]
    private var nextBase = 0
    private var pendingTURN = 0
    private var iceGatheringDone = false
    private var gatheringReported = false
    private var remote: DataChannelSDP?
    private var dtls: DTLSEndpoint?
    private var dtlsRole: DTLSEndpoint.Role?
    private var sctp: SCTPAssociation?
    private var selected: ICECandidatePair?
    private var lastInbound: (base: ICEBase, from: TransportAddress)?
    private var earlyDatagrams: [[UInt8]] = []
    private var unverified: [(base: ICEBase, from: TransportAddress, bytes: [UInt8])] = []
    private var timer: Scheduled<Void>?
    private var timerDeadline: NIODeadline?
    private var tunnels: [DataChannelID: DataChannelTunnel] = [:]
    private var unopened: [DataChannelTunnel] = []
    private var pausedTunnels = 0
    /// When to restart ICE, and which generation a trickle fragment belongs to.
    private var restartPolicy = RestartPolicy()
    private var watchdog: RepeatedTask?
    /// Relay bases of an older generation, released when a pair of the new one is selected.
    private var retiringRelays: Set<Int> = []
    private var retirement: Scheduled<Void>?
    /// A flush of the sockets is due after this loop pass (datagrams are written, not flushed).
    private var flushScheduled = false
    private var reportedConnected = false
    private(set) var isClosed = false
    /// ICE lost consent for a while (it may come back): new streams go elsewhere.
    private(set) var isDisconnected = false
    private(set) var path: PathReport?

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
    private func makeCredit() -> StreamCredit? {
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

    private func openSocket(_ address: String) {
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

    private func allocate(_ server: (address: SocketAddress, transport: TURNClientTransport, username: String, password: String)) {
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
    private func retireRelays(keeping base: Int?) {
        guard !isClosed else { return }
        for old in retiringRelays where old != base {
            if let relay = relays.removeValue(forKey: old) { _ = relay.connection.close() }
        }
        retiringRelays = retiringRelays.filter { $0 == base }
    }

    private func turnEvent(_ event: TURNClientEvent, base: Int) {
        switch event {
        case .data(let from, let bytes):
            receive(Array(bytes.readableBytesView), from: from, base: base)
        case .failed(let error):
            logger.info("TURN allocation failed: \(error)")
        default:
            break
        }
    }

    private func checkGatheringComplete() {
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
    private func startWatchdog() {
        watchdog = loop.scheduleRepeatedTask(initialDelay: .milliseconds(250), delay: .milliseconds(250)) { [weak self] _ in
            self?.checkPath()
        }
    }

    private func checkPath() {
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
    private func restartICE(reason: String, answeringPeer: Bool = false) {
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

    // MARK: Datagrams

    fileprivate func receive(_ bytes: [UInt8], from: TransportAddress, base: Int) {
        guard !isClosed, let first = bytes.first else { return }
        let iceBase = ICEBase(id: base)
        switch first {
        case 0...3:
            var buffer = ByteBuffer(bytes: bytes)
            guard let message = try? STUNMessage(parsing: &buffer) else { return }
            let answeredBefore = agent.selectedPairAnsweredAt
            agent.receive(message, from: from, base: iceBase, now: now)
            if let answered = agent.selectedPairAnsweredAt, answered != answeredBefore { restartPolicy.answered() }
        case 20...63:
            // DTLS only from a path ICE checked: a stranger's ClientHello must not start a
            // handshake that then fails the whole connection. The peer's first flight can
            // overtake our check's answer: it waits (a few) until that pair succeeds.
            guard isChecked(base: iceBase, from: from) else {
                if unverified.count < 8 { unverified.append((iceBase, from, bytes)) }
                agent.noteTraffic(from: from, base: iceBase, now: now)
                flush()
                return
            }
            lastInbound = (iceBase, from)
            restartPolicy.received(at: .now())
            agent.noteTraffic(from: from, base: iceBase, now: now)
            guard let dtls else {
                // A ClientHello before the answer's description: keep a few.
                if earlyDatagrams.count < 8 { earlyDatagrams.append(bytes) }
                return
            }
            handle(dtls.receive(bytes))
        default:
            return
        }
        flush()
    }

    private func isChecked(base: ICEBase, from: TransportAddress) -> Bool {
        if let selected, selected.base == base, selected.remoteAddress == from { return true }
        return agent.checklist.contains { $0.base == base && $0.remoteAddress == from && $0.state == .succeeded }
    }

    private func sendDatagram(_ bytes: [UInt8], base: ICEBase, to: TransportAddress) {
        var buffer = ByteBuffer(bytes: bytes)
        if let socket = sockets[base.id] {
            // Written now, flushed once after what the loop is doing: the datagrams one event
            // made (an SCTP burst is up to 10 packets) leave in one sendmmsg.
            socket.write(AddressedEnvelope(remoteAddress: SocketAddress(to), data: buffer), promise: nil)
            if !flushScheduled {
                flushScheduled = true
                loop.execute { [self] in
                    flushScheduled = false
                    for socket in sockets.values { socket.flush() }  // a no-op where nothing waits
                }
            }
        } else if let relay = relays[base.id] {
            relay.connection.send(buffer, to: to)
        } else {
            buffer.clear()
        }
    }

    /// Sends DTLS on the selected pair, or back where the last DTLS datagram came from
    /// before ICE selected one (the controlled side, before nomination). `asksForAnswer`: the
    /// peer will reply (SCTP data, a heartbeat, a handshake flight), so silence after it means
    /// the path broke; a bare acknowledgement gets no reply on a path that works.
    private func sendOnPath(_ datagrams: [[UInt8]], asksForAnswer: Bool) {
        let path = selected.map { ($0.base, $0.remoteAddress) } ?? lastInbound.map { ($0.base, $0.from) }
        guard let (base, to) = path else { return }
        if asksForAnswer && !datagrams.isEmpty { restartPolicy.sent(at: .now()) }
        for datagram in datagrams { sendDatagram(datagram, base: base, to: to) }
    }

    // MARK: DTLS and SCTP

    private func handle(_ output: DTLSEndpoint.Output) {
        // Handshake flights are answered; after it, DTLS itself sends only alerts.
        var handshaking = false
        if let dtls, case .handshaking = dtls.state { handshaking = true }
        sendOnPath(output.datagrams, asksForAnswer: handshaking)
        for event in output.events {
            switch event {
            case .connected:
                logger.debug("DTLS connected", metadata: ["role": "\(String(describing: dtlsRole))"])
                startSCTP()
            case .closeNotifyReceived: fail("the peer closed the connection")
            case .failed(let failure): fail("DTLS: \(failure)")
            default: break
            }
        }
        for data in output.applicationData { sctp?.input(data) }
    }

    private func startDTLSIfReady() {
        if dtls != nil, dtlsRole == .client, !dtlsStarted, selected == nil, lastInbound == nil {
            logger.trace("DTLS client waits for a path")
        }
        guard let dtls, dtlsRole == .client, selected != nil || lastInbound != nil, case .handshaking = dtls.state,
              !dtlsStarted else { return }
        dtlsStarted = true
        handle(dtls.start())
    }
    private var dtlsStarted = false

    private func startSCTP() {
        guard sctp == nil, let dtlsRole else { return }
        var configuration = SCTPAssociation.Configuration()
        configuration.remotePort = remote?.sctpPort ?? 5000
        configuration.remoteMaxMessageSize = remote?.maxMessageSize ?? 65_536
        // Data lost while the path was down goes again soon after an ICE restart brings it
        // back (at most 1 s after), and an outage of about 30 s is survived (ICE's consent
        // timeout decides before that).
        configuration.maximumRTO = 1000
        configuration.maximumRetransmissions = 32
        let association = SCTPAssociation(role: dtlsRole == .client ? .client : .server, configuration: configuration,
                                          output: { [weak self] packet in self?.sctpOutput(packet) },
                                          onEvent: { [weak self] event in self?.sctpEvent(event) })
        sctp = association
        association.start()
    }

    private func sctpOutput(_ packet: [UInt8]) {
        guard let dtls else { return }
        do {
            sendOnPath(try dtls.write(packet), asksForAnswer: SCTPPacket.asksForAnswer(packet))
        } catch {
            logger.debug("SCTP packet not sent: \(error)")
        }
    }

    private func sctpEvent(_ event: SCTPAssociation.Event) {
        switch event {
        case .associationUp:
            logger.debug("SCTP association up")
            reportConnected()
            for tunnel in unopened { open(tunnel) }
            unopened.removeAll()
        case .channelOpened(let id, let label, _):
            let tunnel = DataChannelTunnel(id: id, service: label, connection: self, incoming: true)
            tunnel.credit = makeCredit()
            tunnels[id] = tunnel
            callbacks.incomingStream(tunnel)
        case .channelOpenAcked:
            break
        case .message(let id, let bytes, let binary):
            guard let tunnel = tunnels[id] else { return }
            if tunnel.credit != nil {
                received(bytes, binary: binary, on: tunnel, id: id)
            } else if !binary && !tunnel.incoming {
                // Text on a channel we opened is the exposing side's refusal; on one the
                // peer opened (a browser's dc.send("GET /…")) it is just bytes.
                tunnel.arrived(.refused(String(buffer: bytes)))
            } else if !binary {
                tunnel.arrived(.bytes(bytes))
            } else if bytes.readableBytes == 0 {
                tunnel.arrived(.end)
            } else {
                tunnel.arrived(.bytes(bytes))
            }
        case .channelClosed(let id):
            if let tunnel = tunnels.removeValue(forKey: id) { tunnel.arrived(.closed) }
        case .bufferedAmountLow(let id):
            if let tunnel = tunnels[id] { drain(tunnel) }
        case .associationDown(let reason):
            fail("SCTP association down: \(reason)")
        }
    }

    /// A message on a stream that uses credit: bytes count against what we granted; text is
    /// a control message (a grant, or a refusal). A peer that breaks the rules loses the stream.
    private func received(_ bytes: ByteBuffer, binary: Bool, on tunnel: DataChannelTunnel, id: DataChannelID) {
        do {
            if binary {
                if bytes.readableBytes == 0 {
                    tunnel.arrived(.end)
                } else {
                    try tunnel.credit?.received(bytes.readableBytes)
                    tunnel.arrived(.bytes(bytes))
                }
                return
            }
            let control = try TunnelControl.decode(bytes)
            if let amount = control.credit {
                try tunnel.credit?.granted(amount)
                drain(tunnel)
            } else if let reason = control.refused {
                tunnel.arrived(.refused(reason))
            }
        } catch {
            logger.warning("stream closed: the peer broke its flow control", metadata: ["error": "\(error)"])
            tunnels.removeValue(forKey: id)
            sctp?.closeChannel(id)
            tunnel.arrived(.closed)
        }
    }

    /// Grants the peer `amount` more bytes on `tunnel` (its reader took them). Grants go
    /// straight to SCTP, never behind the tunnel's own backlog (which may itself wait for the
    /// peer's credit); one SCTP cannot take yet goes with the next drain.
    func grant(_ amount: Int, on tunnel: DataChannelTunnel) {
        tunnel.pendingGrant += amount
        sendGrant(tunnel)
    }

    private func sendGrant(_ tunnel: DataChannelTunnel) {
        guard tunnel.pendingGrant > 0, !tunnel.isClosed, let id = tunnel.id, tunnels[id] === tunnel, let sctp else { return }
        switch sctp.send(TunnelControl(credit: tunnel.pendingGrant).encoded(), on: id, binary: false) {
        case .sent, .wouldBlock: tunnel.pendingGrant = 0
        case .refused(.queueFull): break  // `.bufferedAmountLow` brings it back here
        case .refused: tunnel.pendingGrant = 0
        }
    }

    // MARK: Streams

    /// A new stream to the peer's `service` (its data channel opens once the association is up).
    func openStream(service: String) -> DataChannelTunnel {
        let tunnel = DataChannelTunnel(id: nil, service: service, connection: self)
        if isClosed {
            // Nothing would ever open or refuse it: the caller learns at once.
            tunnel.arrived(.refused("the peer connection is closed"))
            tunnel.arrived(.closed)
        } else if let sctp, sctp.isUp {
            open(tunnel)
        } else {
            unopened.append(tunnel)
        }
        return tunnel
    }

    private func open(_ tunnel: DataChannelTunnel) {
        guard let sctp, !tunnel.isClosed else { return }
        do {
            let id = try sctp.openChannel(label: tunnel.service, protocol: "switchboard-tcp")
            tunnel.assign(id)
            tunnel.credit = makeCredit()
            tunnels[id] = tunnel
            drain(tunnel)
        } catch {
            tunnel.arrived(.refused("no data channel: \(error)"))
            tunnel.arrived(.closed)
        }
    }

    /// Queues bytes for the peer. Nothing is ever dropped: what SCTP cannot take yet (the
    /// channel is not open, or the association's queue is full) waits in the tunnel's
    /// backlog, and false tells the writer to stop reading until `writable()`.
    func send(_ bytes: ByteBuffer, on tunnel: DataChannelTunnel) -> Bool {
        // Messages no larger than the peer takes (`a=max-message-size`).
        let largest = max(1024, min(sctp?.configuration.remoteMaxMessageSize ?? 65_536, 65_536))
        var bytes = bytes
        while bytes.readableBytes > 0 {
            let chunk = bytes.readSlice(length: min(largest, bytes.readableBytes))!
            tunnel.backlog.append(.bytes(chunk))
            tunnel.backlogBytes += chunk.readableBytes
        }
        drain(tunnel)
        // Reading goes on while the backlog is small, however it is held up (the channel not
        // open yet, SCTP's queue full); past the limit the writer waits for `writable()`.
        if tunnel.backlogBytes < DataChannelTunnel.backlogLimit { return true }
        tunnel.blocked = true
        return false
    }

    func sendEnd(on tunnel: DataChannelTunnel) {
        tunnel.backlog.append(.end)
        drain(tunnel)
    }

    func refuse(_ tunnel: DataChannelTunnel, reason: String) {
        tunnel.backlog.append(.text(reason))
        drain(tunnel)
    }

    /// Moves the tunnel's backlog into SCTP, in order, until SCTP says "full". Returns
    /// whether all of it went. A close asked for meanwhile happens after the backlog; a
    /// writer that was stopped hears `writable()` once it is all in.
    @discardableResult
    private func drain(_ tunnel: DataChannelTunnel) -> Bool {
        guard let id = tunnel.id, let sctp, sctp.isUp else { return false }
        sendGrant(tunnel)
        while let item = tunnel.backlog.first {
            let result: SCTPAssociation.SendResult
            // With credit, bytes go only as far as the peer granted; the rest waits for a grant.
            var sending = 0
            switch item {
            case .bytes(let bytes):
                sending = min(bytes.readableBytes, tunnel.credit?.sendable ?? .max)
                if sending == 0 { return false }
                result = sctp.send(bytes.getSlice(at: bytes.readerIndex, length: sending)!, on: id)
            case .end: result = sctp.send(ByteBuffer(), on: id)
            case .text(let text):
                if tunnel.credit != nil {
                    result = sctp.send(TunnelControl(refused: text).encoded(), on: id, binary: false)
                } else {
                    result = sctp.send(text: text, on: id)
                }
            }
            switch result {
            case .sent, .wouldBlock:
                if case .bytes(var bytes) = item {
                    _ = tunnel.credit?.take(upTo: sending)
                    tunnel.backlogBytes -= sending
                    if sending < bytes.readableBytes {
                        bytes.moveReaderIndex(forwardBy: sending)
                        tunnel.backlog[tunnel.backlog.startIndex] = .bytes(bytes)
                    } else {
                        tunnel.backlog.removeFirst()
                    }
                } else {
                    tunnel.backlog.removeFirst()
                }
                // Over SCTP's high-water mark: the rest waits for `.bufferedAmountLow`.
                if case .wouldBlock = result { return false }
            case .refused(.queueFull):
                return false
            case .refused(let why):
                // The channel is closing or gone: nothing more can go on it.
                logger.debug("stream send refused: \(why)")
                tunnel.backlog.removeAll()
                tunnel.backlogBytes = 0
                return false
            }
        }
        if tunnel.closeAfterBacklog {
            tunnel.closeAfterBacklog = false
            closeTunnel(tunnel)
            return false
        }
        if tunnel.blocked {
            tunnel.blocked = false
            tunnel.writable()
        }
        return true
    }

    func closeTunnel(_ tunnel: DataChannelTunnel) {
        guard let id = tunnel.id else {
            unopened.removeAll { $0 === tunnel }
            return
        }
        if !tunnel.backlog.isEmpty {
            tunnel.closeAfterBacklog = true
            return
        }
        sctp?.closeChannel(id)
        tunnels.removeValue(forKey: id)
        flush()
    }

    func pauseReceiving() {
        pausedTunnels += 1
        if pausedTunnels == 1 { sctp?.pauseReceiving() }
    }

    func resumeReceiving() {
        pausedTunnels = max(0, pausedTunnels - 1)
        if pausedTunnels == 0 { sctp?.resumeReceiving() }
    }

    var streamCount: Int { tunnels.count + unopened.count }

    // MARK: ICE actions, timers

    /// Carries out what the ICE agent decided and re-arms the timer.
    func flush() {
        guard !isClosed else { return }
        for action in agent.takeActions() {
            switch action {
            case .send(let bytes, let base, let to):
                sendDatagram(bytes, base: base, to: to)
            case .localCandidate(let candidate):
                callbacks.localCandidate(candidate.sdpAttribute)
            case .gatheringComplete:
                iceGatheringDone = true
                checkGatheringComplete()
            case .selectedPair(let pair):
                logger.debug("ICE selected a pair", metadata: ["pair": "\(pair)"])
                let previous = selected
                selected = pair
                if !retiringRelays.isEmpty && retirement == nil {
                    // Not at once: the controlled side selects before the nomination says which
                    // pair both use, and that may still be one of the old allocations.
                    retirement = loop.scheduleTask(in: .seconds(10)) { [weak self] in
                        guard let self else { return }
                        retirement = nil
                        retireRelays(keeping: selected?.base.id)
                    }
                }
                let report = self.report(pair)
                path = report
                if previous != nil && reportedConnected && (previous?.isRelayed != pair.isRelayed) {
                    callbacks.pathChanged(report)
                }
                if sctp?.isUp == true {
                    sctp?.pathChanged()
                    reportConnected()
                }
            case .state(let state):
                logger.debug("ICE state", metadata: ["state": "\(state)"])
                if state == .disconnected { isDisconnected = true }
                if state == .connected { isDisconnected = false }
                if state == .failed {
                    let reason: String
                    if agent.failureReason == .consentExpired {
                        reason = "the peer stopped answering (consent lost)"
                    } else if options.mode == .p2p {
                        reason = "no direct path (ICE failed; p2p mode does not relay)"
                    } else {
                        reason = "no path to the peer (ICE failed)"
                    }
                    fail(reason)
                    return
                }
            }
        }
        if !unverified.isEmpty {
            let waiting = unverified
            unverified.removeAll()
            for datagram in waiting {
                if isChecked(base: datagram.base, from: datagram.from) {
                    receive(datagram.bytes, from: datagram.from, base: datagram.base.id)
                } else {
                    unverified.append(datagram)
                }
            }
        }
        if let dtls, !earlyDatagrams.isEmpty {
            let early = earlyDatagrams
            earlyDatagrams.removeAll()
            for datagram in early { handle(dtls.receive(datagram)) }
        }
        startDTLSIfReady()
        armTimer()
    }

    private func report(_ pair: ICECandidatePair) -> PathReport {
        let relayTransport = pair.local.type == .relay ? relays[pair.base.id].map { $0.transport.rawValue } : nil
        return PathReport(path: pair.isRelayed ? .relay : .direct, local: pair.local.type.rawValue,
                          remote: pair.remote.type.rawValue, relayTransport: relayTransport, rttMilliseconds: nil)
    }

    private func reportConnected() {
        guard !reportedConnected, let selected else { return }
        reportedConnected = true
        startWatchdog()
        var report = self.report(selected)
        report.rttMilliseconds = Int((NIODeadline.now() - started).nanoseconds / 1_000_000)
        path = report
        callbacks.connected(report)
    }

    private func armTimer() {
        var deadline: NIODeadline?
        if let next = agent.nextDeadline {
            deadline = started + .nanoseconds(Int64(next.milliseconds) * 1_000_000)
        }
        if let timeout = dtls?.nextTimeout {
            let at = NIODeadline.now() + .nanoseconds(Int64(timeout.components.seconds) * 1_000_000_000
                + timeout.components.attoseconds / 1_000_000_000)
            deadline = min(deadline ?? at, at)
        }
        if sctp != nil {
            let at = NIODeadline.now() + .milliseconds(10)
            deadline = min(deadline ?? at, at)
        }
        guard let deadline else { return }
        if let timerDeadline, timerDeadline <= deadline, timer != nil { return }
        timer?.cancel()
        timerDeadline = deadline
        timer = loop.scheduleTask(deadline: deadline) { [weak self] in self?.tick() }
    }

    private func tick() {
        timer = nil
        timerDeadline = nil
        guard !isClosed else { return }
        agent.advance(now: now)
        if let dtls, let timeout = dtls.nextTimeout, timeout <= .zero { handle(dtls.handleTimeout()) }
        if let sctp { sctp.handleTimers(now: .now()) }
        flush()
    }

    // MARK: Ending

    private func fail(_ reason: String) {
        guard !isClosed else { return }
        close(reason: reason)
    }

    /// The peer deleted the session. Before any path worked that is the peer's ICE giving up
    /// (it may do so a moment before ours does): say so in the mode's terms.
    func peerHungUp() {
        guard !reportedConnected else { return close(reason: "hung up") }
        switch options.mode {
        case .p2p: close(reason: "no direct path (the peer's ICE failed first; p2p mode does not relay)")
        default: close(reason: "the peer hung up before a path was found")
        }
    }

    func close(reason: String) {
        guard !isClosed else { return }
        isClosed = true
        timer?.cancel()
        watchdog?.cancel()
        retirement?.cancel()
        for tunnel in tunnels.values { tunnel.arrived(.closed) }
        for tunnel in unopened { tunnel.arrived(.refused(reason)); tunnel.arrived(.closed) }
        tunnels.removeAll()
        unopened.removeAll()
        sctp?.close()
        if let dtls { sendOnPath(dtls.close(), asksForAnswer: false) }
        agent.close()
        for socket in sockets.values { socket.close(promise: nil) }
        for relay in relays.values { _ = relay.connection.close() }
        callbacks.closed(reason)
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
