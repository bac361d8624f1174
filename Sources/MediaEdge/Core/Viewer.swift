import Admission
import DTLS
import Datagram
import NIOCore
import SRTP
import Store
import Wire

/// Viewer is one WHEP playback session: ICE-lite (checks from one remote agent), one DTLS
/// association, SRTP both ways, and a video and/or audio track.
final class Viewer {
    enum State: String {
        /// Waiting for a valid STUN check.
        case checking = "ice"
        case handshaking = "dtls"
        case playing
        /// DTLS failed or the fingerprint did not match: no media, removed at the next tick.
        case failed
    }

    let id: String
    let stream: String
    let localUfrag: String
    let localKey: [UInt8]
    let negotiated: WHEPAnswer.Negotiated
    let createdNanos: UInt64
    let startedAt: Double
    let cname: String
    var state = State.checking
    var failure: String?
    /// Who asked for it (the WHEP POST's address, IPv6 by /64): pending viewers are capped per source.
    let source: ClientSource?
    /// Counted among its stream's and its source's pending viewers (until it plays or ends).
    var countedPending = true
    /// ICE succeeded once: a DTLS handshake began. Only such viewers go to the history.
    var reachedDTLS = false

    /// The address media goes to: the last nominated (or, before one, the first valid) pair.
    var selected: TransportAddress? {
        didSet { if selected != oldValue { selectedName = selected.map(SocketName.init) } }
    }
    /// `selected` as the kernel takes it, made once rather than per packet.
    private(set) var selectedName: SocketName?
    /// Every remote address that passed a check: DTLS and SRTCP from them belong here.
    var addresses: Set<TransportAddress> = []
    var lastConsentNanos: UInt64

    let dtls: DTLSEndpoint
    var nextDTLSTimerNanos: UInt64?
    var srtpOut: SRTPSession?
    var srtpIn: SRTPSession?

    var video: OutboundTrack?
    var audio: OutboundTrack?
    let rtxPayloadType: UInt8?
    let rtxSSRC: UInt32
    var rtxSequence: UInt16
    var nextReportNanos: UInt64 = 0

    // Stats, as the admin view and metrics show them.
    var packetsSent = 0
    var bytesSent = 0
    var nacks = 0
    var retransmitted = 0
    var plis = 0
    var packetsLost = 0
    var jitter = 0

    init(id: String, stream: String, localUfrag: String, localPassword: String, negotiated: WHEPAnswer.Negotiated,
         local: WHEPAnswer.Local, dtls: DTLSEndpoint, source: ClientSource?, nowNanos: UInt64, wallSeconds: Double) {
        var generator = SystemRandomNumberGenerator()
        self.id = id
        self.stream = stream
        self.localUfrag = localUfrag
        localKey = STUNCredentials.shortTermKey(password: localPassword)
        self.negotiated = negotiated
        self.dtls = dtls
        self.source = source
        createdNanos = nowNanos
        startedAt = wallSeconds
        lastConsentNanos = nowNanos
        cname = local.cname
        if let type = negotiated.videoPayloadType {
            video = OutboundTrack(kind: .video, ssrc: local.videoSSRC, payloadType: type,
                                  firstSequence: .random(in: 0...0x7FFF, using: &generator), timestampBase: generator.next())
        }
        if let type = negotiated.audioPayloadType {
            audio = OutboundTrack(kind: .audio, ssrc: local.audioSSRC, payloadType: type,
                                  firstSequence: .random(in: 0...0x7FFF, using: &generator), timestampBase: generator.next())
        }
        rtxPayloadType = negotiated.rtxPayloadType
        rtxSSRC = local.rtxSSRC
        rtxSequence = .random(in: 0...0x7FFF, using: &generator)
    }

    var record: ViewerRecord {
        ViewerRecord(id: id, stream: stream, remoteAddress: selected?.description, state: state.rawValue,
                     startedAt: .init(timeIntervalSince1970: startedAt), packetsSent: packetsSent, bytesSent: bytesSent,
                     nacks: nacks, retransmitted: retransmitted, plis: plis, packetsLost: packetsLost, jitter: jitter)
    }

    /// An RTP packet for this viewer, SRTP-protected; nil if SRTP is not up (or fails). The
    /// header and payload are written once into one buffer and protected in place.
    func protect(_ send: OutboundTrack.Send, payloadType: UInt8, ssrc: UInt32, allocator: ByteBufferAllocator) -> ByteBuffer? {
        guard let srtpOut else { return nil }
        var buffer = allocator.buffer(
            capacity: RTPPacket.fixedHeaderLength + send.payload.readableBytes + SRTPSession.trailerCapacity)
        RTPPacket.write(marker: send.marker, payloadType: payloadType, sequenceNumber: send.sequence, timestamp: send.timestamp,
                        ssrc: ssrc, payload: send.payload, to: &buffer)
        do {
            try srtpOut.protect(rtp: &buffer)
        } catch {
            return nil
        }
        return buffer
    }
}
