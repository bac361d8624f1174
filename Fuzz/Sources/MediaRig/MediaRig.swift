import Foundation
import FuzzSupport
import NIOCore
import SRTP
import Store
import Wire
@testable import DTLS
@testable import MediaEdge

/// MediaRig is the media edge as the fuzz targets drive it: a MediaCore with a test clock, one
/// stream ("cam"), an ingest source that writes well-formed RTP, and viewers that connect as a
/// browser would (offer, ICE check, DTLS, SRTP). The DTLS handshake is real when asked for;
/// otherwise the viewer's SRTP keys are installed in the core as if DTLS had agreed on them,
/// since a handshake costs more than the rest of an input. Everything the core sends is read
/// back and checked (`drain`): the invariants a viewer relies on.
package final class MediaRig {
    /// Key generation is the slow part of a viewer: certificates are made once per process.
    static let edgeContext = try! DTLSContext(certificate: try! DTLSCertificate.generate(), srtpProfiles: [.aeadAes128Gcm, .aes128CmHmacSha1_80])
    static let viewerCertificate = try! DTLSCertificate.generate(commonName: "viewer")
    static let viewerContext = try! DTLSContext(certificate: viewerCertificate, srtpProfiles: [.aeadAes128Gcm, .aes128CmHmacSha1_80])
    static let offer: String = {
        let path = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
            .deletingLastPathComponent().deletingLastPathComponent().appendingPathComponent("docs/examples/aiortc-whep-offer.sdp")
        let text = try! String(contentsOf: path, encoding: .utf8)
        let original = "AF:A5:8D:5D:3D:67:C3:B6:BA:74:AD:67:D1:35:58:62:B4:9E:AF:F7:75:00:22:71:7F:B4:C9:F1:F4:7C:45:9E"
        precondition(text.contains(original))
        return text.replacingOccurrences(of: original, with: viewerCertificate.fingerprint)
    }()
    /// Parsed once: the edge's own parse of it is a third of a keyed join.
    static let parsedOffer = MediaCore.parse(offer: offer)
    package static let sources = (0..<3).map { TransportAddress(ip: IPAddress("127.0.0.1")!, port: 50000 + UInt16($0)) }

    /// How closely a track's viewer sequence numbers must follow each other: exactly one up
    /// while the ingest numbers do (a source restart is renumbered to continue by one), within
    /// the harness's own jitter once it has reordered or lost packets, unchecked after raw
    /// datagrams whose numbers are anything.
    package enum Continuity: Int, Comparable {
        case strict, bounded, unchecked
        package static func < (a: Continuity, b: Continuity) -> Bool { a.rawValue < b.rawValue }
    }

    /// A viewer as a browser would be: its DTLS client, SRTP receiver, SRTCP sender.
    package final class Viewer {
        package let id: String
        package var address: TransportAddress
        /// The viewer's DTLS client; nil for a viewer keyed without a handshake.
        let dtls: DTLSEndpoint?
        let ufrag: String, password: String
        let srtpIn: SRTPSession
        let srtcpOut: SRTPSession
        package let videoSSRC: UInt32?, audioSSRC: UInt32?, rtxSSRC: UInt32
        /// What it got on its video, audio and RTX SSRCs. An RTX packet, or a retransmission on
        /// the track's own SSRC, carries a number sent (the same packet) or one the viewer never
        /// got, behind its newest.
        var video = Numbers(), audio = Numbers(), rtx = Numbers()
        package var lastVideo: UInt16? { video.last }
        package var lastAudio: UInt16? { audio.last }

        init(id: String, address: TransportAddress, dtls: DTLSEndpoint?, ufrag: String, password: String,
             srtpIn: SRTPSession, srtcpOut: SRTPSession, videoSSRC: UInt32?, audioSSRC: UInt32?, rtxSSRC: UInt32) {
            self.id = id
            self.address = address
            self.dtls = dtls
            self.ufrag = ufrag
            self.password = password
            self.srtpIn = srtpIn
            self.srtcpOut = srtcpOut
            self.videoSSRC = videoSSRC
            self.audioSSRC = audioSSRC
            self.rtxSSRC = rtxSSRC
        }

        /// An ICE connectivity check (consent freshness) with this viewer's credentials.
        package func check(useCandidate: Bool) -> ByteBuffer {
            var message = STUNMessage(.binding, .request)
            message.append(.username, Array("\(ufrag):d0N5".utf8))
            if useCandidate { message.append(.useCandidate, []) }
            return ByteBuffer(bytes: message.encoded(integrityKey: Array(password.utf8), fingerprint: true))
        }
    }

    /// The ingest side: per source address, the next RTP header fields it writes.
    package struct Sender {
        package var ssrc: UInt32
        package var sequence: UInt16
        package var timestamp: UInt32
        /// The highest sequence number sent since the last SSRC change: the edge numbers a
        /// viewer's packets from the newest it has, and takes one behind it as late.
        package var newest: UInt16?
    }

    package var core: MediaCore
    package var stream: MediaStream
    package var nanos: UInt64 = 1_000_000_000
    package let wallBase = 1_800_000_000.0
    package var viewers: [Viewer] = []
    package var video: [Sender]
    package var audio: [Sender]
    package var source = 0
    package var videoContinuity = Continuity.strict
    package var audioContinuity = Continuity.strict
    /// Packets ingested by this input (a bound on its run time).
    package var ingested = 0

    /// Packets each ingest track keeps for NACK: an input ingests at most a few hundred, so with
    /// the edge's default (2048) a NACK past the end of the history would never be tried, and
    /// every input would allocate and free 4096 empty slots.
    package static let history = 256

    package init(video hasVideo: Bool, audio hasAudio: Bool) {
        var configuration = MediaCore.Configuration(candidates: [TransportAddress(ip: IPAddress("127.0.0.1")!, port: 8189)])
        configuration.ingestHistory = Self.history
        core = MediaCore(configuration: configuration, context: Self.edgeContext)
        stream = MediaStream(name: "cam", videoPort: hasVideo ? 5004 : nil, audioPort: hasAudio ? 5006 : nil)
        _ = core.setStreams([stream])
        video = (0..<3).map { Sender(ssrc: 0xCAFE + UInt32($0), sequence: 1000, timestamp: 90000) }
        audio = (0..<3).map { Sender(ssrc: 0xA0D10 + UInt32($0), sequence: 2000, timestamp: 48000) }
    }

    package var now: MediaTime { MediaTime(nanos: nanos, wall: wallBase + Double(nanos) / 1e9) }

    // MARK: - Ingest

    /// The next RTP packet of the current source's video (or audio) track, as a datagram.
    package func packet(_ kind: IngestTrack.Kind, _ payload: [UInt8], marker: Bool) -> ByteBuffer {
        func make(_ sender: inout Sender, payloadType: UInt8) -> ByteBuffer {
            defer {
                // As the edge's ingest: a packet ahead of the newest, or one it takes as a
                // restart (a jump of more than 1000 either way), is the newest from now on.
                if sender.newest.map({ sender.sequence &- $0 &- 1 < 0x8000 || IngestTrack.isJump(from: $0, to: sender.sequence) }) ?? true {
                    sender.newest = sender.sequence
                }
                sender.sequence &+= 1
            }
            return RTPPacket(marker: marker, payloadType: payloadType, sequenceNumber: sender.sequence,
                             timestamp: sender.timestamp, ssrc: sender.ssrc, payload: ByteBuffer(bytes: payload)).bytes
        }
        return kind == .video ? make(&video[source], payloadType: 96) : make(&audio[source], payloadType: 111)
    }

    /// Datagrams into the stream's ingest socket, from the current source, as one read.
    package func ingest(_ kind: IngestTrack.Kind, _ datagrams: [ByteBuffer], from address: TransportAddress? = nil) {
        ingested += datagrams.count
        core.ingest(stream: stream.name, kind: kind, datagrams: datagrams.map { ($0, address ?? Self.sources[source]) },
                    now: now)
        drain()
    }

    // MARK: - Viewers

    /// Offer, answer, ICE check and DTLS, as a browser at `address`; nil when the edge refuses
    /// the offer (no media yet). With `handshake` the DTLS handshake is real (in memory);
    /// without, the core is keyed directly with fixed keys of `profile`.
    @discardableResult
    package func connect(from address: TransportAddress, handshake: Bool = false,
                         profile: SRTPProfile = .aeadAes128Gcm) -> Viewer? {
        guard let (id, answerText) = try? core.addViewer(stream: stream.name, offer: Self.parsedOffer, token: nil,
                                                         from: address.ip, now: now) else { return nil }
        let ufrag: String, password: String
        if handshake {
            guard let answer = try? SessionDescription(parsing: answerText), let media = answer.media.first,
                  let credentials = answer.iceCredentials(for: media) else { violated("the edge's answer does not parse") }
            (ufrag, password) = credentials
        } else {
            // WHEPFuzz checks answers; a keyed join takes the credentials from the core.
            guard let state = core.viewers[id] else { violated("an answered viewer is not in the core") }
            (ufrag, password) = (state.localUfrag, String(decoding: state.localKey, as: UTF8.self))
        }
        drain()
        var message = STUNMessage(.binding, .request)
        message.append(.username, Array("\(ufrag):d0N5".utf8))
        message.append(.useCandidate, [])
        core.receive(ByteBuffer(bytes: message.encoded(integrityKey: Array(password.utf8), fingerprint: true)),
                     from: address, now: now)
        // The answer to the check, and the edge's first DTLS flight when it is the DTLS client.
        let answers = core.outbox.filter { !Self.isDTLS($0.bytes) }
        guard answers.count == 1, let response = try? STUNMessage(datagram: answers[0].bytes),
              response.type == STUNMessageType(method: .binding, class: .successResponse),
              response.verifyIntegrity(key: Array(password.utf8)) else { violated("no valid answer to a valid ICE check") }
        core.outbox.removeAll { !Self.isDTLS($0.bytes) }
        guard let state = core.viewers[id], state.state == .handshaking else {
            violated("a viewer that passed its ICE check is not handshaking")
        }
        // The viewer writes with the DTLS client's keys when the edge is the DTLS server.
        let edgeIsClient = state.negotiated.dtlsClient
        let keys: SRTPKeyingMaterial
        var dtls: DTLSEndpoint?
        if handshake {
            let endpoint = try! DTLSEndpoint(context: Self.viewerContext, role: edgeIsClient ? .server : .client,
                                             remoteFingerprints: nil)
            let began = ContinuousClock.now
            var toServer = edgeIsClient ? [] : endpoint.start().datagrams
            for datagram in core.outbox where Self.isDTLS(datagram.bytes) {
                toServer += endpoint.receive(Array(datagram.bytes.readableBytesView)).datagrams
            }
            core.outbox.removeAll { Self.isDTLS($0.bytes) }
            for _ in 0..<10 where !toServer.isEmpty {
                for datagram in toServer { core.receive(ByteBuffer(bytes: datagram), from: address, now: now) }
                toServer = []
                for datagram in core.outbox where Self.isDTLS(datagram.bytes) {
                    toServer += endpoint.receive(Array(datagram.bytes.readableBytesView)).datagrams
                }
                core.outbox.removeAll { Self.isDTLS($0.bytes) }
            }
            guard endpoint.state == .connected, state.state == .playing else {
                // OpenSSL's DTLS timers run on the wall clock: a fuzzer starved for a second
                // mid-handshake (niced, beside a build) had flights retransmitted and did not
                // finish in ten rounds, and the same input then passed every time. Only a
                // handshake that had the CPU is a finding; the other viewer leaves.
                if ContinuousClock.now - began > .milliseconds(500) {
                    _ = core.removeViewer(id: id)
                    core.outbox.removeAll()
                    return nil
                }
                violated("a DTLS handshake in memory did not complete")
            }
            keys = try! endpoint.srtpKeyingMaterial()
            dtls = endpoint
        } else {
            keys = SRTPKeyingMaterial(
                profile: profile, clientKey: Array(repeating: 0x11, count: profile.keyLength),
                clientSalt: Array(repeating: 0x22, count: profile.saltLength),
                serverKey: Array(repeating: 0x33, count: profile.keyLength),
                serverSalt: Array(repeating: 0x44, count: profile.saltLength))
            core.outbox.removeAll()
            core.play(state, keys: keys, now: now)
            guard state.state == .playing else { violated("a viewer keyed directly is not playing") }
        }
        let viewer = Viewer(
            id: id, address: address, dtls: dtls, ufrag: ufrag, password: password,
            srtpIn: try! SRTPSession(profile: keys.profile, key: edgeIsClient ? keys.clientKey : keys.serverKey,
                                     salt: edgeIsClient ? keys.clientSalt : keys.serverSalt, direction: .inbound),
            srtcpOut: try! SRTPSession(profile: keys.profile, key: edgeIsClient ? keys.serverKey : keys.clientKey,
                                       salt: edgeIsClient ? keys.serverSalt : keys.clientSalt, direction: .outbound),
            videoSSRC: state.video?.ssrc, audioSSRC: state.audio?.ssrc, rtxSSRC: state.rtxSSRC)
        viewers.append(viewer)
        drain()  // the cached keyframe
        return viewer
    }

    package func leave(_ viewer: Viewer) {
        core.removeViewer(id: viewer.id)
        viewers.removeAll { $0 === viewer }
        drain()
    }

    /// A datagram from a viewer to the media port.
    package func receive(_ bytes: ByteBuffer, from viewer: Viewer) {
        core.receive(bytes, from: viewer.address, now: now)
        drain()
    }

    /// An SRTCP compound from the viewer (Receiver Report first, as RFC 3550 wants).
    package func rtcp(_ packets: [RTCPPacket], from viewer: Viewer) {
        var buffer = ByteBuffer()
        RTCPPacket.writeCompound(packets, to: &buffer)
        rtcp(bytes: Array(buffer.readableBytesView), from: viewer)
    }

    /// RTCP bytes as they are, SRTCP-protected by the viewer. The 32-bit words 1, 2 and 3 at
    /// multiples of 4 stand for the viewer's video, RTX and audio SSRCs (random per viewer), so
    /// that an input means the same thing in every run.
    package func rtcp(bytes: [UInt8], from viewer: Viewer) {
        var bytes = bytes
        for offset in stride(from: 0, to: bytes.count - 3, by: 4) {
            let word = UInt32(bytes[offset]) << 24 | UInt32(bytes[offset + 1]) << 16 | UInt32(bytes[offset + 2]) << 8
                | UInt32(bytes[offset + 3])
            let ssrc: UInt32? = switch word {
            case 1: viewer.videoSSRC
            case 2: viewer.rtxSSRC
            case 3: viewer.audioSSRC
            default: nil
            }
            if let ssrc { withUnsafeBytes(of: ssrc.bigEndian) { bytes.replaceSubrange(offset..<offset + 4, with: $0) } }
        }
        // libsrtp wants at least an RTCP header to protect.
        guard bytes.count >= 8, let protected = try? viewer.srtcpOut.protect(rtcp: bytes) else { return }
        receive(ByteBuffer(bytes: protected), from: viewer)
    }

    package func advance(nanos delta: UInt64) { nanos &+= delta }

    package func tick() {
        core.tick(now: now)
        drain()
        // Viewers the core ended (consent, timeouts) get nothing more; forget them.
        viewers.removeAll { core.viewers[$0.id] == nil }
    }

    // MARK: - Invariants

    /// Takes what the core sent and checks it as the viewers would receive it.
    package func drain() {
        defer { core.outbox.removeAll(keepingCapacity: true) }
        if let track = core.streams[stream.name]?.video, track.keyframe.count > IngestTrack.maxFramePackets + 2 {
            violated("the keyframe cache holds \(track.keyframe.count) packets")
        }
        for datagram in core.outbox {
            let bytes = datagram.bytes
            guard let first = bytes.readableBytesView.first, PacketKind(firstByte: first) == .rtpOrRTCP,
                  !RTPPacket.isRTCP(bytes) else { continue }
            guard let header = try? RTPPacket(datagram: bytes) else { violated("the edge sent RTP that does not parse") }
            guard let viewer = viewers.first(where: {
                $0.videoSSRC == header.ssrc || $0.audioSSRC == header.ssrc || $0.rtxSSRC == header.ssrc
            }) else { violated("RTP with SSRC \(header.ssrc) for no viewer") }
            let sequence = header.sequenceNumber
            // What a packet is, without decrypting it: its timestamp, marker and size (an RTX
            // packet has the same header and two bytes more, RFC 4588 §4).
            let sent = Sent(timestamp: header.timestamp, marker: header.marker, size: bytes.readableBytes)
            if header.ssrc == viewer.videoSSRC {
                check(sequence, sent, on: &viewer.video, videoContinuity, "video")
            } else if header.ssrc == viewer.audioSSRC {
                check(sequence, sent, on: &viewer.audio, audioContinuity, "audio")
            } else {
                check(sequence, sent, on: &viewer.rtx, .strict, "rtx")
                guard let plain = try? viewer.srtpIn.unprotect(srtp: Array(bytes.readableBytesView)),
                      let rtx = try? RTPPacket(datagram: ByteBuffer(bytes: plain)),
                      let original = rtx.payload.getInteger(at: rtx.payload.readerIndex, as: UInt16.self) else {
                    violated("an RTX packet the viewer cannot decrypt or read")
                }
                // RFC 4588: the original sequence number leads the payload. Either the viewer got
                // it, and this is the same packet; or it never did (lost upstream and arrived
                // late, while the viewer waited for a keyframe), and the number is behind the
                // newest and from now on stands for this packet.
                let resent = Sent(timestamp: sent.timestamp, marker: sent.marker, size: sent.size - 2)
                let number = viewer.video.unwrapped(original)
                if let known = viewer.video.sent[number] {
                    guard known == resent else { violated("RTX for video sequence \(original) is not the packet sent under it") }
                } else {
                    guard viewer.video.last != nil, number < viewer.video.newest else {
                        violated("RTX for video sequence \(original), not behind the newest sent")
                    }
                    viewer.video.sent[number] = resent
                }
            }
        }
    }

    /// A packet as a viewer can tell it from another without decrypting it.
    struct Sent: Equatable {
        var timestamp: UInt32
        var marker: Bool
        var size: Int
    }

    /// One SSRC's sequence numbers as a viewer got them, unwrapped (RTP numbers wrap, and the
    /// edge's steps are under 2^15), and what each stood for: one number is one packet.
    struct Numbers {
        /// The last number received, and it unwrapped.
        var last: UInt16?
        var lastUnwrapped: Int64 = 0
        var newest = Int64.min
        var sent: [Int64: Sent] = [:]

        func unwrapped(_ sequence: UInt16) -> Int64 {
            guard let last else { return 0 }
            return lastUnwrapped + Int64(Int16(bitPattern: sequence &- last))
        }
    }

    /// A packet's sequence number against the last one the viewer got on that SSRC. A number
    /// sent before must be the same packet (SRTP encrypts by the number: two packets under one
    /// would reuse a keystream). One at or behind the last is then a retransmission (a NACKed
    /// track without RTX resends on its own SSRC) and leaves the order alone.
    private func check(_ sequence: UInt16, _ packet: Sent, on numbers: inout Numbers, _ continuity: Continuity,
                       _ track: String) {
        let number = numbers.unwrapped(sequence)
        let known = numbers.sent[number]
        if let known {
            guard known == packet else { violated("two packets under \(track) sequence \(sequence)") }
        } else {
            numbers.sent[number] = packet
        }
        guard let previous = numbers.last else {
            (numbers.last, numbers.lastUnwrapped, numbers.newest) = (sequence, number, number)
            return
        }
        let step = Int16(bitPattern: sequence &- previous)
        if step <= 0, known != nil { return }
        // Jitter is counted from the newest number, as the sender's moves are: after a late
        // packet (behind the newest) the next may be as far ahead of the newest.
        let ahead = number - numbers.newest
        (numbers.last, numbers.lastUnwrapped, numbers.newest) = (sequence, number, max(numbers.newest, number))
        switch continuity {
        case .strict where step != 1:
            violated("\(track) sequence \(previous) then \(sequence)")
        case .bounded where abs(ahead) > Int64(Self.maximumJitter) + 1:
            violated("\(track) sequence \(previous) then \(sequence), \(ahead) from the newest")
        default:
            break
        }
    }

    /// The most the harness moves a sender's sequence number for loss or reordering.
    package static let maximumJitter = 20

    static func isDTLS(_ bytes: ByteBuffer) -> Bool {
        bytes.readableBytesView.first.map { PacketKind(firstByte: $0) == .dtls } ?? false
    }
}
