import DTLS
import Foundation
import FuzzSupport
import MediaEdge
import MediaRig
import NIOCore
import Store
import Wire

/// The media edge as a state machine: the input is a program of steps (ingest video and audio
/// RTP built from H.264 NAL units, bursts, source restarts and takeovers, clock moves, ticks,
/// viewers joining and leaving, NACK, PLI/FIR, reports, consent checks, stray datagrams).
/// Nothing may trap, and `MediaRig.drain` checks what viewers receive after every step.
@_cdecl("LLVMFuzzerTestOneInput")
public func fuzz(_ start: UnsafeRawPointer, _ count: Int) -> CInt {
    var input = FuzzInput(start, count)
    let shape = input.byte() % 3
    let rig = MediaRig(video: shape != 2, audio: shape != 1)
    var joins = 0
    var handshaken = false
    var bigBurst = false
    // Besides the one big IDR, 512 packets: each costs about 10 µs instrumented, so an input
    // stays near a millisecond.
    while !input.isEmpty, rig.ingested < (bigBurst ? 2 * IngestTrack.maxFramePackets : 0) + 512 {
        let op = input.byte() % 22
        if trace {
            FileHandle.standardError.write(Data("op \(op) at byte \(input.offset - 1), viewers \(rig.viewers.map { ($0.lastVideo, $0.lastAudio) })\n".utf8))
        }
        switch op {
        case 0, 1, 2:
            let (payload, marker) = videoPayload(&input, rig: rig)
            rig.ingest(.video, [rig.packet(.video, payload, marker: marker)])
        case 3:
            let flags = input.byte()
            if flags & 2 != 0 { rig.audio[rig.source].timestamp &+= 960 }
            rig.ingest(.audio, [rig.packet(.audio, [0xFC] + input.blob(limit: 40), marker: flags & 1 != 0)])
        case 4:
            rig.advance(nanos: UInt64(input.byte()) * 4_000_000)
        case 5:
            // Up to 18 hours at once: consent and setup timeouts, RTP and NTP time across gaps.
            rig.advance(nanos: UInt64(input.u16()) * 1_000_000_000)
        case 6:
            rig.tick()
        case 7:
            // A viewer joins, keyed directly; about one join in 32 (at most one per input) does
            // a real DTLS handshake, which costs more than the rest of an input.
            guard joins < 6 else { continue }
            joins += 1
            let how = input.byte()
            let handshake = how & 0x1F == 0 && !handshaken
            handshaken = handshaken || handshake
            rig.connect(from: TransportAddress(ip: IPAddress("127.0.0.1")!, port: 40000 + UInt16(joins)),
                        handshake: handshake, profile: how & 0x20 == 0 ? .aeadAes128Gcm : .aes128CmHmacSha1_80)
        case 8:
            guard !rig.viewers.isEmpty else { continue }
            rig.leave(rig.viewers[input.below(rig.viewers.count)])
        case 9:
            guard !rig.viewers.isEmpty else { continue }
            let viewer = rig.viewers[input.below(rig.viewers.count)]
            let audio = input.byte() & 7 == 0
            let last = (audio ? viewer.lastAudio : viewer.lastVideo) ?? input.u16()
            let lost = (0...input.below(16)).map { _ in last &- UInt16(input.byte()) }
            guard let ssrc = audio ? viewer.audioSSRC : viewer.videoSSRC else { continue }
            rig.rtcp([.receiverReport(ssrc: 1, reports: []), .nack(senderSSRC: 1, mediaSSRC: ssrc, lost: lost)], from: viewer)
        case 10:
            guard !rig.viewers.isEmpty else { continue }
            let viewer = rig.viewers[input.below(rig.viewers.count)]
            let ssrc = viewer.videoSSRC ?? 0
            let feedback: RTCPPacket = input.bool()
                ? .pictureLossIndication(senderSSRC: 1, mediaSSRC: ssrc)
                : .fullIntraRequest(senderSSRC: 1, requests: [(ssrc, input.byte())])
            rig.rtcp([.receiverReport(ssrc: 1, reports: []), feedback], from: viewer)
        case 11:
            // One read of the ingest socket: packets of one frame, in one call.
            let count = 1 + Int(input.byte() & 15)
            let (payload, marker) = videoPayload(&input, rig: rig)
            let burst = (0..<count).map { rig.packet(.video, payload, marker: marker && $0 == count - 1) }
            rig.ingest(.video, burst)
        case 12:
            // An IDR of many FU-A fragments with one timestamp (fault 1's shape), read 64
            // datagrams at a time, optionally ended by a marker: up to twice the keyframe cap,
            // or just around it. The cache check in `MediaRig.drain` fails at once if the cap
            // goes; fault 1 itself (65536 packets in a cached keyframe) was found with this
            // step before there was a cap. Costly: once per input, behind a magic byte (the
            // fuzzer learns it from the comparison).
            guard input.byte() == 0xB1, !bigBurst else { continue }
            bigBurst = true
            let cap = IngestTrack.maxFramePackets
            let count = [1024, cap / 2, cap - 1, cap, cap + 1, 2 * cap][input.below(6)]
            let end = input.bool()
            for chunk in stride(from: 0, to: count, by: 64) {
                let packets = (chunk..<min(chunk + 64, count)).map { index in
                    let last = index == count - 1 && end
                    return rig.packet(.video, index == 0 ? [0x7C, 0x85, 0xAA] : last ? [0x7C, 0x45, 0xBB] : [0x7C, 0x05, 0xAA],
                                      marker: last)
                }
                rig.ingest(.video, packets)
            }
        case 13:
            rig.source = input.below(MediaRig.sources.count)
        case 14:
            // The sender restarts: a new SSRC (the edge renumbers to continue its timeline).
            let audio = input.bool()
            let ssrc = input.u32()
            // The same SSRC as another source's: a takeover by it is no restart, its numbers go through.
            if audio {
                if rig.audio.contains(where: { $0.ssrc == ssrc }) { rig.audioContinuity = .unchecked }
                rig.audio[rig.source].ssrc = ssrc
                rig.audio[rig.source].newest = nil
            } else {
                if rig.video.contains(where: { $0.ssrc == ssrc }) { rig.videoContinuity = .unchecked }
                rig.video[rig.source].ssrc = ssrc
                rig.video[rig.source].newest = nil
            }
        case 15:
            // Loss or reordering (small moves), or a jump: past 1000 the edge treats it as a restart.
            let audio = input.bool()
            let small = input.bool()
            let move = small ? UInt16(bitPattern: Int16(Int(Int8(bitPattern: input.byte())) % (MediaRig.maximumJitter + 1)))
                : input.u16()
            var sender = audio ? rig.audio[rig.source] : rig.video[rig.source]
            sender.sequence &+= move
            // The next packet's step from the newest sent, as the edge (and so a viewer) sees
            // it; moves add up until a packet passes the newest again.
            let from = sender.newest ?? (sender.sequence &- move &- 1)
            let forward = sender.sequence &- from
            let continuity: MediaRig.Continuity
            if small {
                let distance = Int(Int16(bitPattern: forward)) - 1
                continuity = distance == 0 ? .strict : abs(distance) <= MediaRig.maximumJitter ? .bounded : .unchecked
            } else {
                // The edge takes a jump as a restart and numbers on by one. Moves add up: a
                // jump and then a move back is one step of their sum from the newest packet
                // (once the newest was reset here, and a sum of 999 was taken for a restart).
                continuity = IngestTrack.isJump(from: from, to: sender.sequence) || forward == 1 ? .strict : .unchecked
            }
            if audio {
                rig.audio[rig.source] = sender
                rig.audioContinuity = max(rig.audioContinuity, continuity)
            } else {
                rig.video[rig.source] = sender
                rig.videoContinuity = max(rig.videoContinuity, continuity)
            }
        case 16:
            guard !rig.viewers.isEmpty else { continue }
            let viewer = rig.viewers[input.below(rig.viewers.count)]
            let blocks = [viewer.videoSSRC, viewer.audioSSRC, input.u32()].compactMap { $0 }.map {
                ReportBlock(ssrc: $0, fractionLost: input.byte(), cumulativeLost: Int32(bitPattern: input.u32()) >> 8,
                            highestSequence: input.u32(), jitter: input.u32(), lastSenderReport: input.u32(),
                            delaySinceLastSenderReport: input.u32())
            }
            rig.rtcp([input.bool() ? .receiverReport(ssrc: 1, reports: blocks)
                      : .senderReport(ssrc: 1, ntpTime: UInt64(input.u32()) << 32, rtpTime: input.u32(), packetCount: 1,
                                      octetCount: 1, reports: blocks)], from: viewer)
        case 17:
            // A consent check, or a check from a new address (the viewer's network changed).
            guard !rig.viewers.isEmpty else { continue }
            let viewer = rig.viewers[input.below(rig.viewers.count)]
            let flags = input.byte()
            if flags & 2 != 0 { viewer.address.port &+= 100 }
            rig.receive(viewer.check(useCandidate: flags & 1 != 0), from: viewer)
        case 18:
            // RTCP as the fuzzer writes it (words 1, 2, 3 stand for the viewer's SSRCs).
            guard !rig.viewers.isEmpty else { continue }
            let viewer = rig.viewers[input.below(rig.viewers.count)]
            rig.rtcp(bytes: input.blob(), from: viewer)
        case 19:
            // Stray datagrams: to the media port from a viewer, or RTP-ish bytes to an ingest port.
            let flags = input.byte()
            let bytes = ByteBuffer(bytes: input.blob())
            if flags & 1 == 0, !rig.viewers.isEmpty {
                rig.receive(bytes, from: rig.viewers[Int(flags >> 1) % rig.viewers.count])
            } else if flags & 1 == 0 {
                rig.core.receive(bytes, from: MediaRig.sources[0], now: rig.now)
                rig.drain()
            } else {
                let kind: IngestTrack.Kind = flags & 2 == 0 ? .video : .audio
                if kind == .video { rig.videoContinuity = .unchecked } else { rig.audioContinuity = .unchecked }
                rig.ingest(kind, [bytes], from: MediaRig.sources[Int(flags >> 2) % MediaRig.sources.count])
            }
        case 20:
            // The stream is pinned to a source (or unpinned): others are refused from then on.
            let pin = input.below(3)
            var changed = rig.stream
            changed.source = pin == 2 ? nil : CIDR("\(MediaRig.sources[pin].ip)/32")
            rig.stream = changed
            _ = rig.core.setStreams([changed])
            rig.drain()
        default:
            // The stream's ports change: it is reopened and its viewers end.
            var changed = rig.stream
            changed.videoPort = changed.videoPort.map { $0 == 5004 ? 5008 : 5004 }
            changed.audioPort = changed.audioPort.map { $0 == 5006 ? 5010 : 5006 }
            rig.stream = changed
            _ = rig.core.setStreams([changed])
            rig.drain()
            rig.viewers.removeAll()
        }
    }
    return 0
}

/// MEDIAFUZZ_TRACE=1 prints the steps an input makes (to read a finding).
let trace = getenv("MEDIAFUZZ_TRACE") != nil

/// A video payload: the NAL units an H.264 sender writes (SPS, PPS, IDR and non-IDR slices,
/// FU-A start/middle/end, STAP-A with parameter sets, SEI) or fuzzer bytes; and the marker.
func videoPayload(_ input: inout FuzzInput, rig: MediaRig) -> (payload: [UInt8], marker: Bool) {
    let kind = input.byte()
    let flags = input.byte()
    if flags & 2 != 0 { rig.video[rig.source].timestamp &+= 3000 }
    let sps: [UInt8] = flags & 4 == 0 ? [0x67, 0x42, 0xC0, 0x1E, 0xDA] : [0x67, input.byte(), input.byte(), input.byte()]
    let pps: [UInt8] = [0x68, 0xCE, 0x3C, 0x80]
    let payload: [UInt8] = switch kind % 12 {
    case 0: sps
    case 1: pps
    case 2: [0x65, 0x88, 0x84]
    case 3: [0x41, 0x9A, input.byte()]
    case 4: [0x7C, 0x85, 0xAA]
    case 5: [0x7C, 0x05, 0xAA]
    case 6: [0x7C, 0x45, 0xBB]
    case 7: [0x78, 0, UInt8(sps.count)] + sps + [0, UInt8(pps.count)] + pps
    case 8: [0x78] + input.blob(limit: 64)
    case 9: [0x7C, 0x81, 0xCC]
    case 10: [0x06, 0x05, 0x01, 0x00]
    default: [kind >> 4 | 0x40] + input.blob(limit: 64)
    }
    return (payload, flags & 1 != 0)
}

@_cdecl("MediaFuzz_main")
public func fuzzMain(_ argc: CInt, _ argv: UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>?) -> CInt {
    runFuzzer(argc, argv) { start, length in fuzz(start, length) }
}
