import NIOCore
import Wire

/// OutboundTrack is one track as one viewer receives it: its own SSRC, sequence numbers and
/// timestamps, mapped from the stream timeline. The mapping is kept in segments (live
/// stretches and inserted keyframes), newest last, each with how many viewer numbers it
/// covers, so that a NACK finds the packet a number stood for. Spans are counted, not taken
/// as differences of 16-bit numbers, so a stretch longer than 2^16 packets stays right; and a
/// live stretch finds its packets by their place on the stream timeline (`MediaPacket.index`),
/// not by stream sequence number, which the stream may have reused since (it goes on while a
/// viewer waits for a frame start).
struct OutboundTrack {
    enum Segment {
        /// A live stretch: its newest viewer number was the stream packet at `newestIndex` on the
        /// timeline, and numbers behind it are as far behind on the timeline.
        case live(newestIndex: Int)
        /// These packets, sent with `timestamp`, one number each.
        case keyframe(timestamp: UInt32, packets: [MediaPacket])
    }

    /// How far back a segment's span is counted: half the number space. A NACK further back
    /// than that names a number sent again since (and the history is far shorter anyway).
    static let spanLimit = 0x8000

    let kind: IngestTrack.Kind
    let ssrc: UInt32
    let payloadType: UInt8
    let clockRate: UInt32
    /// Live packets flow (the viewer has been joined to the stream).
    private(set) var started = false
    /// One past the newest viewer sequence number sent: it only moves forward.
    private(set) var nextSequence: UInt16
    private var delta: UInt16 = 0
    private(set) var timestampDelta: UInt32 = 0
    private var timestampBase: UInt32
    /// Oldest first; `span`: the viewer numbers the segment covers, up to `spanLimit`.
    private var segments: [(segment: Segment, span: Int)] = []
    /// A PLI/FIR asked for a keyframe: insert the cached one at the next frame start.
    var keyframeWanted = false
    var lastKeyframeNanos: UInt64 = 0

    private(set) var packetsSent: UInt32 = 0
    private(set) var octetsSent: UInt32 = 0
    private(set) var lastTimestamp: UInt32 = 0
    private(set) var lastSendNanos: UInt64 = 0

    init(kind: IngestTrack.Kind, ssrc: UInt32, payloadType: UInt8, firstSequence: UInt16, timestampBase: UInt32) {
        self.kind = kind
        self.ssrc = ssrc
        self.payloadType = payloadType
        clockRate = kind == .video ? 90000 : 48000
        nextSequence = firstSequence
        self.timestampBase = timestampBase
    }

    /// A packet to write: its viewer-side header fields and payload.
    struct Send {
        var sequence: UInt16
        var timestamp: UInt32
        var marker: Bool
        var payload: ByteBuffer
    }

    /// Joins the stream when SRTP is ready. A video viewer gets the cached keyframe first
    /// (stamped as the newest frame), then live packets from the next frame start.
    mutating func join(track: IngestTrack, nowNanos: UInt64) -> [Send] {
        timestampDelta = timestampBase &- track.lastTimestamp
        var sends: [Send] = []
        if kind == .video, !track.keyframe.isEmpty {
            sends = insertKeyframe(track.keyframe, timestamp: timestampBase, nowNanos: nowNanos)
        }
        return sends
    }

    /// What becomes of one live packet of the stream.
    enum Forwarding {
        /// Not sent: the viewer waits for a frame start.
        case waiting
        /// Not sent: a reordered packet from before the current live stretch, whose viewer
        /// number would be one already sent for another packet (the keyframe inserted since).
        case late
        /// `inserted` is the cached keyframe when one was asked for (empty, and not
        /// allocated, for every other packet), then `live`.
        case send(inserted: [Send], live: Send)
    }

    mutating func forward(_ packet: MediaPacket, keyframe: [MediaPacket], nowNanos: UInt64) -> Forwarding {
        var inserted: [Send] = []
        if !started || keyframeWanted {
            guard packet.startsFrame else { return .waiting }
            if started, keyframeWanted, !keyframe.isEmpty {
                inserted = insertKeyframe(keyframe, timestamp: (packet.timestamp &+ timestampDelta) &- 1, nowNanos: nowNanos)
            }
            keyframeWanted = false
            delta = nextSequence &- packet.sequence
            segments.append((.live(newestIndex: packet.index), 0))
            trimSegments()
            started = true
        }
        let sequence = packet.sequence &+ delta
        let ahead = sequence &- nextSequence
        if ahead >= 0x8000 {
            // Behind the newest sent (the ingest let a reordered packet through): it goes out
            // with its own number if that belongs to this stretch, and moves nothing back.
            let back = Int(nextSequence &- 1 &- sequence)  // 0: the newest
            guard back < segments[segments.count - 1].span else { return .late }
        } else {
            segments[segments.count - 1].span = min(segments[segments.count - 1].span + Int(ahead) + 1, Self.spanLimit)
            segments[segments.count - 1].segment = .live(newestIndex: packet.index)
            nextSequence = sequence &+ 1
        }
        let send = Send(sequence: sequence, timestamp: packet.timestamp &+ timestampDelta, marker: packet.marker,
                        payload: packet.payload)
        return .send(inserted: inserted, live: send)
    }

    private mutating func insertKeyframe(_ packets: [MediaPacket], timestamp: UInt32, nowNanos: UInt64) -> [Send] {
        segments.append((.keyframe(timestamp: timestamp, packets: packets), min(packets.count, Self.spanLimit)))
        trimSegments()
        lastKeyframeNanos = nowNanos
        // IngestTrack bounds a keyframe far below 2^16 packets; the sequence numbers wrap as
        // RTP's do either way.
        var sends: [Send] = []
        sends.reserveCapacity(packets.count)
        var sequence = nextSequence
        for (index, packet) in packets.enumerated() {
            sends.append(Send(sequence: sequence, timestamp: timestamp, marker: index == packets.count - 1,
                              payload: packet.payload))
            sequence &+= 1
        }
        nextSequence = sequence
        return sends
    }

    /// Segments older than the history are of no use to NACKs.
    private mutating func trimSegments() {
        if segments.count > 8 { segments.removeFirst(segments.count - 8) }
    }

    /// Accounting for a packet that went out (sizes as RFC 3550 counts them: payload octets).
    mutating func sent(_ send: Send, nowNanos: UInt64) {
        packetsSent &+= 1
        octetsSent &+= UInt32(send.payload.readableBytes)
        // A late packet's older timestamp would set the Sender Report's RTP time back.
        if lastSendNanos == 0 || send.timestamp &- lastTimestamp < 0x8000_0000 {
            lastTimestamp = send.timestamp
            lastSendNanos = nowNanos
        }
    }

    /// What viewer sequence number `sequence` carried, for a retransmission: the segment
    /// whose span holds it, counting back from the newest number sent.
    func lookup(_ sequence: UInt16, in track: IngestTrack) -> Send? {
        var back = Int(nextSequence &- 1 &- sequence)  // 0: the newest
        guard back < Self.spanLimit else { return nil }
        for (segment, span) in segments.reversed() {
            guard back >= span else {
                switch segment {
                case .live(let newestIndex):
                    guard let packet = track.packet(index: newestIndex &- back) else { return nil }
                    return Send(sequence: sequence, timestamp: packet.timestamp &+ timestampDelta, marker: packet.marker,
                                payload: packet.payload)
                case .keyframe(let timestamp, let packets):
                    let index = packets.count - 1 - back
                    return Send(sequence: sequence, timestamp: timestamp, marker: index == packets.count - 1,
                                payload: packets[index].payload)
                }
            }
            back -= span
        }
        return nil
    }

    /// The RTP timestamp for "now" on this track (RFC 3550 §6.4.1: the SR's RTP time
    /// corresponds to its NTP time).
    func rtpTime(nowNanos: UInt64) -> UInt32 {
        guard lastSendNanos > 0 else { return timestampBase }
        let gap = MediaClock.elapsed(from: lastSendNanos, to: nowNanos)
        return lastTimestamp &+ MediaClock.rtpTicks(nanos: gap, clockRate: clockRate)
    }
}
