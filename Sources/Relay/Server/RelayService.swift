import Datagram
import Foundation
import Logging
import Metrics
import NIOCore
import NIOPosix
import NIOSSL
import ServiceLifecycle
import Store
import Wire

/// RelayService is the TURN server (RFC 8656) with STUN Binding, over UDP, TCP and TLS,
/// as a swift-service-lifecycle service. On graceful shutdown it stops taking allocations,
/// lets existing ones go on for `drainSeconds` (or until none are left), then ends them.
package final class RelayService: Service {
    private let configuration: RelayConfiguration
    private let database: SwitchboardDatabase
    private let logger: Logger
    private let onListening: @Sendable ([String]) -> Void

    package init(configuration: RelayConfiguration, database: SwitchboardDatabase, logger: Logger,
                onListening: @escaping @Sendable ([String]) -> Void = { _ in }) {
        self.configuration = configuration
        self.database = database
        self.logger = logger
        self.onListening = onListening
    }

    package func run() async throws {
        let loop = MultiThreadedEventLoopGroup.singleton.next()
        let events = RelayEvents(realm: configuration.realm, loop: loop)
        let configuration = self.configuration
        let logger = self.logger
        let engine = try await loop.submit {
            NIOLoopBound(RelayEngine(loop: loop, configuration: configuration, logger: logger, events: events),
                         eventLoop: loop)
        }.get()

        try await database.clearLiveAllocations()
        let keys = try await database.turnUserKeys(realm: configuration.realm)
        try await loop.submit { engine.value.core.staticUsers = keys }.get()

        var channels: [any Channel] = []
        var descriptions: [String] = []
        do {
            for listener in configuration.listeners {
                let udp = try await bindUDP(listener, engine: engine, loop: loop)
                let tcp = try await bindStream(listener, transport: .tcp, tls: nil, engine: engine, loop: loop)
                channels += [udp, tcp]
                descriptions.append("turn       udp+tcp://\(Self.describe(udp.localAddress))")
            }
            if let certificate = configuration.tlsCertificatePath, let key = configuration.tlsKeyPath {
                let context = try Self.tlsContext(certificate: certificate, key: key)
                for listener in configuration.tlsListeners {
                    let tls = try await bindStream(listener, transport: .tls, tls: context, engine: engine, loop: loop)
                    channels.append(tls)
                    descriptions.append("turn       tls://\(Self.describe(tls.localAddress))")
                }
            }
        } catch {
            for channel in channels { try? await channel.close() }
            throw error
        }
        onListening(descriptions)

        let metrics = RelayMetrics(loop: loop)
        let ticker = loop.scheduleRepeatedTask(initialDelay: .seconds(1), delay: .seconds(1)) { _ in
            let engine = engine.value
            engine.tick()
            metrics.update(from: engine.core, connections: engine.connectionPolicy)
            events.ship()
        }
        // Connection deadlines are swept four times a second, so one is kept at most 250 ms
        // past it; the sweep visits only connections that have a deadline.
        let sweeper = loop.scheduleRepeatedTask(initialDelay: .milliseconds(250), delay: .milliseconds(250)) { _ in
            engine.value.sweepConnections()
        }

        let database = self.database
        let refresher = Task {
            // Static users added or removed with the CLI reach the relay within seconds.
            while !Task.isCancelled {
                try? await Task.sleep(for: .seconds(2))
                guard let keys = try? await database.turnUserKeys(realm: configuration.realm) else { continue }
                loop.execute { engine.value.core.staticUsers = keys }
            }
        }
        let recorder = Task {
            for await batch in events.batches {
                do {
                    try await database.recordRelayChanges(live: batch.live, ended: batch.ended)
                } catch {
                    logger.error("cannot record relay usage", metadata: ["error": "\(error)"])
                }
            }
        }

        let (stop, stopContinuation) = AsyncStream.makeStream(of: Void.self)
        await withGracefulShutdownHandler {
            for await _ in stop { break }
        } onGracefulShutdown: {
            stopContinuation.yield()
        }

        // Drain: no new allocations; existing ones go on until they end or time runs out.
        logger.info("relay draining", metadata: ["seconds": "\(configuration.drainSeconds)"])
        try? await loop.submit { engine.value.core.acceptingAllocations = false }.get()
        let deadline = ContinuousClock.now + .seconds(configuration.drainSeconds)
        while ContinuousClock.now < deadline {
            let remaining = (try? await loop.submit { engine.value.core.allocationCount }.get()) ?? 0
            if remaining == 0 { break }
            try? await Task.sleep(for: .milliseconds(200))
        }
        ticker.cancel()
        sweeper.cancel()
        try? await loop.submit {
            engine.value.endAll()
            metrics.update(from: engine.value.core, connections: engine.value.connectionPolicy)
            events.ship()
        }.get()
        for channel in channels { try? await channel.close() }
        events.finish()
        refresher.cancel()
        await recorder.value
        logger.info("relay stopped")
    }

    private func bindUDP(_ listener: RelayConfiguration.Listener, engine: NIOLoopBound<RelayEngine>,
                         loop: any EventLoop) async throws -> any Channel {
        let socket = try UDPSocket(host: listener.host, port: listener.port, sendBuffer: 4 << 20)
        let channel = try await DatagramBootstrap(group: loop)
            // Vector reads split one buffer between the messages: 64 datagrams of up to 4 KiB.
            .channelOption(.recvAllocator, value: FixedSizeRecvByteBufferAllocator(capacity: 64 * 4096))
            .channelOption(.datagramVectorReadMessageCount, value: 64)
            .withBoundSocket(socket.handOverToNIO()).get()
        try await loop.submit {
            guard let local = channel.localAddress.flatMap(TransportAddress.init) else { throw RelayError.noFreePort }
            engine.value.udpListeners[local] = UDPEndpoint(channel: channel, socket: socket)
            try channel.pipeline.syncOperations.addHandlers(
                UDPListenerHandler(engine: engine.value, local: local), UDPSocketCloser(socket: socket))
        }.get()
        return channel
    }

    private func bindStream(_ listener: RelayConfiguration.Listener, transport: ClientTransport,
                            tls: NIOSSLContext?, engine: NIOLoopBound<RelayEngine>,
                            loop: any EventLoop) async throws -> any Channel {
        try await ServerBootstrap(group: loop)
            .serverChannelOption(.socketOption(.so_reuseaddr), value: 1)
            .childChannelOption(.socketOption(.tcp_nodelay), value: 1)
            .childChannelInitializer { channel in
                channel.eventLoop.makeCompletedFuture {
                    guard let local = channel.localAddress.flatMap(TransportAddress.init),
                          let client = channel.remoteAddress.flatMap(TransportAddress.init) else {
                        throw RelayError.connectionRefused
                    }
                    let fiveTuple = FiveTuple(client: client, server: local, transport: transport)
                    let engine = engine.value
                    // Refused before any handler or TLS state exists: NIO closes the socket.
                    guard engine.admit(fiveTuple) else { throw RelayError.connectionRefused }
                    do {
                        if let tls {
                            try channel.pipeline.syncOperations.addHandler(NIOSSLServerHandler(context: tls))
                        }
                        try channel.pipeline.syncOperations.addHandler(ByteToMessageHandler(StreamFrameDecoder()))
                        try channel.pipeline.syncOperations.addHandler(
                            StreamClientHandler(engine: engine, fiveTuple: fiveTuple))
                    } catch {
                        engine.connectionClosed(fiveTuple)
                        throw error
                    }
                }
            }
            .bind(host: listener.host, port: listener.port).get()
    }

    static func tlsContext(certificate: String, key: String) throws -> NIOSSLContext {
        let chain = try NIOSSLCertificate.fromPEMFile(certificate).map { NIOSSLCertificateSource.certificate($0) }
        let privateKey = try NIOSSLPrivateKey(file: key, format: .pem)
        return try NIOSSLContext(configuration: .makeServerConfiguration(
            certificateChain: chain, privateKey: .privateKey(privateKey)))
    }

    static func describe(_ address: SocketAddress?) -> String {
        guard let address, let transport = TransportAddress(address) else { return "?" }
        return transport.description
    }
}

/// RelayMetrics publishes the core's counters through swift-metrics once a second, so the
/// packet path only adds integers.
final class RelayMetrics: Sendable {
    private let allocations = Gauge(label: "switchboard_relay_allocations")
    private let packetsToPeer = Counter(label: "switchboard_relay_packets_total", dimensions: [("direction", "to_peer")])
    private let packetsToClient = Counter(label: "switchboard_relay_packets_total", dimensions: [("direction", "to_client")])
    private let bytesToPeer = Counter(label: "switchboard_relay_bytes_total", dimensions: [("direction", "to_peer")])
    private let bytesToClient = Counter(label: "switchboard_relay_bytes_total", dimensions: [("direction", "to_client")])
    private let authFailures = Counter(label: "switchboard_relay_auth_failures_total")
    private let authChallenges = Counter(label: "switchboard_relay_auth_challenges_total")
    private let filterDrops = Counter(label: "switchboard_relay_filter_drops_total")
    private let ownAddressDrops = Counter(label: "switchboard_relay_own_address_drops_total")
    private let malformed = Counter(label: "switchboard_relay_malformed_total")
    private let sendErrors = Counter(label: "switchboard_relay_send_errors_total")
    private let throttled = Counter(label: "switchboard_relay_dropped_total", dimensions: [("reason", "auth_throttled")])
    private let noPermission = Counter(label: "switchboard_relay_dropped_total", dimensions: [("reason", "no_permission")])
    private let bandwidth = Counter(label: "switchboard_relay_dropped_total", dimensions: [("reason", "bandwidth")])
    private let badFingerprint = Counter(label: "switchboard_relay_dropped_total",
                                         dimensions: [("reason", "bad_fingerprint")])
    private let connections = Gauge(label: "switchboard_relay_connections")
    private let refusedPerSource = Counter(label: "switchboard_relay_connections_refused_total",
                                           dimensions: [("reason", ConnectionPolicy.Refusal.perSource.rawValue)])
    private let refusedTotal = Counter(label: "switchboard_relay_connections_refused_total",
                                       dimensions: [("reason", ConnectionPolicy.Refusal.total.rawValue)])
    private let authTimeouts = Counter(label: "switchboard_relay_connections_closed_total",
                                       dimensions: [("reason", ConnectionPolicy.CloseReason.authTimeout.rawValue)])
    private let idleClosed = Counter(label: "switchboard_relay_connections_closed_total",
                                     dimensions: [("reason", ConnectionPolicy.CloseReason.idle.rawValue)])
    /// What the last update published; the relay loop's alone (NIOLoopBoundBox checks it).
    private let published: NIOLoopBoundBox<(core: TURNCore.Counters, connections: ConnectionPolicy.Counters)>

    init(loop: any EventLoop) {
        published = .makeBoxSendingValue((TURNCore.Counters(), ConnectionPolicy.Counters()), eventLoop: loop)
    }

    func update(from core: TURNCore, connections policy: ConnectionPolicy) {
        let (last, lastConnections) = published.value
        let counted = policy.counters
        connections.record(policy.count)
        refusedPerSource.increment(by: counted.refusedPerSource - lastConnections.refusedPerSource)
        refusedTotal.increment(by: counted.refusedTotal - lastConnections.refusedTotal)
        authTimeouts.increment(by: counted.authTimeouts - lastConnections.authTimeouts)
        idleClosed.increment(by: counted.idleClosed - lastConnections.idleClosed)
        let now = core.counters
        allocations.record(core.allocationCount)
        packetsToPeer.increment(by: now.packetsToPeer - last.packetsToPeer)
        packetsToClient.increment(by: now.packetsToClient - last.packetsToClient)
        bytesToPeer.increment(by: now.bytesToPeer - last.bytesToPeer)
        bytesToClient.increment(by: now.bytesToClient - last.bytesToClient)
        authFailures.increment(by: now.authFailures - last.authFailures)
        authChallenges.increment(by: now.authChallenges - last.authChallenges)
        filterDrops.increment(by: now.filterDrops - last.filterDrops)
        ownAddressDrops.increment(by: now.ownAddressDrops - last.ownAddressDrops)
        malformed.increment(by: now.malformed - last.malformed)
        sendErrors.increment(by: now.sendErrors - last.sendErrors)
        throttled.increment(by: now.authThrottled - last.authThrottled)
        noPermission.increment(by: now.noPermissionDrops - last.noPermissionDrops)
        bandwidth.increment(by: now.bandwidthDrops - last.bandwidthDrops)
        badFingerprint.increment(by: now.badFingerprints - last.badFingerprints)
        published.value = (now, counted)
    }
}
