import Admission
import DTLS
import Datagram
import NIOCore
import SRTP
import Store
import Wire

/// A point in time for the media state machines: monotonic nanoseconds for timers, Unix
/// seconds for what goes on the wire (NTP times in Sender Reports) and in the Store.
package struct MediaTime: Sendable {
    package var nanos: UInt64
    package var wall: Double

    package init(nanos: UInt64, wall: Double) {
        self.nanos = nanos
        self.wall = wall
    }
}

/// Why a WHEP request cannot be served; the HTTP layer maps each to a status.
package enum WHEPError: Error, Sendable, Equatable, CustomStringConvertible {
    case unknownStream(String)
    case unauthorized
    /// Registered, but nothing (or no SPS yet) has arrived: try again shortly.
    case noData(String)
    case badOffer(String)
    case noCommonCodec(String)
    case unknownViewer
    /// The stream has as many viewers still connecting as it takes (status 503).
    case streamBusy(String)
    /// This source has as many viewers still connecting as it may (status 429).
    case sourceBusy
    case internalError(String)

    package var description: String {
        switch self {
        case .unknownStream(let name): "no stream \(name)"
        case .unauthorized: "this stream needs a valid bearer token"
        case .noData(let name): "stream \(name) has not received media yet"
        case .badOffer(let text), .noCommonCodec(let text), .internalError(let text): text
        case .unknownViewer: "no such viewer"
        case .streamBusy(let name): "stream \(name) has too many viewers still connecting"
        case .sourceBusy: "too many viewers from this address are still connecting"
        }
    }
}

/// MediaCore is the media edge without sockets: streams (their ingest tracks) and viewers
/// (ICE-lite, DTLS, SRTP, RTCP). Datagrams and clock ticks go in; datagrams to send collect
/// in `outbox`. One caller at a time (the media event loop); tests drive it directly.
package final class MediaCore {
    package struct Configuration: Sendable {
        /// The host candidates in answers: the media socket's announced addresses.
        package var candidates: [TransportAddress]
        /// A viewer with no valid STUN check for this long is removed (RFC 7675 consent).
        package var consentTimeoutNanos: UInt64 = 30_000_000_000
        /// A viewer that never completes ICE + DTLS in this long is removed.
        package var setupTimeoutNanos: UInt64 = 30_000_000_000
        package var reportIntervalNanos: UInt64 = 1_000_000_000
        /// At most one keyframe resend per viewer in this time, whatever the PLI rate.
        package var keyframeIntervalNanos: UInt64 = 300_000_000
        /// Viewers that have not finished ICE + DTLS yet, per stream and per source address
        /// (IPv6 by /64): each holds a DTLS object until it plays or times out, and a POST
        /// costs the caller nothing, so these bound what a flood of offers can hold.
        package var maxPendingPerStream = 200
        package var maxPendingPerSource = 16
        /// Packets each ingest track keeps for NACK. The fuzz rig keeps few, so that its short
        /// inputs reach the end of the history.
        package var ingestHistory = IngestTrack.defaultHistorySize

        package init(candidates: [TransportAddress]) {
            self.candidates = candidates
        }
    }

    /// Drops and other events worth a metric.
    package struct Counters: Sendable, Equatable {
        package var stunBadIntegrity = 0
        package var stunUnknownUser = 0
        package var stunMalformed = 0
        package var unknownSource = 0
        package var malformed = 0
        package var srtcpFailures = 0
        package var fingerprintMismatches = 0
        package var dtlsFailures = 0
        package var viewersStarted = 0
        package var packetsSent = 0
        package var bytesSent = 0
        package var nacks = 0
        package var retransmitted = 0
        package var plis = 0
        package var keyframesSent = 0
        /// Viewers that ended before ICE succeeded (not kept in the history).
        package var viewersNeverConnected = 0
        /// Offers refused by the pending caps.
        package var refusedStreamBusy = 0
        package var refusedSourceBusy = 0
        /// Writes the kernel refused (firewall, no route, send buffer full); counted, not fatal.
        package var sendErrors = 0
        /// Reordered ingest packets from before a viewer's current live stretch, not sent to it.
        package var latePackets = 0
        /// What the ingest tracks refused or did not cache.
        package var ingest = IngestTrack.Drops()
    }

    final class StreamState {
        var config: MediaStream
        var video: IngestTrack?
        var audio: IngestTrack?
        var viewers: [Viewer] = []
        var pending = 0

        init(config: MediaStream, historySize: Int) {
            self.config = config
            video = config.videoPort == nil ? nil
                : IngestTrack(kind: .video, pinnedSource: config.source, historySize: historySize)
            audio = config.audioPort == nil ? nil
                : IngestTrack(kind: .audio, pinnedSource: config.source, historySize: historySize)
        }
    }

    package let configuration: Configuration
    let context: DTLSContext
    package var counters = Counters()
    /// Datagrams to send, in order; the owner drains it after each call. For media, `name`
    /// is made once per viewer.
    package var outbox: [OutgoingDatagram] = []
    /// Buffers for what goes out: media is written into them once, SRTP-protected in place.
    let allocator = ByteBufferAllocator()

    var streams: [String: StreamState] = [:]
    var viewers: [String: Viewer] = [:]
    var byUfrag: [String: Viewer] = [:]
    var byAddress: [TransportAddress: Viewer] = [:]
    var pendingBySource: SourceCounts
    var ended: [(record: ViewerRecord, reason: String)] = []

    package init(configuration: Configuration, context: DTLSContext) {
        self.configuration = configuration
        self.context = context
        pendingBySource = SourceCounts(limit: configuration.maxPendingPerSource)
    }

    // MARK: - Streams

    /// Makes the registry match `list`; returns the streams whose ingest sockets must open
    /// and the names whose sockets must close (a changed port is both).
    package func setStreams(_ list: [MediaStream]) -> (opened: [MediaStream], closed: [String]) {
        var opened: [MediaStream] = [], closed: [String] = []
        let wanted = Dictionary(list.map { ($0.name, $0) }, uniquingKeysWith: { a, _ in a })
        for (name, state) in streams {
            guard let config = wanted[name] else {
                removeStream(name)
                closed.append(name)
                continue
            }
            if config.videoPort != state.config.videoPort || config.audioPort != state.config.audioPort {
                removeStream(name)
                closed.append(name)
            } else {
                state.config = config  // the token or the source pin may have changed
                state.video?.pinnedSource = config.source
                state.audio?.pinnedSource = config.source
            }
        }
        for (name, config) in wanted where streams[name] == nil {
            streams[name] = StreamState(config: config, historySize: configuration.ingestHistory)
            opened.append(config)
        }
        return (opened, closed)
    }

    private func removeStream(_ name: String) {
        guard let state = streams.removeValue(forKey: name) else { return }
        for viewer in state.viewers { remove(viewer, reason: "stream-removed") }
    }

    package func streamNames() -> [String] { streams.keys.sorted() }

    /// Takes one datagram from a stream's ingest socket and sends it on to every playing viewer.
    package func ingest(stream name: String, kind: IngestTrack.Kind, datagram: ByteBuffer, from source: TransportAddress,
                        now: MediaTime) {
        ingest(stream: name, kind: kind, datagrams: CollectionOfOne((datagram: datagram, source: source)), now: now)
    }

    /// Takes the datagrams one read of a stream's ingest socket gave, in order, and sends them
    /// on to every playing viewer: viewer by viewer, each getting all of them in turn, so its
    /// SRTP and track state are fetched from memory once per burst rather than once per packet.
    /// Each viewer gets what one `ingest` per datagram would have sent it.
    package func ingest(stream name: String, kind: IngestTrack.Kind,
                        datagrams: some Collection<(datagram: ByteBuffer, source: TransportAddress)>, now: MediaTime) {
        guard let state = streams[name] else { return }
        var burst: [(packet: MediaPacket, keyframe: [MediaPacket])] = []
        burst.reserveCapacity(datagrams.count)
        let dropsBefore = (kind == .video ? state.video?.drops : state.audio?.drops) ?? .init()
        for (datagram, source) in datagrams {
            switch kind {
            case .video:
                // With each packet the keyframe cache as it stood then: what a PLI re-sends before it.
                if let packet = state.video?.receive(datagram, from: source, nowNanos: now.nanos) {
                    burst.append((packet, state.video!.keyframe))
                }
            case .audio:
                if let packet = state.audio?.receive(datagram, from: source, nowNanos: now.nanos) { burst.append((packet, [])) }
            }
        }
        let drops = ((kind == .video ? state.video?.drops : state.audio?.drops) ?? .init()) - dropsBefore
        if drops != IngestTrack.Drops() { counters.ingest += drops }
        guard !burst.isEmpty else { return }
        for viewer in state.viewers where viewer.state == .playing && viewer.selected != nil {
            for (packet, keyframe) in burst {
                // The track is changed where it lives (no copy out and back per packet).
                switch kind {
                case .video where viewer.video != nil: forward(packet, keyframe: keyframe, on: &viewer.video!, of: viewer, now: now)
                case .audio where viewer.audio != nil: forward(packet, keyframe: keyframe, on: &viewer.audio!, of: viewer, now: now)
                default: continue
                }
            }
        }
    }

    private func forward(_ packet: MediaPacket, keyframe: [MediaPacket], on track: inout OutboundTrack, of viewer: Viewer,
                         now: MediaTime) {
        let inserted: [OutboundTrack.Send], live: OutboundTrack.Send
        switch track.forward(packet, keyframe: keyframe, nowNanos: now.nanos) {
        case .waiting:
            return
        case .late:
            counters.latePackets += 1
            return
        case .send(let keyframe, let packet):
            (inserted, live) = (keyframe, packet)
        }
        if !inserted.isEmpty {
            counters.keyframesSent += 1  // a keyframe went in before the packet
            for send in inserted { transmit(send, on: &track, viewer: viewer, now: now) }
        }
        transmit(live, on: &track, viewer: viewer, now: now)
    }

    func transmit(_ send: OutboundTrack.Send, on track: inout OutboundTrack, viewer: Viewer, now: MediaTime) {
        guard let address = viewer.selected, let name = viewer.selectedName,
              let bytes = viewer.protect(send, payloadType: track.payloadType, ssrc: track.ssrc, allocator: allocator)
        else { return }
        track.sent(send, nowNanos: now.nanos)
        viewer.packetsSent += 1
        viewer.bytesSent += bytes.readableBytes
        counters.packetsSent += 1
        counters.bytesSent += bytes.readableBytes
        outbox.append(OutgoingDatagram(bytes: bytes, to: address, name: name))
    }

    /// Queues a datagram that is not per-packet media (STUN, DTLS, RTCP).
    func send(_ bytes: ByteBuffer, to address: TransportAddress) {
        outbox.append(OutgoingDatagram(bytes: bytes, to: address, name: SocketName(address)))
    }

    /// Random text from A-Z a-z 0-9: ICE credentials (RFC 8839 ice-char) and viewer IDs.
    package static func randomString(_ count: Int, _ generator: inout SystemRandomNumberGenerator) -> String {
        let alphabet = Array("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789")
        return String((0..<count).map { _ in alphabet[Int.random(in: 0..<alphabet.count, using: &generator)] })
    }
}
