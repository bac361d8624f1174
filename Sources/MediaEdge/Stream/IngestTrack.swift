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
    /// Where the packet is on the timeline, counted from the track's first packet: sequence
    /// numbers wrap, this does not (steps are under 2^15, so 64 bits last any stream's life).
    package var index = 0
}

/// IngestTrack is one incoming RTP track (H.264 video or Opus audio) of a stream. It keeps:
/// - one continuous timeline: ffmpeg restarting (new SSRC, a sequence jump) continues the
///   sequence numbers by one and the timestamps by the wall time that passed, so viewers
///   never see the restart;
/// - a history of recent packets for NACK (`historySize` slots, ≥ 1 s at several Mbps);
/// - for video, the last complete keyframe (SPS + PPS + IDR access unit) for new viewers
///   and PLI, and the SPS's profile-level-id for SDP answers;
/// - one source address at a time: the first that sends RTP, until it has been silent for
///   `sourceSilenceNanos` (as RTP receivers follow one sender), or only addresses in
///   `pinnedSource` when the stream is pinned (`stream add --source`).
///
/// Everything here is read from unauthenticated UDP: every buffer has a bound, every number
/// from a packet or a clock is used with wrapping or checked arithmetic, and what is refused
/// is counted in `drops`.
package struct IngestTrack {
    package enum Kind: String, Sendable { case video, audio }

    /// Packets the track refused or could not keep, by reason (cumulative).
    package struct Drops: Sendable, Equatable {
        /// Not RTP, or RTP without payload.
        package var malformed = 0
        /// From an address other than the followed or pinned source.
        package var foreignSource = 0
        /// Packets of access units larger than the keyframe cache takes (`maxFramePackets`,
        /// `maxFrameBytes`): still forwarded live, not cached.
        package var oversizedFrame = 0
        /// Reordered packets from before the current source's first one (sent before a restart),
        /// or older than the NACK history.
        package var late = 0
        /// A number the timeline already holds (sent twice, or by someone else with the
        /// source's address): forwarded again, it would give viewers two packets under one
        /// sequence number, and SRTP would encrypt both with one keystream.
        package var duplicate = 0

        package init() {}

        package static func + (lhs: Drops, rhs: Drops) -> Drops { combine(lhs, rhs, +) }
        package static func - (lhs: Drops, rhs: Drops) -> Drops { combine(lhs, rhs, -) }
        package static func += (lhs: inout Drops, rhs: Drops) { lhs = lhs + rhs }

        /// Every field, once: a reason added here is summed and published with the others.
        private static func combine(_ lhs: Drops, _ rhs: Drops, _ operation: (Int, Int) -> Int) -> Drops {
            var result = Drops()
            result.malformed = operation(lhs.malformed, rhs.malformed)
            result.foreignSource = operation(lhs.foreignSource, rhs.foreignSource)
            result.oversizedFrame = operation(lhs.oversizedFrame, rhs.oversizedFrame)
            result.late = operation(lhs.late, rhs.late)
            result.duplicate = operation(lhs.duplicate, rhs.duplicate)
            return result
        }
    }

    package let kind: Kind
    package let clockRate: UInt32
    /// Packets kept for NACK by default: ≥ 1 s at several Mbps.
    package static let defaultHistorySize = 2048
    package let historySize: Int
    /// The largest access unit the keyframe cache assembles: 4096 packets or 4 MiB, far above
    /// a 4K IDR frame at high quality (~1-2 MB); a keyframe is sent to a viewer with
    /// consecutive 16-bit sequence numbers, so it must stay well below 65536 packets.
    package static let maxFramePackets = 4096
    package static let maxFrameBytes = 4 << 20
    /// How long the followed source must be silent before another address may take over.
    package static let sourceSilenceNanos: UInt64 = 3_000_000_000

    /// Only addresses in this range are taken, whatever else sends (nil: follow the first).
    package var pinnedSource: CIDR?
    /// The address packets are taken from now, and when it last sent RTP.
    package private(set) var source: TransportAddress?
    private var lastSourceNanos: UInt64 = 0
    package private(set) var drops = Drops()

    /// The SSRC and the offsets from the current source to the stream timeline.
    private var sourceSSRC: UInt32?
    private var lastSourceSequence: UInt16 = 0
    private var sequenceOffset: UInt16 = 0
    private var timestampOffset: UInt32 = 0
    private var lastArrivalNanos: UInt64 = 0
    /// Timeline numbers the current source has covered since it started (counted, so that a
    /// long run does not wrap; up to 2^15, far past how late a packet is taken).
    private var sourceSpan = 0

    /// The stream timeline's latest packet.
    package private(set) var lastSequence: UInt16 = 0
    package private(set) var lastTimestamp: UInt32 = 0
    /// Whether the latest packet ended a frame (marker bit): the next one starts a frame.
    package private(set) var atFrameBoundary = true
    package private(set) var packetsReceived = 0
    package private(set) var bytesReceived = 0
    package private(set) var sourceRestarts = 0
    package var hasData: Bool { packetsReceived > 0 }

    /// Slot `index % historySize`. Found by index, not by sequence number: a slot not written
    /// since the numbers wrapped holds a packet 2^16 older than its number says.
    private var history: [MediaPacket?]
    /// The newest packet's `MediaPacket.index`.
    package private(set) var newestIndex = 0

    // Video only.
    package private(set) var profile: H264.ProfileLevelID?
    private var sps: ByteBuffer?
    private var pps: ByteBuffer?
    /// The access unit being received: its timestamp and packets so far.
    private var frameTimestamp: UInt32?
    private var framePackets: [MediaPacket] = []
    private var frameBytes = 0
    /// The access unit outgrew the cache's bounds: the rest of it is not assembled.
    private var frameOversized = false
    private var frameHasIDR = false
    private var frameHasSPS = false
    private var frameHasPPS = false
    /// The last complete keyframe, ready to send (parameter sets first).
    package private(set) var keyframe: [MediaPacket] = []
    package private(set) var keyframesSeen = 0

    package init(kind: Kind, pinnedSource: CIDR? = nil, historySize: Int = IngestTrack.defaultHistorySize) {
        self.kind = kind
        self.pinnedSource = pinnedSource
        clockRate = kind == .video ? 90000 : 48000
        self.historySize = max(1, historySize)
        history = Array(repeating: nil, count: self.historySize)
    }

    /// Takes one datagram from the ingest socket, sent from `address`; returns the packet on
    /// the stream timeline, or nil (counted in `drops`) when it is not RTP or not from the
    /// source the track follows.
    package mutating func receive(_ datagram: ByteBuffer, from address: TransportAddress, nowNanos: UInt64) -> MediaPacket? {
        if let pinnedSource, !pinnedSource.contains(address.ip) {
            drops.foreignSource += 1
            return nil
        }
        if let source, source != address,
           MediaClock.elapsed(from: lastSourceNanos, to: nowNanos) < Self.sourceSilenceNanos {
            drops.foreignSource += 1
            return nil
        }
        guard let rtp = try? RTPPacket(datagram: datagram), !RTPPacket.isRTCP(datagram), rtp.payload.readableBytes > 0 else {
            drops.malformed += 1
            return nil
        }
        source = address
        lastSourceNanos = nowNanos
        var sourceStarts = false
        if sourceSSRC != rtp.ssrc || Self.isJump(from: lastSourceSequence, to: rtp.sequenceNumber) {
            sourceStarts = true
            if sourceSSRC != nil {
                // Continue the timeline: next sequence number, timestamp advanced by the gap
                // (RTP timestamps wrap, so only the gap modulo 2^32 matters).
                sourceRestarts += 1
                let gap = MediaClock.elapsed(from: lastArrivalNanos, to: nowNanos)
                let elapsed = MediaClock.rtpTicks(nanos: gap, clockRate: clockRate)
                sequenceOffset = (lastSequence &+ 1) &- rtp.sequenceNumber
                timestampOffset = (lastTimestamp &+ max(1, elapsed)) &- rtp.timestamp
                atFrameBoundary = true
                startFrame(timestamp: nil)
            } else {
                sequenceOffset = 0
                timestampOffset = 0
            }
            sourceSSRC = rtp.ssrc
        }
        let sequence = rtp.sequenceNumber &+ sequenceOffset
        // At or behind the newest packet on the timeline: reordered (or duplicated) on the way.
        // It is forwarded and kept for NACKs, but it does not move the timeline back (a restart
        // continues after the newest number, not after it) and never starts a frame. One from
        // before this source's first packet (sent before a restart, arriving after it) would
        // take a number the old source had: it is dropped.
        // A late packet goes out with its own number only once: not when the history has a
        // packet under it (a duplicate), nor when it is older than the history (the number
        // may have gone out already, and a NACK could not find it anyway).
        let late: Bool
        let index: Int
        if sourceStarts {
            late = false
            sourceSpan = 1
            index = packetsReceived == 0 ? 0 : newestIndex &+ 1
        } else {
            let ahead = sequence &- lastSequence
            late = ahead == 0 || ahead >= 0x8000
            if late {
                let back = Int(lastSequence &- sequence)
                if back >= sourceSpan || back >= historySize {
                    drops.late += 1
                    return nil
                }
                index = newestIndex &- back
                if packet(index: index) != nil {
                    drops.duplicate += 1
                    return nil
                }
            } else {
                sourceSpan = min(sourceSpan + Int(ahead), 0x8000)
                index = newestIndex &+ Int(ahead)
            }
        }
        if !late { lastSourceSequence = rtp.sequenceNumber }
        lastArrivalNanos = nowNanos
        let packet = MediaPacket(sequence: sequence, timestamp: rtp.timestamp &+ timestampOffset,
                                 marker: rtp.marker, payload: rtp.payload, startsFrame: !late && atFrameBoundary,
                                 index: index)
        packetsReceived += 1
        bytesReceived += datagram.readableBytes
        history[slot(index)] = packet
        if kind == .video { follow(packet, late: late) }
        if !late {
            newestIndex = index
            lastSequence = packet.sequence
            lastTimestamp = packet.timestamp
            atFrameBoundary = kind == .audio || packet.marker
        }
        return packet
    }

    /// A packet from the history by its place on the timeline (`MediaPacket.index`), if it
    /// came and is one of the last `historySize`.
    package func packet(index: Int) -> MediaPacket? {
        guard index >= 0, index <= newestIndex, newestIndex &- index < historySize,
              let packet = history[slot(index)], packet.index == index else { return nil }
        return packet
    }

    /// Indices are never negative; taken unsigned, no value could make a negative slot.
    private func slot(_ index: Int) -> Int { Int(UInt(bitPattern: index) % UInt(historySize)) }

    /// The same by stream sequence number, counted back from the newest.
    package func packet(sequence: UInt16) -> MediaPacket? {
        packet(index: newestIndex &- Int(lastSequence &- sequence))
    }

    /// A restart shows as a sequence number far from the last (RFC 3550 A.1's MAX_DROPOUT /
    /// MAX_MISORDER, scaled down: nothing real jumps 1000 packets at once).
    package static func isJump(from last: UInt16, to next: UInt16) -> Bool {
        let forward = next &- last
        return forward > 1000 && forward < UInt16.max - 100
    }

    private mutating func startFrame(timestamp: UInt32?) {
        frameTimestamp = timestamp
        framePackets = []
        frameBytes = 0
        frameOversized = false
        frameHasIDR = false
        frameHasSPS = false
        frameHasPPS = false
    }

    /// Assembles access units for the keyframe cache. A late packet goes into the unit being
    /// assembled, in sequence order, when it is one of its own; it never ends a unit.
    private mutating func follow(_ packet: MediaPacket, late: Bool) {
        if late {
            guard frameTimestamp == packet.timestamp else { return }
        } else if frameTimestamp != packet.timestamp {
            startFrame(timestamp: packet.timestamp)
        }
        if !frameOversized {
            if late {
                // The ingest takes packets up to 100 behind the newest (more is a restart), so
                // this walks at most that far.
                var index = framePackets.endIndex
                while index > 0 {
                    let ahead = framePackets[index - 1].sequence &- packet.sequence
                    if ahead == 0 { return }  // a duplicate
                    if ahead >= 0x8000 { break }
                    index -= 1
                }
                framePackets.insert(packet, at: index)
            } else {
                framePackets.append(packet)
            }
            frameBytes += packet.payload.readableBytes
            if framePackets.count > Self.maxFramePackets || frameBytes > Self.maxFrameBytes {
                // Too large to cache: what was assembled goes now, the rest is not kept.
                drops.oversizedFrame += framePackets.count
                frameOversized = true
                framePackets = []
                frameBytes = 0
            }
        } else {
            drops.oversizedFrame += 1
        }
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
        guard packet.marker, !late else { return }
        // A unit whose packets are not consecutive lost one (or its marker overtook one): a
        // keyframe with a hole would not decode, so the last whole one stays cached.
        let whole = framePackets.first.map { Int(packet.sequence &- $0.sequence) + 1 == framePackets.count } ?? false
        if !frameOversized, whole, frameHasIDR && (frameHasSPS && frameHasPPS || sps != nil && pps != nil) {
            var unit: [MediaPacket] = []
            // Parameter sets the access unit did not carry itself go first, as single NAL packets.
            if !frameHasSPS, let sps { unit.append(MediaPacket(sequence: 0, timestamp: packet.timestamp, marker: false, payload: sps)) }
            if !frameHasPPS, let pps { unit.append(MediaPacket(sequence: 0, timestamp: packet.timestamp, marker: false, payload: pps)) }
            keyframe = unit + framePackets
            keyframesSeen += 1
        }
        startFrame(timestamp: nil)
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
