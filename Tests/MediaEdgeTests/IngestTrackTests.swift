import NIOCore
import Testing
@testable import MediaEdge
@testable import Wire

/// The ingest track under hostile input: access units larger than the keyframe cache takes,
/// timestamps that never end a frame, strangers sending to the port, and gaps of days.
@Suite struct IngestTrackTests {
    static let camera = TransportAddress(ip: IPAddress("127.0.0.1")!, port: 50000)
    static let stranger = TransportAddress(ip: IPAddress("127.0.0.9")!, port: 50000)

    static func packet(_ sequence: UInt16, _ timestamp: UInt32, _ payload: [UInt8], marker: Bool, ssrc: UInt32 = 7)
        -> ByteBuffer
    {
        RTPPacket(marker: marker, payloadType: 96, sequenceNumber: sequence, timestamp: timestamp, ssrc: ssrc,
                  payload: ByteBuffer(bytes: payload)).bytes
    }

    static let sps: [UInt8] = [0x67, 0x42, 0xC0, 0x1E, 0xDA]
    static let pps: [UInt8] = [0x68, 0xCE, 0x3C, 0x80]
    static let idr: [UInt8] = [0x65, 0x88, 0x84]

    /// SPS, PPS, then `slices` IDR single-NAL packets with one timestamp, the marker on the last.
    static func keyframe(into track: inout IngestTrack, slices: Int, first: UInt16 = 1, timestamp: UInt32 = 9000,
                         from source: TransportAddress = camera) {
        var sequence = first
        _ = track.receive(packet(sequence, timestamp, sps, marker: false), from: source, nowNanos: 1)
        sequence &+= 1
        _ = track.receive(packet(sequence, timestamp, pps, marker: false), from: source, nowNanos: 1)
        for index in 0..<slices {
            sequence &+= 1
            _ = track.receive(packet(sequence, timestamp, idr, marker: index == slices - 1), from: source, nowNanos: 1)
        }
    }

    @Test func aKeyframeAtTheCacheLimitIsCachedAndOneMorePacketIsNot() {
        var track = IngestTrack(kind: .video)
        Self.keyframe(into: &track, slices: IngestTrack.maxFramePackets - 2)
        #expect(track.keyframe.count == IngestTrack.maxFramePackets)
        #expect(track.drops.oversizedFrame == 0)

        var over = IngestTrack(kind: .video)
        Self.keyframe(into: &over, slices: IngestTrack.maxFramePackets - 1)
        #expect(over.keyframe.isEmpty)
        #expect(over.drops.oversizedFrame == IngestTrack.maxFramePackets + 1)
        #expect(over.keyframesSeen == 0)
    }

    /// The crash found by hand: > 65535 IDR packets in one access unit, then a viewer joins.
    /// The unit is not cached (a counted drop); the one cached before it stays, and a normal
    /// keyframe after it is cached again.
    @Test func anAccessUnitOfSeventyThousandPacketsIsNotCached() {
        var track = IngestTrack(kind: .video)
        Self.keyframe(into: &track, slices: 3, first: 1, timestamp: 1000)
        let good = track.keyframe
        #expect(good.count == 5)
        Self.keyframe(into: &track, slices: 70_000, first: 100, timestamp: 4000)
        #expect(track.keyframe.map(\.sequence) == good.map(\.sequence))
        #expect(track.drops.oversizedFrame == 70_002)
        Self.keyframe(into: &track, slices: 2, first: UInt16(truncatingIfNeeded: 100 + 70_002), timestamp: 7000)
        #expect(track.keyframe.count == 4 && track.keyframe[0].timestamp == 7000)
    }

    /// Packets with one timestamp and no marker used to be kept forever (200k packets of 1 KB
    /// grew the server by 470 MB); beyond the cache's bounds they are counted, not kept.
    @Test func aFrameThatNeverEndsIsBoundedInPacketsAndBytes() {
        var track = IngestTrack(kind: .video)
        let big = [UInt8](repeating: 0x41, count: 1200)
        var forwarded = 0
        for sequence in 0..<4000 {
            let packet = track.receive(Self.packet(UInt16(sequence), 1234, big, marker: false), from: Self.camera, nowNanos: 1)
            if packet != nil { forwarded += 1 }
        }
        #expect(forwarded == 4000)  // still forwarded live
        // 4 MiB / 1200 bytes: the 3496th packet crosses the byte bound, below the packet bound;
        // every packet of the unit is counted.
        #expect(track.drops.oversizedFrame == 4000)
        #expect(track.keyframe.isEmpty)
    }

    @Test func theFirstSourceIsFollowedUntilItHasBeenSilentForThreeSeconds() {
        var track = IngestTrack(kind: .audio)
        let second: UInt64 = 1_000_000_000
        #expect(track.receive(Self.packet(1, 960, [1], marker: true), from: Self.camera, nowNanos: 10 * second) != nil)
        #expect(track.source == Self.camera)
        // A stranger's packets are dropped while the camera is live, even valid RTP.
        #expect(track.receive(Self.packet(2, 1920, [1], marker: true), from: Self.stranger, nowNanos: 11 * second) == nil)
        #expect(track.receive(Self.packet(2, 1920, [1], marker: true), from: Self.stranger,
                              nowNanos: 13 * second - 1) == nil)
        #expect(track.drops.foreignSource == 2)
        // Garbage from a stranger after the silence does not take the port over either.
        #expect(track.receive(ByteBuffer(bytes: [0xFF, 0]), from: Self.stranger, nowNanos: 13 * second) == nil)
        #expect(track.source == Self.camera && track.drops.malformed == 1)
        // Three seconds of silence: the next sender that sends RTP is followed.
        let taken = track.receive(Self.packet(500, 77, [2], marker: true, ssrc: 9), from: Self.stranger, nowNanos: 13 * second)
        #expect(taken != nil && track.source == Self.stranger)
        #expect(track.receive(Self.packet(3, 2880, [1], marker: true), from: Self.camera, nowNanos: 14 * second) == nil)
        #expect(track.drops.foreignSource == 3)
    }

    /// The NACK history keeps the last `historySize` packets: older ones are gone, not answered
    /// with the packet that took their slot.
    @Test func theHistoryKeepsTheLastPacketsOnly() throws {
        var track = IngestTrack(kind: .audio, historySize: 4)
        var sequences: [UInt16] = []
        for index in 0..<6 {
            let received = track.receive(Self.packet(100 + UInt16(index), 960 * UInt32(index + 1), [1], marker: true),
                                         from: Self.camera, nowNanos: 1 + UInt64(index))
            sequences.append(try #require(received).sequence)
        }
        #expect(sequences.prefix(2).allSatisfy { track.packet(sequence: $0) == nil })
        #expect(sequences.suffix(4).allSatisfy { track.packet(sequence: $0)?.sequence == $0 })
        #expect(IngestTrack(kind: .video).historySize == IngestTrack.defaultHistorySize)
        #expect(IngestTrack(kind: .video, historySize: 0).historySize == 1)
    }

    /// Each number of the timeline goes out once. A copy (or other bytes under a number the
    /// track took) is a counted drop, and so is a late packet older than the history, whose
    /// number may have gone out already; one the history has a free place for goes out.
    @Test func aNumberIsForwardedOnceAndLatePacketsOlderThanTheHistoryAreDropped() throws {
        var track = IngestTrack(kind: .audio, historySize: 8)
        for sequence in [100, 101, 103] as [UInt16] {
            _ = track.receive(Self.packet(sequence, 960 * UInt32(sequence), [1], marker: true), from: Self.camera, nowNanos: 1)
        }
        #expect(track.receive(Self.packet(101, 96960, [2], marker: true), from: Self.camera, nowNanos: 2) == nil)
        #expect(track.receive(Self.packet(103, 98880, [1], marker: true), from: Self.camera, nowNanos: 2) == nil)
        #expect(track.drops.duplicate == 2 && track.packet(sequence: 101)?.payload == ByteBuffer(bytes: [1]))
        let received = track.receive(Self.packet(102, 97920, [3], marker: true), from: Self.camera, nowNanos: 3)
        let late = try #require(received)
        #expect(late.sequence == 102 && track.packet(sequence: 102)?.payload == ByteBuffer(bytes: [3]))
        #expect(track.receive(Self.packet(102, 97920, [3], marker: true), from: Self.camera, nowNanos: 3) == nil)
        #expect(track.drops.duplicate == 3 && track.drops.late == 0)
        // Ten numbers on, 104 is further back than the eight the history holds.
        _ = track.receive(Self.packet(113, 108480, [1], marker: true), from: Self.camera, nowNanos: 4)
        #expect(track.receive(Self.packet(104, 99840, [4], marker: true), from: Self.camera, nowNanos: 4) == nil)
        #expect(track.drops.late == 1 && track.drops.duplicate == 3)
    }

    /// A slot the timeline skipped for 2^16 numbers still holds a packet under the number the
    /// timeline now gives another: a NACK for that number is not answered with it.
    @Test func theHistoryDoesNotAnswerWithAPacketTwoToTheSixteenOlder() throws {
        var track = IngestTrack(kind: .audio, historySize: 8)
        var sequence: UInt16 = 1000
        _ = track.receive(Self.packet(sequence, 0, [0xAA], marker: true), from: Self.camera, nowNanos: 1)
        // Steps of 16 (never onto 1000's slot, which is 1000 mod 8) all the way round.
        for _ in 0..<(65536 / 16) {
            sequence &+= 16
            #expect(track.receive(Self.packet(sequence &+ 1, 0, [1], marker: true), from: Self.camera, nowNanos: 1) != nil)
        }
        #expect(track.lastSequence == 1001 && track.sourceRestarts == 0)
        #expect(track.packet(sequence: 1001)?.payload == ByteBuffer(bytes: [1]))
        #expect(track.packet(sequence: 1000) == nil)
        // And the number is free for its own packet, arriving late.
        #expect(track.receive(Self.packet(1000, 0, [0xBB], marker: true), from: Self.camera, nowNanos: 1) != nil)
        #expect(track.packet(sequence: 1000)?.payload == ByteBuffer(bytes: [0xBB]) && track.drops.duplicate == 0)
    }

    @Test func aPinnedSourceRefusesEveryOtherAddressEvenAfterSilence() {
        var track = IngestTrack(kind: .audio, pinnedSource: CIDR("127.0.0.0/30"))
        #expect(track.receive(Self.packet(1, 960, [1], marker: true), from: Self.stranger, nowNanos: 1) == nil)
        #expect(track.receive(Self.packet(1, 960, [1], marker: true), from: Self.stranger, nowNanos: 100_000_000_000) == nil)
        #expect(track.drops.foreignSource == 2 && !track.hasData)
        #expect(track.receive(Self.packet(1, 960, [1], marker: true), from: Self.camera, nowNanos: 100_000_000_001) != nil)
        let otherPort = TransportAddress(ip: IPAddress("127.0.0.2")!, port: 1)
        #expect(track.receive(Self.packet(2, 1920, [1], marker: true), from: otherPort, nowNanos: 100_000_000_002) == nil)
    }

    /// A camera switched off over a weekend: (60 h × 90 kHz) in nanoseconds overflowed 64 bits.
    /// The timeline goes on by the gap modulo 2^32, as RTP timestamps wrap.
    @Test func aRestartAfterSixtyHoursOfSilenceContinuesTheTimeline() throws {
        var track = IngestTrack(kind: .video)
        let received = track.receive(Self.packet(10, 3000, [0x41, 1], marker: true), from: Self.camera, nowNanos: 5_000_000_000)
        let before = try #require(received)
        let hours60: UInt64 = 60 * 3600 * 1_000_000_000
        let restarted = track.receive(Self.packet(9000, 1, [0x41, 1], marker: true, ssrc: 99), from: Self.camera,
                                      nowNanos: 5_000_000_000 + hours60)
        let after = try #require(restarted)
        #expect(after.sequence == before.sequence &+ 1)
        #expect(after.timestamp &- before.timestamp == UInt32(truncatingIfNeeded: 60 * 3600 * 90_000 as UInt64))
        // A clock that went backwards counts as no time at all (the smallest step, 1 tick).
        let backwards = track.receive(Self.packet(50000, 1, [0x41, 1], marker: true, ssrc: 100), from: Self.camera, nowNanos: 1)
        let back = try #require(backwards)
        #expect(back.timestamp == after.timestamp &+ 1)
    }
}
