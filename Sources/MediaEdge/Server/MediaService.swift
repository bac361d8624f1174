import DTLS
import Datagram
import Foundation
import Logging
import Metrics
import NIOCore
import NIOPosix
import SRTP
import ServiceLifecycle
import Store
import Wire

/// MediaEdgeConfiguration is what `serve` tells the media edge.
package struct MediaEdgeConfiguration: Sendable {
    /// The one UDP port every viewer's ICE, DTLS and SRTP use.
    package var listenHost = "127.0.0.1"
    package var listenPort = 8189
    /// Addresses put in answers as host candidates instead of the listening one (NAT, 0.0.0.0).
    package var announce: [String] = []
    /// Where ingest sockets listen (ffmpeg sends RTP there).
    package var ingestHost = "127.0.0.1"
    /// The DTLS certificate file (created on first start).
    package var certificatePath: String
    /// How often the Store's stream list is read and viewer rows written.
    package var syncInterval: Duration = .seconds(2)
    /// Viewers still connecting, per stream and per client (see `MediaCore.Configuration`).
    package var maxPendingPerStream = 200
    package var maxPendingPerSource = 16

    package init(certificatePath: String) {
        self.certificatePath = certificatePath
    }
}

/// MediaEngine is the media edge's state on its event loop: the core, the media socket and
/// the ingest sockets. Everything here runs on `loop`.
final class MediaEngine {
    let core: MediaCore
    let loop: any EventLoop
    let logger: Logger
    var mediaChannel: (any Channel)?
    /// Where media goes out (the same port NIO reads).
    var mediaSocket: UDPSocket?
    var ingestChannels: [String: [any Channel]] = [:]
    var ticks = 0
    let batcher = DatagramBatcher()
    let sender = DatagramSender()

    init(core: MediaCore, loop: any EventLoop, logger: Logger) {
        self.core = core
        self.loop = loop
        self.logger = logger
    }

    static func now() -> MediaTime {
        MediaTime(nanos: NIODeadline.now().uptimeNanoseconds, wall: Date().timeIntervalSince1970)
    }

    /// Sends what the core queued.
    func flush() {
        guard !core.outbox.isEmpty else { return }
        defer { core.outbox.removeAll(keepingCapacity: true) }
        guard let socket = mediaSocket else { return }
        batcher.plan(core.outbox, maxSegments: socket.segmentation ? DatagramBatcher.maxSegments : 1)
        core.counters.sendErrors += sender.send(batcher, on: socket)
        batcher.clear()
    }
}

/// MediaEdge is the handle the HTTP layer holds: WHEP offers in, answers out, viewers ended.
package final class MediaEdge: Sendable {
    private let engine: NIOLoopBound<MediaEngine>
    package let loop: any EventLoop

    init(engine: NIOLoopBound<MediaEngine>, loop: any EventLoop) {
        self.engine = engine
        self.loop = loop
    }

    /// Answers a viewer's offer for `stream`: (viewer id, SDP answer). The offer is parsed
    /// here, on the caller's loop, not on the media loop.
    package func play(stream: String, offer text: String, token: String?, from client: IPAddress?) async throws(WHEPError)
        -> (id: String, answer: String)
    {
        let offer = MediaCore.parse(offer: text)
        let result = try? await loop.submit { [engine] () -> Result<(id: String, answer: String), WHEPError> in
            let engine = engine.value
            let result = Result { () throws(WHEPError) in
                try engine.core.addViewer(stream: stream, offer: offer, token: token, from: client, now: MediaEngine.now())
            }
            engine.flush()
            return result
        }.get()
        guard let result else { throw .internalError("media edge stopped") }
        return try result.get()
    }

    /// The stream a viewer plays and the ufrag of its offer, or nil.
    package func viewer(id: String) async -> (stream: String, remoteUfrag: String)? {
        try? await loop.submit { [engine] in
            let core = engine.value.core
            guard let stream = core.viewerStream(id: id), let ufrag = core.viewerRemoteUfrag(id: id) else { return nil }
            return (stream, ufrag)
        }.get()
    }

    /// Ends a viewer of `stream`; false if there was none.
    package func stop(viewer id: String, of stream: String) async -> Bool {
        (try? await loop.submit { [engine] in
            guard engine.value.core.viewerStream(id: id) == stream else { return false }
            let removed = engine.value.core.removeViewer(id: id)
            engine.value.flush()
            return removed
        }.get()) ?? false
    }

    /// Runs `body` on the loop with the core (tests, benchmarks, the admin view).
    package func withCore<T: Sendable>(_ body: @escaping @Sendable (MediaCore) -> T) async throws -> T {
        try await loop.submit { [engine] in body(engine.value.core) }.get()
    }
}

/// MediaService runs the media edge: the media socket, one ingest socket per registered
/// track, the timers, and the sync with the Store (streams in, viewer rows out).
package final class MediaService: Service {
    package let edge: MediaEdge
    private let engine: NIOLoopBound<MediaEngine>
    private let configuration: MediaEdgeConfiguration
    private let database: SwitchboardDatabase
    private let logger: Logger
    private let onListening: @Sendable (String) -> Void

    package static func make(configuration: MediaEdgeConfiguration, database: SwitchboardDatabase, logger: Logger,
                             onListening: @escaping @Sendable (String) -> Void = { _ in }) async throws -> MediaService {
        let certificate = try DTLSCertificate.loadOrCreate(file: configuration.certificatePath)
        let context = try DTLSContext(certificate: certificate, srtpProfiles: [.aeadAes128Gcm, .aes128CmHmacSha1_80])
        let loop = MultiThreadedEventLoopGroup.singleton.next()
        var candidates: [TransportAddress] = []
        for host in configuration.announce.isEmpty ? [configuration.listenHost] : configuration.announce {
            guard let ip = IPAddress(host) else { throw MediaServiceError("not an IP address: \(host)") }
            candidates.append(TransportAddress(ip: ip, port: UInt16(configuration.listenPort)))
        }
        let engine = try await loop.submit { [candidates] in
            var coreConfiguration = MediaCore.Configuration(candidates: candidates)
            coreConfiguration.maxPendingPerStream = configuration.maxPendingPerStream
            coreConfiguration.maxPendingPerSource = configuration.maxPendingPerSource
            let core = MediaCore(configuration: coreConfiguration, context: context)
            return NIOLoopBound(MediaEngine(core: core, loop: loop, logger: logger), eventLoop: loop)
        }.get()
        return MediaService(engine: engine, loop: loop, configuration: configuration, database: database, logger: logger,
                            onListening: onListening)
    }

    private init(engine: NIOLoopBound<MediaEngine>, loop: any EventLoop, configuration: MediaEdgeConfiguration,
                 database: SwitchboardDatabase, logger: Logger, onListening: @escaping @Sendable (String) -> Void) {
        self.engine = engine
        edge = MediaEdge(engine: engine, loop: loop)
        self.configuration = configuration
        self.database = database
        self.logger = logger
        self.onListening = onListening
    }

    package func run() async throws {
        let loop = edge.loop
        let engine = self.engine
        let channel = try await Self.bindMedia(engine: engine, loop: loop, host: configuration.listenHost,
                                               port: configuration.listenPort, segmentation: true)
        let (fingerprint, segmentation) = try await loop.submit {
            (engine.value.core.context.certificate.fingerprint, engine.value.mediaSocket?.segmentation ?? false)
        }.get()
        logger.info("media socket", metadata: ["udp_segmentation_offload": "\(segmentation)"])
        let crypto = SRTPSession.cryptoBackend
        if crypto.builtIn.isEmpty {
            logger.info("SRTP crypto", metadata: ["openssl": "\(crypto.openSSL.joined(separator: ","))"])
        } else {
            // Still correct, through libsrtp2's own ciphers (NSS in Debian's build), only slower.
            logger.warning("SRTP crypto: libsrtp2 refused OpenSSL for some ciphers",
                           metadata: ["openssl": "\(crypto.openSSL.joined(separator: ","))", "built_in": "\(crypto.builtIn.joined(separator: "; "))"])
        }
        onListening("media      udp://\(channel.localAddress.flatMap(TransportAddress.init)?.description ?? "?") "
            + "(WHEP ICE-lite/DTLS/SRTP; certificate sha-256 \(fingerprint.prefix(23))…)")

        try await database.recordViewers(live: [], ended: [])  // live rows a previous run left ended with it
        let metrics = MediaMetrics(loop: loop)
        let ticker = loop.scheduleRepeatedTask(initialDelay: .milliseconds(20), delay: .milliseconds(20)) { _ in
            let engine = engine.value
            engine.core.tick(now: MediaEngine.now())
            engine.flush()
            engine.ticks += 1
            if engine.ticks % 25 == 0 { metrics.update(from: engine.core) }  // twice a second
        }
        let configuration = self.configuration
        let database = self.database
        let logger = self.logger
        let keeper = Task {
            await Self.keepListening(first: channel, engine: engine, loop: loop, host: configuration.listenHost,
                                     port: channel.localAddress?.port ?? configuration.listenPort, logger: logger)
        }
        let syncer = Task {
            while !Task.isCancelled {
                await Self.sync(engine: engine, loop: loop, database: database, configuration: configuration,
                                logger: logger, metrics: metrics)
                try? await Task.sleep(for: configuration.syncInterval)
            }
        }

        let (stop, stopContinuation) = AsyncStream.makeStream(of: Void.self)
        await withGracefulShutdownHandler {
            for await _ in stop { break }
        } onGracefulShutdown: {
            stopContinuation.yield()
        }
        syncer.cancel()
        keeper.cancel()  // it wakes when the media channel closes, below
        _ = await syncer.result
        ticker.cancel()
        let records = try? await loop.submit {
            let engine = engine.value
            for id in Array(engine.core.viewers.keys) { engine.core.removeViewer(id: id, reason: "shutdown") }
            engine.flush()
            metrics.update(from: engine.core)
            return engine.core.takeRecords()
        }.get()
        if let records { try? await database.recordViewers(live: records.live, ended: records.ended) }
        let channels = (try? await loop.submit { engine.value.ingestChannels.values.flatMap { $0 } }.get()) ?? []
        for ingest in channels { try? await ingest.close() }
        let media = try? await loop.submit { engine.value.mediaChannel }.get()
        try? await media?.close()
        _ = await keeper.result
        logger.info("media edge stopped")
    }

    /// Binds the media port: the socket the edge writes, and NIO's channel that reads it.
    private static func bindMedia(engine: NIOLoopBound<MediaEngine>, loop: any EventLoop, host: String, port: Int,
                                  segmentation: Bool) async throws -> any Channel
    {
        // A large send buffer: a keyframe to many viewers is a burst.
        let socket = try UDPSocket(host: host, port: port, sendBuffer: 4 << 20, segmentation: segmentation)
        let channel = try await DatagramBootstrap(group: loop)
            .channelOption(.recvAllocator, value: FixedSizeRecvByteBufferAllocator(capacity: 32 * 2048))
            .channelOption(.datagramVectorReadMessageCount, value: 32)
            .channelInitializer { channel in
                channel.eventLoop.makeCompletedFuture {
                    try channel.pipeline.syncOperations.addHandlers(
                        MediaSocketHandler(engine: engine.value), UDPSocketCloser(socket: socket))
                }
            }
            .withBoundSocket(socket.handOverToNIO()).get()
        try await loop.submit {
            engine.value.mediaSocket = socket
            engine.value.mediaChannel = channel
        }.get()
        return channel
    }

    /// NIO closes the channel after a read error it does not expect. Viewers must not lose
    /// the edge over that: the port is bound again (with the offload setting it had), until
    /// shutdown.
    private static func keepListening(first: any Channel, engine: NIOLoopBound<MediaEngine>, loop: any EventLoop,
                                      host: String, port: Int, logger: Logger) async {
        var channel = first
        while !Task.isCancelled {
            try? await channel.closeFuture.get()
            let segmentation = (try? await loop.submit {
                defer {  // its writes stopped as NIO closed it (UDPSocketCloser)
                    engine.value.mediaSocket = nil
                    engine.value.mediaChannel = nil
                }
                return engine.value.mediaSocket?.segmentation ?? false
            }.get()) ?? false
            guard !Task.isCancelled else { return }
            logger.error("media socket closed after an error; listening again", metadata: ["port": "\(port)"])
            while !Task.isCancelled {
                do {
                    channel = try await bindMedia(engine: engine, loop: loop, host: host, port: port, segmentation: segmentation)
                    break
                } catch {
                    logger.error("cannot listen for media again", metadata: ["port": "\(port)", "error": "\(error)"])
                    try? await Task.sleep(for: .seconds(1))
                }
            }
        }
    }

    /// Streams from the Store into the core (opening and closing ingest sockets), viewer
    /// rows from the core into the Store, counters into metrics.
    private static func sync(engine: NIOLoopBound<MediaEngine>, loop: any EventLoop, database: SwitchboardDatabase,
                             configuration: MediaEdgeConfiguration, logger: Logger, metrics: MediaMetrics) async {
        do {
            let streams: [MediaStream] = try await database.streams()
            let change = try await loop.submit {
                let engine = engine.value
                let change = engine.core.setStreams(streams)
                var closing: [any Channel] = []
                for name in change.closed { closing += engine.ingestChannels.removeValue(forKey: name) ?? [] }
                metrics.update(from: engine.core)
                engine.flush()
                return (opened: change.opened, closing: closing, records: engine.core.takeRecords())
            }.get()
            for channel in change.closing { try? await channel.close() }
            for stream in change.opened {
                for (kind, port) in [(IngestTrack.Kind.video, stream.videoPort), (.audio, stream.audioPort)] {
                    guard let port else { continue }
                    do {
                        let ingest = try await bindIngest(stream: stream.name, kind: kind, port: port, engine: engine,
                                                          loop: loop, host: configuration.ingestHost)
                        try await loop.submit { engine.value.ingestChannels[stream.name, default: []].append(ingest) }.get()
                        logger.info("ingest listening", metadata: [
                            "stream": "\(stream.name)", "kind": "\(kind.rawValue)", "address": "\(configuration.ingestHost):\(port)"])
                    } catch {
                        logger.error("cannot listen for ingest", metadata: [
                            "stream": "\(stream.name)", "port": "\(port)", "error": "\(error)"])
                    }
                }
            }
            try await database.recordViewers(live: change.records.live, ended: change.records.ended)
        } catch {
            logger.warning("media edge sync failed", metadata: ["error": "\(error)"])
        }
    }

    private static func bindIngest(stream: String, kind: IngestTrack.Kind, port: Int, engine: NIOLoopBound<MediaEngine>,
                                   loop: any EventLoop, host: String) async throws -> any Channel {
        try await DatagramBootstrap(group: loop)
            .channelOption(.socketOption(.so_reuseaddr), value: 1)
            .channelOption(.socketOption(.so_rcvbuf), value: 1 << 20)
            .channelOption(.recvAllocator, value: FixedSizeRecvByteBufferAllocator(capacity: 16 * 2048))
            .channelOption(.datagramVectorReadMessageCount, value: 16)
            .channelInitializer { channel in
                channel.eventLoop.makeCompletedFuture {
                    try channel.pipeline.syncOperations.addHandler(
                        IngestHandler(engine: engine.value, stream: stream, kind: kind))
                }
            }
            .bind(host: host, port: port).get()
    }
}

struct MediaServiceError: Error, CustomStringConvertible {
    var description: String
    init(_ description: String) { self.description = description }
}

/// MediaSocketHandler reads the media port: every datagram goes to the core.
final class MediaSocketHandler: ChannelInboundHandler {
    typealias InboundIn = AddressedEnvelope<ByteBuffer>
    private let engine: MediaEngine

    init(engine: MediaEngine) { self.engine = engine }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        let envelope = unwrapInboundIn(data)
        guard let address = TransportAddress(envelope.remoteAddress) else { return }
        engine.core.receive(envelope.data, from: address, now: MediaEngine.now())
    }

    func channelReadComplete(context: ChannelHandlerContext) { engine.flush() }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        engine.logger.trace("media socket error", metadata: ["error": "\(error)"])
    }
}

/// IngestHandler reads one stream track's RTP from ffmpeg or a camera.
final class IngestHandler: ChannelInboundHandler {
    typealias InboundIn = AddressedEnvelope<ByteBuffer>
    private let engine: MediaEngine
    private let stream: String
    private let kind: IngestTrack.Kind

    init(engine: MediaEngine, stream: String, kind: IngestTrack.Kind) {
        self.engine = engine
        self.stream = stream
        self.kind = kind
    }

    /// What this read of the socket gave so far; forwarded as one burst when the read ends.
    private var pending: [(datagram: ByteBuffer, source: TransportAddress)] = []

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        let envelope = unwrapInboundIn(data)
        guard let source = TransportAddress(envelope.remoteAddress) else { return }
        pending.append((envelope.data, source))
    }

    func channelReadComplete(context: ChannelHandlerContext) {
        forwardPending()
    }

    /// A read that ends in an error closes the channel without a read-complete: what it
    /// gave before the error still goes out.
    func channelInactive(context: ChannelHandlerContext) {
        forwardPending()
        context.fireChannelInactive()
    }

    private func forwardPending() {
        guard !pending.isEmpty else { return }
        engine.core.ingest(stream: stream, kind: kind, datagrams: pending, now: MediaEngine.now())
        pending.removeAll(keepingCapacity: true)
        engine.flush()
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        engine.logger.trace("ingest socket error", metadata: ["error": "\(error)"])
    }
}

/// MediaMetrics publishes the core's counters through swift-metrics (at each sync).
final class MediaMetrics: Sendable {
    private let viewers = Gauge(label: "switchboard_media_viewers")
    private let packets = Counter(label: "switchboard_media_packets_sent_total")
    private let bytes = Counter(label: "switchboard_media_bytes_sent_total")
    private let nacks = Counter(label: "switchboard_media_nacks_total")
    private let retransmitted = Counter(label: "switchboard_media_retransmitted_total")
    private let plis = Counter(label: "switchboard_media_plis_total")
    private let keyframes = Counter(label: "switchboard_media_keyframes_sent_total")
    private let started = Counter(label: "switchboard_media_viewers_started_total")
    private let badIntegrity = Counter(label: "switchboard_media_dropped_total", dimensions: [("reason", "stun_integrity")])
    private let unknownUser = Counter(label: "switchboard_media_dropped_total", dimensions: [("reason", "stun_unknown_user")])
    private let stunMalformed = Counter(label: "switchboard_media_dropped_total", dimensions: [("reason", "stun_malformed")])
    private let unknownSource = Counter(label: "switchboard_media_dropped_total", dimensions: [("reason", "unknown_source")])
    private let malformed = Counter(label: "switchboard_media_dropped_total", dimensions: [("reason", "malformed")])
    private let srtcp = Counter(label: "switchboard_media_dropped_total", dimensions: [("reason", "srtcp")])
    private let sendErrors = Counter(label: "switchboard_media_dropped_total", dimensions: [("reason", "send_error")])
    private let ingestMalformed = Counter(label: "switchboard_media_dropped_total", dimensions: [("reason", "ingest_malformed")])
    private let ingestSource = Counter(label: "switchboard_media_dropped_total", dimensions: [("reason", "ingest_source")])
    private let frameTooLarge = Counter(label: "switchboard_media_dropped_total", dimensions: [("reason", "frame_too_large")])
    private let late = Counter(label: "switchboard_media_dropped_total", dimensions: [("reason", "late")])
    private let duplicate = Counter(label: "switchboard_media_dropped_total", dimensions: [("reason", "duplicate")])
    private let streamBusy = Counter(label: "switchboard_media_offers_refused_total", dimensions: [("reason", "stream_busy")])
    private let sourceBusy = Counter(label: "switchboard_media_offers_refused_total", dimensions: [("reason", "source_busy")])
    private let neverConnected = Counter(label: "switchboard_media_viewers_never_connected_total")
    private let fingerprint = Counter(label: "switchboard_media_dtls_failures_total", dimensions: [("reason", "fingerprint")])
    private let dtls = Counter(label: "switchboard_media_dtls_failures_total", dimensions: [("reason", "handshake")])
    /// What the last update published; the media loop's alone (NIOLoopBoundBox checks it).
    private let published: NIOLoopBoundBox<(counters: MediaCore.Counters, streams: Set<String>)>

    init(loop: any EventLoop) {
        published = .makeBoxSendingValue((MediaCore.Counters(), []), eventLoop: loop)
    }

    func update(from core: MediaCore) {
        let now = core.counters
        let last = published.value.counters
        let lastPerStream = published.value.streams
        viewers.record(core.viewerCount)
        let perStream = core.viewerCounts()
        for (name, count) in perStream {
            Gauge(label: "switchboard_media_stream_viewers", dimensions: [("stream", name)]).record(count)
        }
        for gone in lastPerStream.subtracting(perStream.keys) {
            Gauge(label: "switchboard_media_stream_viewers", dimensions: [("stream", gone)]).record(0)
        }
        packets.increment(by: now.packetsSent - last.packetsSent)
        bytes.increment(by: now.bytesSent - last.bytesSent)
        nacks.increment(by: now.nacks - last.nacks)
        retransmitted.increment(by: now.retransmitted - last.retransmitted)
        plis.increment(by: now.plis - last.plis)
        keyframes.increment(by: now.keyframesSent - last.keyframesSent)
        started.increment(by: now.viewersStarted - last.viewersStarted)
        badIntegrity.increment(by: now.stunBadIntegrity - last.stunBadIntegrity)
        unknownUser.increment(by: now.stunUnknownUser - last.stunUnknownUser)
        stunMalformed.increment(by: now.stunMalformed - last.stunMalformed)
        unknownSource.increment(by: now.unknownSource - last.unknownSource)
        malformed.increment(by: now.malformed - last.malformed)
        srtcp.increment(by: now.srtcpFailures - last.srtcpFailures)
        sendErrors.increment(by: now.sendErrors - last.sendErrors)
        ingestMalformed.increment(by: now.ingest.malformed - last.ingest.malformed)
        ingestSource.increment(by: now.ingest.foreignSource - last.ingest.foreignSource)
        frameTooLarge.increment(by: now.ingest.oversizedFrame - last.ingest.oversizedFrame)
        late.increment(by: now.latePackets + now.ingest.late - last.latePackets - last.ingest.late)
        duplicate.increment(by: now.ingest.duplicate - last.ingest.duplicate)
        streamBusy.increment(by: now.refusedStreamBusy - last.refusedStreamBusy)
        sourceBusy.increment(by: now.refusedSourceBusy - last.refusedSourceBusy)
        neverConnected.increment(by: now.viewersNeverConnected - last.viewersNeverConnected)
        fingerprint.increment(by: now.fingerprintMismatches - last.fingerprintMismatches)
        dtls.increment(by: now.dtlsFailures - last.dtlsFailures)
        published.value = (now, Set(perStream.keys))
    }
}
