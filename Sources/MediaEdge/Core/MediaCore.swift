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

        init(config: MediaStream) {
            self.config = config
            video = config.videoPort == nil ? nil : IngestTrack(kind: .video, pinnedSource: config.source)
            audio = config.audioPort == nil ? nil : IngestTrack(kind: .audio, pinnedSource: config.source)
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
    private var byUfrag: [String: Viewer] = [:]
    private var byAddress: [TransportAddress: Viewer] = [:]
    private var pendingBySource: SourceCounts
    private var ended: [(record: ViewerRecord, reason: String)] = []

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
            streams[name] = StreamState(config: config)
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
        if drops != IngestTrack.Drops() {
            counters.ingest.malformed += drops.malformed
            counters.ingest.foreignSource += drops.foreignSource
            counters.ingest.oversizedFrame += drops.oversizedFrame
        }
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

    private func transmit(_ send: OutboundTrack.Send, on track: inout OutboundTrack, viewer: Viewer, now: MediaTime) {
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
    private func send(_ bytes: ByteBuffer, to address: TransportAddress) {
        outbox.append(OutgoingDatagram(bytes: bytes, to: address, name: SocketName(address)))
    }

    // MARK: - Viewers

    /// What a stream can send right now, or why it cannot be played.
    package func source(stream name: String, token: String?) throws(WHEPError) -> WHEPAnswer.Source {
        guard let state = streams[name] else { throw .unknownStream(name) }
        guard state.config.admits(token: token) else { throw .unauthorized }
        if let video = state.video {
            guard let profile = video.profile, !video.keyframe.isEmpty else { throw .noData(name) }
            return WHEPAnswer.Source(name: name, video: profile, audio: state.audio != nil)
        }
        guard state.audio?.hasData == true else { throw .noData(name) }
        return WHEPAnswer.Source(name: name, video: nil, audio: true)
    }

    /// A WHEP offer, parsed: callers do it before they hand the offer to the media loop.
    package static func parse(offer text: String) -> Result<SessionDescription, WHEPError> {
        Result { () throws(SessionDescription.ParseError) in try SessionDescription(parsing: text) }
            .mapError { .badOffer($0.description) }
    }

    /// Answers a WHEP offer from `client` (the POST's address): a new viewer, waiting for its
    /// ICE checks.
    package func addViewer(stream name: String, offer text: String, token: String?, from client: IPAddress? = nil,
                           now: MediaTime) throws(WHEPError) -> (id: String, answer: String)
    {
        try addViewer(stream: name, offer: Self.parse(offer: text), token: token, from: client, now: now)
    }

    /// As above, with the offer parsed off the media loop; a parse error is reported after the
    /// stream's own refusals (unknown, unauthorized, busy), as if the core had parsed it.
    package func addViewer(stream name: String, offer parsed: Result<SessionDescription, WHEPError>, token: String?,
                           from client: IPAddress? = nil, now: MediaTime) throws(WHEPError) -> (id: String, answer: String)
    {
        let source = try source(stream: name, token: token)
        let client = client.map(ClientSource.init)
        if let client, pendingBySource.isFull(client) {
            counters.refusedSourceBusy += 1
            throw .sourceBusy
        }
        if streams[name]!.pending >= configuration.maxPendingPerStream {
            counters.refusedStreamBusy += 1
            throw .streamBusy(name)
        }
        let offer = try parsed.get()
        var generator = SystemRandomNumberGenerator()
        let id = Self.randomString(22, &generator)
        var ufrag = Self.randomString(8, &generator)
        while byUfrag[ufrag] != nil { ufrag = Self.randomString(8, &generator) }
        let password = Self.randomString(24, &generator)
        var ssrcs = Set<UInt32>()
        while ssrcs.count < 3 { ssrcs.insert(.random(in: 1...UInt32.max, using: &generator)) }
        let ssrcList = Array(ssrcs)
        let local = WHEPAnswer.Local(
            ufrag: ufrag, password: password, fingerprint: context.certificate.fingerprint,
            candidates: configuration.candidates, sessionID: .random(in: 1...(UInt64.max >> 2), using: &generator),
            videoSSRC: ssrcList[0], rtxSSRC: ssrcList[1], audioSSRC: ssrcList[2], cname: "switchboard-\(id.prefix(8))")
        let answer: (sdp: String, negotiated: WHEPAnswer.Negotiated)
        do {
            answer = try WHEPAnswer.answer(offer: offer, source: source, local: local)
        } catch {
            switch error {
            case .badOffer(let text): throw .badOffer(text)
            case .noCommonCodec(let text): throw .noCommonCodec(text)
            }
        }
        let dtls: DTLSEndpoint
        do {
            // The certificate is checked against the offer once DTLS is up (`connected`), so
            // that a mismatch is counted as one.
            dtls = try DTLSEndpoint(context: context, role: answer.negotiated.dtlsClient ? .client : .server,
                                    remoteFingerprints: nil)
        } catch {
            throw .internalError("DTLS: \(error)")
        }
        let viewer = Viewer(id: id, stream: name, localUfrag: ufrag, localPassword: password,
                            negotiated: answer.negotiated, local: local, dtls: dtls, source: client, nowNanos: now.nanos,
                            wallSeconds: now.wall)
        viewers[id] = viewer
        byUfrag[ufrag] = viewer
        streams[name]!.viewers.append(viewer)
        streams[name]!.pending += 1
        if let client { _ = pendingBySource.acquire(client) }  // room checked above
        return (id, answer.sdp)
    }

    /// The viewer plays or ends: it no longer counts against the pending caps.
    private func leavePending(_ viewer: Viewer) {
        guard viewer.countedPending else { return }
        viewer.countedPending = false
        streams[viewer.stream]?.pending -= 1
        if let source = viewer.source { pendingBySource.release(source) }
    }

    /// The viewer's stream, or nil if there is no such viewer.
    package func viewerStream(id: String) -> String? { viewers[id]?.stream }

    /// The ICE ufrag the viewer's offer used (a trickle fragment must use it too).
    package func viewerRemoteUfrag(id: String) -> String? { viewers[id]?.negotiated.remoteUfrag }

    /// Ends a viewer (WHEP DELETE); false if it did not exist.
    @discardableResult
    package func removeViewer(id: String, reason: String = "deleted") -> Bool {
        guard let viewer = viewers[id] else { return false }
        if viewer.state == .playing, let selected = viewer.selected {
            for datagram in viewer.dtls.close() { send(ByteBuffer(bytes: datagram), to: selected) }
        }
        remove(viewer, reason: reason)
        return true
    }

    private func remove(_ viewer: Viewer, reason: String) {
        guard viewers.removeValue(forKey: viewer.id) != nil else { return }
        leavePending(viewer)
        byUfrag.removeValue(forKey: viewer.localUfrag)
        for address in viewer.addresses where byAddress[address] === viewer { byAddress.removeValue(forKey: address) }
        streams[viewer.stream]?.viewers.removeAll { $0 === viewer }
        // The history is for viewers that got as far as DTLS: an offer that never did ICE
        // (a flood of POSTs, a player that gave up) is only counted.
        if viewer.reachedDTLS {
            ended.append((viewer.record, reason))
        } else {
            counters.viewersNeverConnected += 1
        }
    }

    /// Live viewers and those that ended since the last call, for the Store.
    package func takeRecords() -> (live: [ViewerRecord], ended: [(record: ViewerRecord, reason: String)]) {
        defer { ended = [] }
        return (viewers.values.map(\.record), ended)
    }

    package var viewerCount: Int { viewers.count }

    package func viewerCounts() -> [String: Int] {
        streams.mapValues { $0.viewers.count }
    }

    // MARK: - The media socket

    /// One datagram from the media port (RFC 7983: STUN, DTLS, SRTP/SRTCP share it).
    package func receive(_ datagram: ByteBuffer, from address: TransportAddress, now: MediaTime) {
        guard let first = datagram.getInteger(at: datagram.readerIndex, as: UInt8.self) else {
            counters.malformed += 1
            return
        }
        switch PacketKind(firstByte: first) {
        case .stun: handleSTUN(datagram, from: address, now: now)
        case .dtls: handleDTLS(datagram, from: address, now: now)
        case .rtpOrRTCP: handleSRTCP(datagram, from: address, now: now)
        default: counters.malformed += 1
        }
    }

    private func handleSTUN(_ datagram: ByteBuffer, from address: TransportAddress, now: MediaTime) {
        guard let message = try? STUNMessage(datagram: datagram) else {
            counters.stunMalformed += 1
            return
        }
        // Only Binding requests are for an ICE-lite agent; responses and indications are not.
        guard message.type == STUNMessageType(method: .binding, class: .request) else {
            counters.stunMalformed += 1
            return
        }
        guard let username = message[.username].map({ String(decoding: $0, as: UTF8.self) }),
              let colon = username.firstIndex(of: ":"),
              let viewer = byUfrag[String(username[..<colon])],
              username[username.index(after: colon)...] == viewer.negotiated.remoteUfrag[...] else {
            counters.stunUnknownUser += 1
            return
        }
        guard message.verifyIntegrity(key: viewer.localKey), message.fingerprintIsValid != false else {
            counters.stunBadIntegrity += 1
            return
        }
        let response = STUNMessage.bindingSuccess(to: message, from: address)
        send(ByteBuffer(bytes: response.encoded(integrityKey: viewer.localKey, fingerprint: true)), to: address)
        viewer.lastConsentNanos = now.nanos
        if !viewer.addresses.contains(address) {
            viewer.addresses.insert(address)
            byAddress[address] = viewer
        }
        if message.contains(.useCandidate) || viewer.selected == nil { viewer.selected = address }
        if viewer.state == .checking {
            viewer.state = .handshaking
            viewer.reachedDTLS = true
            if viewer.negotiated.dtlsClient {
                for datagram in viewer.dtls.start().datagrams { send(ByteBuffer(bytes: datagram), to: address) }
                scheduleDTLSTimer(viewer, now: now)
            }
        }
    }

    private func handleDTLS(_ datagram: ByteBuffer, from address: TransportAddress, now: MediaTime) {
        guard let viewer = byAddress[address], viewer.state == .handshaking || viewer.state == .playing else {
            counters.unknownSource += 1
            return
        }
        // Application data has no use here (SRTP carries the media): it is dropped.
        let output = datagram.withUnsafeReadableBytes { viewer.dtls.receive($0) }
        for reply in output.datagrams { send(ByteBuffer(bytes: reply), to: address) }
        switch viewer.dtls.state {
        case .connected where viewer.state == .handshaking:
            connected(viewer, now: now)
        case .failed:
            counters.dtlsFailures += 1
            fail(viewer, "dtls-failed")
        case .closed:
            remove(viewer, reason: "closed")
        default:
            scheduleDTLSTimer(viewer, now: now)
        }
    }

    /// DTLS is up: check the certificate against the offer, key SRTP, start the tracks.
    private func connected(_ viewer: Viewer, now: MediaTime) {
        guard let fingerprint = viewer.dtls.remoteFingerprint(), fingerprint.hex == viewer.negotiated.remoteFingerprint else {
            counters.fingerprintMismatches += 1
            fail(viewer, "fingerprint-mismatch")
            return
        }
        guard let keys = try? viewer.dtls.srtpKeyingMaterial() else {
            counters.dtlsFailures += 1
            fail(viewer, "srtp-failed")
            return
        }
        play(viewer, keys: keys, now: now)
    }

    /// SRTP keyed with what DTLS agreed on, and the tracks started (the cached keyframe goes
    /// out at once). Internal, not private: the media fuzz rig keys most of its viewers here
    /// directly, since a real handshake per viewer would be most of an input's time.
    func play(_ viewer: Viewer, keys: SRTPKeyingMaterial, now: MediaTime) {
        do {
            let weAreClient = viewer.negotiated.dtlsClient
            viewer.srtpOut = try SRTPSession(
                profile: keys.profile, key: weAreClient ? keys.clientKey : keys.serverKey,
                salt: weAreClient ? keys.clientSalt : keys.serverSalt, direction: .outbound)
            viewer.srtpIn = try SRTPSession(
                profile: keys.profile, key: weAreClient ? keys.serverKey : keys.clientKey,
                salt: weAreClient ? keys.serverSalt : keys.clientSalt, direction: .inbound)
        } catch {
            counters.dtlsFailures += 1
            fail(viewer, "srtp-failed")
            return
        }
        viewer.state = .playing
        leavePending(viewer)
        viewer.nextDTLSTimerNanos = nil
        viewer.nextReportNanos = now.nanos + configuration.reportIntervalNanos
        counters.viewersStarted += 1
        guard viewer.selected != nil, let stream = streams[viewer.stream] else { return }
        if var track = viewer.video, let video = stream.video {
            let sends = track.join(track: video, nowNanos: now.nanos)
            if !sends.isEmpty { counters.keyframesSent += 1 }
            for send in sends { transmit(send, on: &track, viewer: viewer, now: now) }
            viewer.video = track
        }
        if var track = viewer.audio, let audio = stream.audio {
            _ = track.join(track: audio, nowNanos: now.nanos)
            viewer.audio = track
        }
    }

    /// No media for this viewer; the next tick removes it with `reason`.
    private func fail(_ viewer: Viewer, _ reason: String) {
        viewer.state = .failed
        viewer.failure = reason
    }

    private func scheduleDTLSTimer(_ viewer: Viewer, now: MediaTime) {
        guard viewer.state == .handshaking, let timeout = viewer.dtls.nextTimeout else {
            viewer.nextDTLSTimerNanos = nil
            return
        }
        let (seconds, attoseconds) = timeout.components
        viewer.nextDTLSTimerNanos = now.nanos + UInt64(seconds) * 1_000_000_000 + UInt64(attoseconds / 1_000_000_000)
    }

    private func handleSRTCP(_ datagram: ByteBuffer, from address: TransportAddress, now: MediaTime) {
        guard let viewer = byAddress[address], viewer.state == .playing, let srtpIn = viewer.srtpIn else {
            counters.unknownSource += 1
            return
        }
        guard RTPPacket.isRTCP(datagram) else {
            counters.malformed += 1  // a sendonly edge takes no RTP from viewers
            return
        }
        let packets: [RTCPPacket]
        do {
            let plain = try srtpIn.unprotect(srtcp: Array(datagram.readableBytesView))
            packets = try RTCPPacket.parseCompound(ByteBuffer(bytes: plain))
        } catch {
            counters.srtcpFailures += 1
            return
        }
        for packet in packets { handleRTCP(packet, viewer: viewer, now: now) }
    }

    private func handleRTCP(_ packet: RTCPPacket, viewer: Viewer, now: MediaTime) {
        switch packet {
        case .receiverReport(_, let reports), .senderReport(_, _, _, _, _, let reports):
            // The viewer's stats are its video's, or its audio's when it has no video.
            let reported = viewer.video?.ssrc ?? viewer.audio?.ssrc
            for report in reports where report.ssrc == reported {
                viewer.packetsLost = Int(report.cumulativeLost)
                viewer.jitter = Int(report.jitter)
            }
        case .nack(_, let mediaSSRC, let lost):
            viewer.nacks += 1
            counters.nacks += 1
            resend(lost.prefix(64), ssrc: mediaSSRC, viewer: viewer, now: now)
        case .pictureLossIndication(_, let mediaSSRC):
            guard mediaSSRC == viewer.video?.ssrc else { return }
            askKeyframe(viewer, now: now)
        case .fullIntraRequest(_, let requests):
            guard requests.contains(where: { $0.ssrc == viewer.video?.ssrc }) else { return }
            askKeyframe(viewer, now: now)
        default:
            break
        }
    }

    private func askKeyframe(_ viewer: Viewer, now: MediaTime) {
        viewer.plis += 1
        counters.plis += 1
        guard var track = viewer.video, now.nanos >= track.lastKeyframeNanos + configuration.keyframeIntervalNanos else { return }
        track.keyframeWanted = true
        viewer.video = track
    }

    private func resend(_ lost: ArraySlice<UInt16>, ssrc: UInt32, viewer: Viewer, now: MediaTime) {
        guard let selected = viewer.selected, let stream = streams[viewer.stream] else { return }
        let isVideo = ssrc == viewer.video?.ssrc
        guard let track = isVideo ? viewer.video : (ssrc == viewer.audio?.ssrc ? viewer.audio : nil),
              let ingest = isVideo ? stream.video : stream.audio else { return }
        for sequence in lost {
            guard let send = track.lookup(sequence, in: ingest) else { continue }
            let bytes: ByteBuffer?
            if isVideo, let rtxType = viewer.rtxPayloadType {
                // RFC 4588 §4: the original sequence number, then the original payload.
                var payload = ByteBuffer()
                payload.writeInteger(send.sequence)
                var original = send.payload
                payload.writeBuffer(&original)
                let rtx = OutboundTrack.Send(sequence: viewer.rtxSequence, timestamp: send.timestamp, marker: send.marker,
                                             payload: payload)
                viewer.rtxSequence &+= 1
                bytes = viewer.protect(rtx, payloadType: rtxType, ssrc: viewer.rtxSSRC, allocator: allocator)
            } else {
                bytes = viewer.protect(send, payloadType: track.payloadType, ssrc: track.ssrc, allocator: allocator)
            }
            guard let bytes else { continue }
            viewer.retransmitted += 1
            viewer.bytesSent += bytes.readableBytes
            counters.retransmitted += 1
            counters.bytesSent += bytes.readableBytes
            self.send(bytes, to: selected)
        }
    }

    // MARK: - Time

    /// Timers: DTLS retransmissions, Sender Reports, consent and setup timeouts.
    package func tick(now: MediaTime) {
        for viewer in Array(viewers.values) {
            if viewer.state == .failed {
                remove(viewer, reason: viewer.failure ?? "failed")
                continue
            }
            if viewer.state != .playing, now.nanos >= viewer.createdNanos + configuration.setupTimeoutNanos {
                remove(viewer, reason: viewer.state == .checking ? "ice-timeout" : "dtls-timeout")
                continue
            }
            if now.nanos >= viewer.lastConsentNanos + configuration.consentTimeoutNanos {
                remove(viewer, reason: "consent")
                continue
            }
            if viewer.state == .handshaking, let due = viewer.nextDTLSTimerNanos, now.nanos >= due,
               let selected = viewer.selected {
                for datagram in viewer.dtls.handleTimeout().datagrams { send(ByteBuffer(bytes: datagram), to: selected) }
                if case .failed = viewer.dtls.state { fail(viewer, "dtls-failed") }
                scheduleDTLSTimer(viewer, now: now)
            }
            if viewer.state == .playing, now.nanos >= viewer.nextReportNanos {
                viewer.nextReportNanos = now.nanos + configuration.reportIntervalNanos
                sendReports(viewer, now: now)
            }
        }
    }

    /// A Sender Report per started track plus SDES CNAME (RFC 3550 §6.4.1, §6.5.1).
    private func sendReports(_ viewer: Viewer, now: MediaTime) {
        guard let selected = viewer.selected, let srtpOut = viewer.srtpOut else { return }
        let ntp = MediaClock.ntpTimestamp(unixSeconds: now.wall)
        var packets: [RTCPPacket] = []
        var sources: [(ssrc: UInt32, cname: String)] = []
        for track in [viewer.video, viewer.audio].compactMap({ $0 }) where track.packetsSent > 0 {
            packets.append(.senderReport(ssrc: track.ssrc, ntpTime: ntp, rtpTime: track.rtpTime(nowNanos: now.nanos),
                                         packetCount: track.packetsSent, octetCount: track.octetsSent, reports: []))
            sources.append((track.ssrc, viewer.cname))
        }
        guard !packets.isEmpty else { return }
        packets.append(.sourceDescription(sources))
        var buffer = ByteBuffer()
        RTCPPacket.writeCompound(packets, to: &buffer)
        guard let protected = try? srtpOut.protect(rtcp: Array(buffer.readableBytesView)) else { return }
        send(ByteBuffer(bytes: protected), to: selected)
    }

    /// Random text from A-Z a-z 0-9: ICE credentials (RFC 8839 ice-char) and viewer IDs.
    package static func randomString(_ count: Int, _ generator: inout SystemRandomNumberGenerator) -> String {
        let alphabet = Array("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789")
        return String((0..<count).map { _ in alphabet[Int.random(in: 0..<alphabet.count, using: &generator)] })
    }
}
