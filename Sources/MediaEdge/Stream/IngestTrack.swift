import NIOCore
import Wire

/// A packet as the edge keeps it: the stream-timeline sequence number and timestamp (see
/// `IngestTrack`), the marker bit, and the payload. Each viewer writes its own header.
package struct MediaPacket: Sendable {
    package var sequence: UInt16
    package var timestamp: UInt32
    package var marker: Bool
    package var payload: ByteBuffer
    /// Whether the packet before it ended a frame: a viewer may start here.
    package var startsFrame = true
}

/// IngestTrack is one incoming RTP track (H.264 video or Opus audio) of a stream. It keeps:
/// - one continuous timeline: ffmpeg restarting (new SSRC, a sequence jump) continues the
///   sequence numbers by one and the timestamps by the wall time that passed, so viewers
///   never see the restart;
/// - a history of recent packets for NACK (`historySize` slots, ≥ 1 s at several Mbps);
/// - for video, the last complete keyframe (SPS + PPS + IDR access unit) for new viewers
///   and PLI, and the SPS's profile-level-id for SDP answers.
package struct IngestTrack {
    package enum Kind: String, Sendable { case video, audio }

    package let kind: Kind
    package let clockRate: UInt32
    package static let historySize = 2048

    /// The SSRC and the offsets from the current source to the stream timeline.
    private var sourceSSRC: UInt32?
    private var lastSourceSequence: UInt16 = 0
    private var sequenceOffset: UInt16 = 0
    private var timestampOffset: UInt32 = 0
    private var lastArrivalNanos: UInt64 = 0

    /// The stream timeline's latest packet.
    package private(set) var lastSequence: UInt16 = 0
    package private(set) var lastTimestamp: UInt32 = 0
    /// Whether the latest packet ended a frame (marker bit): the next one starts a frame.
    package private(set) var atFrameBoundary = true
    package private(set) var packetsReceived = 0
    package private(set) var bytesReceived = 0
    package private(set) var sourceRestarts = 0
    package private(set) var malformed = 0
    package var hasData: Bool { packetsReceived > 0 }

    private var history: [MediaPacket?]

    // Video only.
    package private(set) var profile: H264.ProfileLevelID?
    private var sps: ByteBuffer?
    private var pps: ByteBuffer?
    /// The access unit being received: its timestamp and packets so far.
    private var frameTimestamp: UInt32?
    private var framePackets: [MediaPacket] = []
    private var frameHasIDR = false
    private var frameHasSPS = false
    private var frameHasPPS = false
    /// The last complete keyframe, ready to send (parameter sets first).
    package private(set) var keyframe: [MediaPacket] = []
    package private(set) var keyframesSeen = 0

    package init(kind: Kind) {
        self.kind = kind
        clockRate = kind == .video ? 90000 : 48000
        history = Array(repeating: nil, count: Self.historySize)
    }

    /// Takes one datagram from the ingest socket; returns the packet on the stream timeline,
    /// or nil (counted) when it is not RTP.
    package mutating func receive(_ datagram: ByteBuffer, nowNanos: UInt64) -> MediaPacket? {
        guard let rtp = try? RTPPacket(datagram: datagram), !RTPPacket.isRTCP(datagram), rtp.payload.readableBytes > 0 else {
            malformed += 1
            return nil
        }
        if sourceSSRC != rtp.ssrc || isJump(from: lastSourceSequence, to: rtp.sequenceNumber) {
            if sourceSSRC != nil {
                // Continue the timeline: next sequence number, timestamp advanced by the gap.
                sourceRestarts += 1
                let elapsed = (nowNanos &- lastArrivalNanos) * UInt64(clockRate) / 1_000_000_000
                sequenceOffset = (lastSequence &+ 1) &- rtp.sequenceNumber
                timestampOffset = (lastTimestamp &+ UInt32(truncatingIfNeeded: max(1, elapsed))) &- rtp.timestamp
                atFrameBoundary = true
                framePackets = []
                frameTimestamp = nil
            } else {
                sequenceOffset = 0
                timestampOffset = 0
            }
            sourceSSRC = rtp.ssrc
        }
        lastSourceSequence = rtp.sequenceNumber
        lastArrivalNanos = nowNanos
        let packet = MediaPacket(sequence: rtp.sequenceNumber &+ sequenceOffset, timestamp: rtp.timestamp &+ timestampOffset,
                                 marker: rtp.marker, payload: rtp.payload, startsFrame: atFrameBoundary)
        packetsReceived += 1
        bytesReceived += datagram.readableBytes
        history[Int(packet.sequence) % Self.historySize] = packet
        if kind == .video { follow(packet) }
        lastSequence = packet.sequence
        lastTimestamp = packet.timestamp
        atFrameBoundary = kind == .audio || packet.marker
        return packet
    }

    /// A packet from the history by its stream sequence number, if still there.
    package func packet(sequence: UInt16) -> MediaPacket? {
        guard let packet = history[Int(sequence) % Self.historySize], packet.sequence == sequence else { return nil }
        return packet
    }

    /// A restart shows as a sequence number far from the last (RFC 3550 A.1's MAX_DROPOUT /
    /// MAX_MISORDER, scaled down: nothing real jumps 1000 packets at once).
    private func isJump(from last: UInt16, to next: UInt16) -> Bool {
        let forward = next &- last
        return forward > 1000 && forward < UInt16.max - 100
    }

    private mutating func follow(_ packet: MediaPacket) {
        if frameTimestamp != packet.timestamp {
            frameTimestamp = packet.timestamp
            framePackets = []
            frameHasIDR = false
            frameHasSPS = false
            frameHasPPS = false
        }
        framePackets.append(packet)
        let view = packet.payload.readableBytesView
        for type in H264.nalTypes(startingIn: view) {
            switch type {
            case H264.NALUnitType.idrSlice.rawValue: frameHasIDR = true
            case H264.NALUnitType.sequenceParameterSet.rawValue: frameHasSPS = true
            case H264.NALUnitType.pictureParameterSet.rawValue: frameHasPPS = true
            default: break
            }
        }
        rememberParameterSets(packet.payload)
        guard packet.marker else { return }
        if frameHasIDR && (frameHasSPS && frameHasPPS || sps != nil && pps != nil) {
            var unit: [MediaPacket] = []
            // Parameter sets the access unit did not carry itself go first, as single NAL packets.
            if !frameHasSPS, let sps { unit.append(MediaPacket(sequence: 0, timestamp: packet.timestamp, marker: false, payload: sps)) }
            if !frameHasPPS, let pps { unit.append(MediaPacket(sequence: 0, timestamp: packet.timestamp, marker: false, payload: pps)) }
            keyframe = unit + framePackets
            keyframesSeen += 1
        }
        framePackets = []
        frameTimestamp = nil
    }

    /// Keeps the latest SPS and PPS (single NAL packets and STAP-A members) and the profile.
    private mutating func rememberParameterSets(_ payload: ByteBuffer) {
        guard let header = payload.getInteger(at: payload.readerIndex, as: UInt8.self) else { return }
        switch H264.type(ofNALHeader: header) {
        case H264.NALUnitType.sequenceParameterSet.rawValue:
            sps = payload
            profile = H264.ProfileLevelID(sps: payload.readableBytesView) ?? profile
        case H264.NALUnitType.pictureParameterSet.rawValue:
            pps = payload
        case H264.NALUnitType.stapA.rawValue:
            var body = payload.getSlice(at: payload.readerIndex + 1, length: payload.readableBytes - 1)!
            while let size = body.readInteger(as: UInt16.self), size > 0, let unit = body.readSlice(length: Int(size)) {
                rememberParameterSets(unit)
            }
        default:
            break
        }
    }
}
