import DTLS
import Foundation
import NIOCore
import SRTP
import Store
import Testing
@testable import MediaEdge
@testable import Wire

/// The media edge's state machine with a test clock and an in-memory viewer: ICE-lite
/// checks, DTLS with the fingerprint check, SRTP media (keyframe first, then live), NACK with
/// RTX, PLI, Sender Reports, consent expiry, and what it drops.
@Suite struct MediaCoreTests {
    static let client = TransportAddress(ip: IPAddress("127.0.0.1")!, port: 40000)
    /// Where the test's camera sends ingest RTP from.
    static let camera = TransportAddress(ip: IPAddress("127.0.0.1")!, port: 50000)
    static let offerText = try! String(contentsOf: WHEPAnswerTests.examples.appendingPathComponent("aiortc-whep-offer.sdp"),
                                       encoding: .utf8)

    /// A viewer as a browser would be: its own certificate, DTLS client, SRTP receiver.
    final class FakeViewer {
        let certificate: DTLSCertificate
        let dtls: DTLSEndpoint
        var srtpIn: SRTPSession?
        /// One SRTCP sender for the session: a new one would restart the SRTCP index (a replay).
        var srtcpOut: SRTPSession?
        var ufrag = "", password = ""
        var videoSSRC: UInt32 = 0, rtxSSRC: UInt32 = 0
        var id = ""

        init() throws {
            certificate = try DTLSCertificate.generate(commonName: "viewer")
            dtls = try DTLSEndpoint(context: try DTLSContext(certificate: certificate, srtpProfiles: [.aeadAes128Gcm, .aes128CmHmacSha1_80]), role: .client,
                                    remoteFingerprints: nil)
        }

        /// The aiortc example offer, announcing this viewer's certificate (or `fingerprint`).
        func offer(fingerprint: String? = nil) -> String {
            let original = "AF:A5:8D:5D:3D:67:C3:B6:BA:74:AD:67:D1:35:58:62:B4:9E:AF:F7:75:00:22:71:7F:B4:C9:F1:F4:7C:45:9E"
            precondition(MediaCoreTests.offerText.contains(original))
            return MediaCoreTests.offerText.replacingOccurrences(of: original, with: fingerprint ?? certificate.fingerprint)
        }

        func take(answer text: String, id: String) throws {
            let answer = try SessionDescription(parsing: text)
            let video = answer.media[0]
            (ufrag, password) = answer.iceCredentials(for: video)!
            let ssrcs = video.values("ssrc-group")[0].split(separator: " ").dropFirst().compactMap { UInt32($0) }
            (videoSSRC, rtxSSRC) = (ssrcs[0], ssrcs[1])
            self.id = id
        }

        func check(key: String? = nil, useCandidate: Bool = true) -> ByteBuffer {
            var message = STUNMessage(.binding, .request)
            message.append(.username, Array("\(ufrag):d0N5".utf8))
            if useCandidate { message.append(.useCandidate, []) }
            return ByteBuffer(bytes: message.encoded(integrityKey: Array((key ?? password).utf8), fingerprint: true))
        }
    }

    struct Rig {
        var core: MediaCore
        var nanos: UInt64 = 1_000_000_000
        var sequence: UInt16 = 1000
        var timestamp: UInt32 = 90000
        /// The wall clock at `nanos` 0, in Unix seconds.
        var wallBase: Double = 1_800_000_000

        init() throws {
            let context = try DTLSContext(certificate: try DTLSCertificate.generate(), srtpProfiles: [.aeadAes128Gcm, .aes128CmHmacSha1_80])
            core = MediaCore(configuration: .init(candidates: [TransportAddress(ip: IPAddress("127.0.0.1")!, port: 8189)]),
                             context: context)
            _ = core.setStreams([MediaStream(name: "cam", videoPort: 5004, audioPort: 5006)])
        }

        var now: MediaTime { MediaTime(nanos: nanos, wall: wallBase + Double(nanos) / 1e9) }

        mutating func advance(milliseconds: UInt64) { nanos += milliseconds * 1_000_000 }

        /// The next RTP packet of the video source, as a datagram.
        mutating func packet(_ payload: [UInt8], marker: Bool, ssrc: UInt32 = 0xCAFE) -> ByteBuffer {
            defer { sequence &+= 1 }
            return RTPPacket(marker: marker, payloadType: 96, sequenceNumber: sequence, timestamp: timestamp, ssrc: ssrc,
                             payload: ByteBuffer(bytes: payload)).bytes
        }

        /// One RTP packet into the video ingest.
        mutating func ingest(_ payload: [UInt8], marker: Bool, ssrc: UInt32 = 0xCAFE) {
            core.ingest(stream: "cam", kind: .video, datagram: packet(payload, marker: marker, ssrc: ssrc),
                        from: MediaCoreTests.camera, now: now)
        }

        /// SPS + PPS + an IDR in two FU-A fragments: one access unit.
        mutating func keyframe() {
            ingest([0x67, 0x42, 0xC0, 0x1E, 0xDA], marker: false)
            ingest([0x68, 0xCE, 0x3C, 0x80], marker: false)
            ingest([0x7C, 0x85] + [UInt8](repeating: 0xAA, count: 100), marker: false)
            ingest([0x7C, 0x45] + [UInt8](repeating: 0xBB, count: 50), marker: true)
            timestamp &+= 3000
        }

        mutating func frame() {
            ingest([0x41, 0x9A, 0x01], marker: true)
            timestamp &+= 3000
        }

        mutating func drain() -> [(bytes: [UInt8], to: TransportAddress)] {
            defer { core.outbox.removeAll() }
            return core.outbox.map { (Array($0.bytes.readableBytesView), $0.to) }
        }

        /// Offer, answer, ICE check, DTLS handshake: a playing viewer.
        mutating func connect(_ viewer: FakeViewer, fingerprint: String? = nil, from address: TransportAddress = MediaCoreTests.client)
            throws
        {
            let (id, answer) = try core.addViewer(stream: "cam", offer: viewer.offer(fingerprint: fingerprint), token: nil, now: now)
            try viewer.take(answer: answer, id: id)
            core.receive(viewer.check(), from: address, now: now)
            let replies = drain()
            #expect(replies.count == 1)
            let response = try STUNMessage(bytes: replies[0].bytes)
            #expect(response.type == STUNMessageType(method: .binding, class: .successResponse))
            #expect(response.verifyIntegrity(key: Array(viewer.password.utf8)))
            #expect(response.fingerprintIsValid == true)
            #expect(try response.xorAddress(.xorMappedAddress) == address)
            var toServer = viewer.dtls.start().datagrams
            for _ in 0..<10 where !toServer.isEmpty {
                for datagram in toServer { core.receive(ByteBuffer(bytes: datagram), from: address, now: now) }
                toServer = []
                for datagram in core.outbox where PacketKind(firstByte: datagram.bytes.readableBytesView.first!) == .dtls {
                    toServer += viewer.dtls.receive(Array(datagram.bytes.readableBytesView)).datagrams
                }
                core.outbox.removeAll { PacketKind(firstByte: $0.bytes.readableBytesView.first!) == .dtls }
            }
            if viewer.dtls.state == .connected {
                let keys = try viewer.dtls.srtpKeyingMaterial()
                viewer.srtpIn = try SRTPSession(profile: keys.profile, key: keys.serverKey, salt: keys.serverSalt,
                                                direction: .inbound)
            }
        }

        /// The RTP packets the core sent, decrypted.
        mutating func received(by viewer: FakeViewer) throws -> [RTPPacket] {
            try drain().filter { RTPPacket.isRTCP(ByteBuffer(bytes: $0.bytes)) == false && $0.bytes[0] >= 128 }.map {
                try RTPPacket(datagram: ByteBuffer(bytes: try viewer.srtpIn!.unprotect(srtp: $0.bytes)))
            }
        }
    }

    @Test func aViewerConnectsAndGetsTheCachedKeyframeThenLivePackets() throws {
        var rig = try Rig()
        #expect(throws: WHEPError.noData("cam")) { try rig.core.addViewer(stream: "cam", offer: Self.offerText, token: nil, now: rig.now) }
        rig.keyframe()
        rig.frame()
        rig.frame()
        let viewer = try FakeViewer()
        try rig.connect(viewer)
        #expect(viewer.dtls.state == .connected)
        #expect(viewer.dtls.remoteFingerprint()?.hex == rig.core.context.certificate.fingerprint)

        // Joined mid-GOP: the cached access unit (SPS, PPS, IDR×2) comes first, one timestamp.
        let first = try rig.received(by: viewer)
        #expect(first.count == 4)
        #expect(first.map { $0.payload.getInteger(at: 0, as: UInt8.self)! & 0x1F } == [7, 8, 28, 28])
        #expect(first.allSatisfy { $0.ssrc == viewer.videoSSRC && $0.payloadType == 101 })
        #expect(Set(first.map(\.timestamp)).count == 1)
        #expect(first.map(\.marker) == [false, false, false, true])
        #expect(zip(first, first.dropFirst()).allSatisfy { $1.sequenceNumber == $0.sequenceNumber &+ 1 })

        // Live frames follow: the next sequence number, a later timestamp.
        rig.advance(milliseconds: 33)
        rig.frame()
        let live = try rig.received(by: viewer)
        #expect(live.count == 1)
        #expect(live[0].sequenceNumber == first.last!.sequenceNumber &+ 1)
        #expect(live[0].timestamp &- first[0].timestamp > 0 && live[0].timestamp &- first[0].timestamp < 90000)
        #expect(rig.core.counters.viewersStarted == 1 && rig.core.counters.keyframesSent == 1)
    }

    /// One read of an ingest socket can give several datagrams. They are forwarded viewer by
    /// viewer, and each viewer gets every one, in order, renumbered as one at a time would be;
    /// a keyframe a PLI asked for is the one cached when its packet came, not one later in the burst.
    @Test func aBurstOfDatagramsReachesEachViewerWholeAndInOrder() throws {
        var rig = try Rig()
        rig.keyframe()
        let first = try FakeViewer(), second = try FakeViewer()
        let secondAddress = TransportAddress(ip: IPAddress("127.0.0.1")!, port: 40002)
        try rig.connect(first)
        let cached = try rig.received(by: first).map { Array($0.payload.readableBytesView) }  // the cached keyframe
        try rig.connect(second, from: secondAddress)
        _ = try rig.received(by: second)
        #expect(cached.count == 4)
        rig.frame()  // both are live
        _ = rig.drain()
        // The first viewer asks for a keyframe: it goes in before the burst's first frame.
        rig.advance(milliseconds: 500)
        rig.core.receive(try Self.srtcp(.pictureLossIndication(senderSSRC: 1, mediaSSRC: first.videoSSRC), viewer: first),
                         from: Self.client, now: rig.now)
        #expect(rig.drain().isEmpty)
        #expect(rig.core.counters.plis == 1 && rig.core.counters.srtcpFailures == 0)

        // A frame, a new keyframe (SPS, PPS, two FU-A fragments), a frame: one burst.
        var burst = [rig.packet([0x41, 0x9A, 0x01], marker: true)]
        rig.timestamp &+= 3000
        burst += [rig.packet([0x67, 0x42, 0xC0, 0x1E, 0xDA], marker: false), rig.packet([0x68, 0xCE, 0x3C, 0x80], marker: false),
                  rig.packet([0x7C, 0x85, 0xAA], marker: false), rig.packet([0x7C, 0x45, 0xBB], marker: true)]
        rig.timestamp &+= 3000
        burst.append(rig.packet([0x41, 0x9A, 0x02], marker: true))
        let sentBefore = rig.core.counters.packetsSent
        rig.core.ingest(stream: "cam", kind: .video, datagrams: burst.map { ($0, Self.camera) }, now: rig.now)

        let out = rig.drain()
        let destinations = out.map { $0.to }
        let expected = Array(repeating: MediaCoreTests.client, count: 4 + 6) + Array(repeating: secondAddress, count: 6)
        #expect(destinations == expected)
        #expect(rig.core.counters.packetsSent == sentBefore + 16)
        let sent = burst.map { try! RTPPacket(datagram: $0) }
        for (viewer, address) in [(first, MediaCoreTests.client), (second, secondAddress)] {
            var got = try out.filter { $0.to == address }.map { try RTPPacket(datagram: ByteBuffer(bytes: try viewer.srtpIn!.unprotect(srtp: $0.bytes))) }
            #expect(zip(got, got.dropFirst()).allSatisfy { $1.sequenceNumber == $0.sequenceNumber &+ 1 })
            #expect(got.allSatisfy { $0.ssrc == viewer.videoSSRC })
            if viewer === first {
                let inserted = got.prefix(4)
                #expect(inserted.map { Array($0.payload.readableBytesView) } == cached)  // the old keyframe, not the burst's
                got.removeFirst(4)
            }
            #expect(got.map { Array($0.payload.readableBytesView) } == sent.map { Array($0.payload.readableBytesView) })
            #expect(got.map(\.marker) == sent.map(\.marker))
            #expect(zip(got, sent).allSatisfy { $0.timestamp &- got[0].timestamp == $1.timestamp &- sent[0].timestamp })
        }
    }

    @Test func nackResendsAsRTXAndPLIResendsTheKeyframeAtTheNextFrame() throws {
        var rig = try Rig()
        rig.keyframe()
        let viewer = try FakeViewer()
        try rig.connect(viewer)
        let keyframe = try rig.received(by: viewer)
        rig.frame()
        let live = try rig.received(by: viewer)
        #expect(viewer.dtls.state == .connected)
        #expect(keyframe.count == 4)
        try #require(live.count == 1)

        // NACK the PPS (keyframe segment) and the live packet: two RTX packets carrying them.
        let nack = RTCPPacket.nack(senderSSRC: 1, mediaSSRC: viewer.videoSSRC,
                                   lost: [keyframe[1].sequenceNumber, live[0].sequenceNumber])
        rig.core.receive(try Self.srtcp(nack, viewer: viewer), from: Self.client, now: rig.now)
        let resent = try rig.received(by: viewer)
        #expect(resent.count == 2)
        #expect(resent.allSatisfy { $0.ssrc == viewer.rtxSSRC && $0.payloadType == 102 })
        #expect(resent[0].payload.getInteger(at: 0, as: UInt16.self) == keyframe[1].sequenceNumber)
        #expect(resent[0].payload.getInteger(at: 2, as: UInt8.self) == 0x68)
        #expect(resent[1].payload.getInteger(at: 0, as: UInt16.self) == live[0].sequenceNumber)
        #expect(resent[1].timestamp == live[0].timestamp)
        #expect(rig.core.counters.nacks == 1 && rig.core.counters.retransmitted == 2)

        // PLI: the cached keyframe goes out before the next frame, then the frame itself.
        rig.advance(milliseconds: 500)
        rig.core.receive(try Self.srtcp(.pictureLossIndication(senderSSRC: 1, mediaSSRC: viewer.videoSSRC), viewer: viewer),
                         from: Self.client, now: rig.now)
        rig.frame()
        let after = try rig.received(by: viewer)
        #expect(after.map { $0.payload.getInteger(at: 0, as: UInt8.self)! & 0x1F } == [7, 8, 28, 28, 1])
        #expect(after.first!.sequenceNumber == live[0].sequenceNumber &+ 1)
        #expect(after[0].timestamp < after[4].timestamp)
        #expect(rig.core.counters.plis == 1)

        // A NACK for a packet sent after the keyframe insert maps to the right one.
        rig.core.receive(try Self.srtcp(.nack(senderSSRC: 1, mediaSSRC: viewer.videoSSRC, lost: [after[4].sequenceNumber]),
                                        viewer: viewer), from: Self.client, now: rig.now)
        let again = try rig.received(by: viewer)
        #expect(again.count == 1 && again[0].payload.getInteger(at: 2, as: UInt8.self) == 0x41)
    }

    /// Packets reordered on the way to the ingest (found by MediaFuzz): each viewer number
    /// stands for one packet only, numbering goes on after the newest, a packet from before an
    /// inserted keyframe is a counted drop, and the keyframe cache is assembled in order.
    @Test func reorderedIngestPacketsNeverReuseAViewerNumber() throws {
        var rig = try Rig()
        /// One packet with stream number `sequence` (the rig's own counter is put back).
        func ingest(_ sequence: UInt16, _ payload: [UInt8], marker: Bool) {
            let next = rig.sequence
            rig.sequence = sequence
            rig.ingest(payload, marker: marker)
            rig.sequence = max(next, sequence &+ 1)
        }
        // A keyframe whose two middle fragments swap places: SPS, PPS, start, end of a
        // four-fragment IDR, with 1003 arriving before 1002.
        ingest(1000, [0x67, 0x42, 0xC0, 0x1E, 0xDA], marker: false)
        ingest(1001, [0x68, 0xCE, 0x3C, 0x80], marker: false)
        ingest(1003, [0x7C, 0x05, 0x02], marker: false)
        ingest(1002, [0x7C, 0x85, 0x01], marker: false)
        ingest(1004, [0x7C, 0x45, 0x03], marker: true)
        rig.timestamp &+= 3000
        let viewer = try FakeViewer()
        try rig.connect(viewer)
        let keyframe = try rig.received(by: viewer)
        #expect(keyframe.map { Array($0.payload.readableBytesView) }
                == [[0x67, 0x42, 0xC0, 0x1E, 0xDA], [0x68, 0xCE, 0x3C, 0x80], [0x7C, 0x85, 0x01], [0x7C, 0x05, 0x02],
                    [0x7C, 0x45, 0x03]])

        // The viewer's live stretch starts at the next frame. Then two frames arrive swapped:
        // the late one goes out with its own number, and the next frame continues after the
        // newest, not after the late one. 1008 is lost on the way (for now).
        ingest(1005, [0x41, 0x9A, 0x05], marker: true)
        rig.timestamp &+= 3000
        ingest(1007, [0x41, 0x9A, 0x07], marker: true)
        ingest(1006, [0x41, 0x9A, 0x06], marker: true)
        rig.timestamp &+= 6000
        ingest(1009, [0x41, 0x9A, 0x09], marker: true)
        let live = try rig.received(by: viewer)
        let base = keyframe.last!.sequenceNumber
        #expect(live.map(\.sequenceNumber) == [1, 3, 2, 5].map { base &+ $0 })
        #expect(live.map { $0.payload.getInteger(at: 2, as: UInt8.self)! } == [5, 7, 6, 9])

        // A PLI: the cached keyframe goes in before the next frame.
        rig.advance(milliseconds: 500)
        rig.core.receive(try Self.srtcp(.pictureLossIndication(senderSSRC: 1, mediaSSRC: viewer.videoSSRC), viewer: viewer),
                         from: Self.client, now: rig.now)
        rig.timestamp &+= 3000
        ingest(1010, [0x41, 0x9A, 0x0A], marker: true)
        let inserted = try rig.received(by: viewer)
        #expect(inserted.map(\.sequenceNumber) == (6...11).map { base &+ $0 })
        #expect(inserted.last?.payload.getInteger(at: 2, as: UInt8.self) == 0x0A)
        #expect(rig.core.counters.latePackets == 0)
        // A second 1007, with other bytes (found by MediaFuzz): the ingest has that number
        // already, so it goes nowhere. Forwarded, it would be a second packet under one viewer
        // number, which SRTP would encrypt with the first one's keystream.
        ingest(1007, [0x41, 0x9A, 0x77], marker: true)
        #expect(try rig.received(by: viewer).isEmpty)
        #expect(rig.core.streams["cam"]?.video?.drops.duplicate == 1)
        // Published with the core's counters (the ingest's late drops were summed nowhere).
        #expect(rig.core.counters.ingest.duplicate == 1)
        // 1008 comes at last: its number in the viewer's old stretch is behind the inserted
        // keyframe, so the viewer does not get it live (a counted drop)...
        ingest(1008, [0x41, 0x9A, 0x08], marker: true)
        #expect(try rig.received(by: viewer).isEmpty)
        #expect(rig.core.counters.latePackets == 1)
        rig.timestamp &+= 3000
        ingest(1011, [0x41, 0x9A, 0x0B], marker: true)
        let next = try rig.received(by: viewer)
        #expect(next.map(\.sequenceNumber) == [base &+ 12])

        // A NACK for every number the viewer has: each resends the packet it stood for. And the
        // number the viewer lost (base + 4) is now answered with 1008, the packet it stands for.
        let all = keyframe + live + inserted + next
        rig.core.receive(try Self.srtcp(.nack(senderSSRC: 1, mediaSSRC: viewer.videoSSRC,
                                              lost: all.map(\.sequenceNumber) + [base &+ 4]),
                                        viewer: viewer), from: Self.client, now: rig.now)
        let resent = try rig.received(by: viewer)
        #expect(resent.count == all.count + 1)
        var original = Dictionary(uniqueKeysWithValues: all.map { ($0.sequenceNumber, Array($0.payload.readableBytesView)) })
        original[base &+ 4] = [0x41, 0x9A, 0x08]
        for packet in resent {
            let number = packet.payload.getInteger(at: packet.payload.readerIndex, as: UInt16.self)!
            #expect(Array(packet.payload.readableBytesView.dropFirst(2)) == original[number])
        }
    }

    /// From a second read of the reorder change: a packet the new source sent before the one
    /// that restarted the timeline would take a number the old source had, so it is dropped
    /// (counted); a keyframe whose marker overtook a fragment is not cached with a hole.
    @Test func latePacketsFromBeforeARestartAreDroppedAndAKeyframeWithAHoleIsNotCached() throws {
        var track = IngestTrack(kind: .video)
        func packet(_ sequence: UInt16, _ timestamp: UInt32, ssrc: UInt32, payload: [UInt8] = [0x41, 1], marker: Bool = true) -> ByteBuffer {
            RTPPacket(marker: marker, payloadType: 96, sequenceNumber: sequence, timestamp: timestamp, ssrc: ssrc,
                      payload: ByteBuffer(bytes: payload)).bytes
        }
        for (index, sequence) in (100...200).enumerated() {
            _ = track.receive(packet(UInt16(sequence), UInt32(index) * 3000, ssrc: 1), from: Self.camera, nowNanos: UInt64(index) * 1_000_000)
        }
        let restarted = track.receive(packet(5000, 777, ssrc: 2), from: Self.camera, nowNanos: 200_000_000)
        #expect(restarted?.sequence == 201 && track.sourceRestarts == 1)
        #expect(track.receive(packet(4999, 777, ssrc: 2), from: Self.camera, nowNanos: 200_000_000) == nil)
        #expect(track.drops.late == 1 && track.packet(sequence: 200)?.payload == ByteBuffer(bytes: [0x41, 1]))
        // Late within this source's run: forwarded (numbered as sent), not dropped.
        _ = track.receive(packet(5002, 777, ssrc: 2), from: Self.camera, nowNanos: 201_000_000)
        #expect(track.receive(packet(5001, 777, ssrc: 2), from: Self.camera, nowNanos: 201_000_000)?.sequence == 202)
        #expect(track.drops.late == 1)

        // SPS, PPS, IDR start, IDR end (marker) overtaking the IDR middle: not cached.
        let keyframeBefore = track.keyframe.count
        _ = track.receive(packet(5003, 9000, ssrc: 2, payload: [0x67, 0x42, 0xC0, 0x1E, 0xDA], marker: false), from: Self.camera, nowNanos: 202_000_000)
        _ = track.receive(packet(5004, 9000, ssrc: 2, payload: [0x68, 0xCE, 0x3C, 0x80], marker: false), from: Self.camera, nowNanos: 202_000_000)
        _ = track.receive(packet(5005, 9000, ssrc: 2, payload: [0x7C, 0x85, 1], marker: false), from: Self.camera, nowNanos: 202_000_000)
        _ = track.receive(packet(5007, 9000, ssrc: 2, payload: [0x7C, 0x45, 3]), from: Self.camera, nowNanos: 202_000_000)
        _ = track.receive(packet(5006, 9000, ssrc: 2, payload: [0x7C, 0x05, 2], marker: false), from: Self.camera, nowNanos: 202_000_000)
        #expect(track.keyframe.count == keyframeBefore && track.keyframesSeen == 0)
        // The next one, whole, is.
        let whole: [[UInt8]] = [[0x67, 0x42, 0xC0, 0x1E, 0xDA], [0x68, 0xCE, 0x3C, 0x80], [0x7C, 0x85, 1], [0x7C, 0x45, 3]]
        for (offset, payload) in whole.enumerated() {
            _ = track.receive(packet(5008 + UInt16(offset), 12000, ssrc: 2, payload: payload, marker: offset == 3), from: Self.camera,
                              nowNanos: 203_000_000)
        }
        #expect(track.keyframe.count == 4 && track.keyframesSeen == 1)
    }

    /// A live stretch longer than 2^16 packets: a late packet of it still goes out, and a NACK
    /// still finds the packet its number stood for (spans are counted, not 16-bit differences).
    /// Driven on the ingest and one viewer's track directly, without SRTP: it is 65538 packets.
    @Test func aStretchLongerThanTheSequenceSpaceStillTakesLatePacketsAndNACKs() throws {
        var ingest = IngestTrack(kind: .video)
        var track = OutboundTrack(kind: .video, ssrc: 7, payloadType: 102, firstSequence: 500, timestampBase: 1000)
        var sequence: UInt16 = 1000, timestamp: UInt32 = 90000
        func send(_ number: UInt16, _ tag: UInt8) -> OutboundTrack.Forwarding? {
            let datagram = RTPPacket(marker: true, payloadType: 96, sequenceNumber: number, timestamp: timestamp, ssrc: 1,
                                     payload: ByteBuffer(bytes: [0x41, 0x9A, tag])).bytes
            timestamp &+= 3000
            return ingest.receive(datagram, from: Self.camera, nowNanos: 0).map { track.forward($0, keyframe: [], nowNanos: 0) }
        }
        _ = track.join(track: ingest, nowNanos: 0)
        // 65533 frames, four lost numbers and one more frame: 65538 numbers in this stretch,
        // which a 16-bit difference would take for 2.
        // All but the last ten go straight to the viewer's track (the ingest would only number
        // them as sent); the last ten through the ingest, whose history NACKs read.
        for _ in 0..<65_523 {
            _ = track.forward(MediaPacket(sequence: sequence, timestamp: timestamp, marker: true, payload: ByteBuffer(bytes: [0x41, 0x9A, 1])),
                              keyframe: [], nowNanos: 0)
            timestamp &+= 3000
            sequence &+= 1
        }
        for _ in 0..<10 {
            _ = send(sequence, 1)
            sequence &+= 1
        }
        let late = sequence &+ 1
        guard case .send(_, let newest) = send(sequence &+ 4, 0x0A) else { Issue.record("the newest was not sent"); return }
        guard case .send(_, let behind) = send(late, 0x0B) else { Issue.record("a late packet of the stretch was not sent"); return }
        #expect(behind.sequence == newest.sequence &- 3)
        #expect(track.lookup(newest.sequence, in: ingest)?.payload.getInteger(at: 2, as: UInt8.self) == 0x0A)
        #expect(track.lookup(behind.sequence, in: ingest)?.payload.getInteger(at: 2, as: UInt8.self) == 0x0B)
        #expect(track.lookup(newest.sequence &- 10, in: ingest)?.payload.getInteger(at: 2, as: UInt8.self) == 1)
        #expect(track.lookup(newest.sequence &- 1, in: ingest) == nil)  // lost on the way: nothing to resend
    }

    /// From a second read of session 18's fix: while a viewer waits for a frame start (after a
    /// PLI) its numbers stand still but the stream goes on. Once the stream's numbers have come
    /// round again, a NACK for one of the viewer's numbers must not be answered with the packet
    /// that number means on the stream now (on the video SSRC, the same SRTP index with other
    /// bytes). Live stretches find their packets by place on the timeline.
    @Test func aNACKAfterTheStreamWentRoundWhileTheViewerWaitedIsNotAnsweredWithAnotherPacket() throws {
        var ingest = IngestTrack(kind: .video)
        var track = OutboundTrack(kind: .video, ssrc: 7, payloadType: 102, firstSequence: 500, timestampBase: 1000)
        _ = track.join(track: ingest, nowNanos: 0)
        func receive(_ number: UInt16, _ tag: UInt8, marker: Bool) -> MediaPacket? {
            ingest.receive(RTPPacket(marker: marker, payloadType: 96, sequenceNumber: number, timestamp: 90000, ssrc: 1,
                                     payload: ByteBuffer(bytes: [0x41, 0x9A, tag])).bytes, from: Self.camera, nowNanos: 0)
        }
        var sent: [OutboundTrack.Send] = []
        for (number, tag) in [(1000, 1), (1001, 2)] as [(UInt16, UInt8)] {
            let packet = try #require(receive(number, tag, marker: false))
            guard case .send(_, let send) = track.forward(packet, keyframe: [], nowNanos: 0) else {
                Issue.record("\(number) was not sent"); return
            }
            sent.append(send)
        }
        #expect(track.lookup(sent[1].sequence, in: ingest)?.payload.getInteger(at: 2, as: UInt8.self) == 2)
        // A PLI, and no frame start for 2^16 numbers, in steps of 512 (no restart): the stream's
        // 1001 is now another packet.
        track.keyframeWanted = true
        var number: UInt16 = 1001
        for _ in 0..<128 {
            number &+= 512
            let packet = try #require(receive(number, 3, marker: false))
            guard case .waiting = track.forward(packet, keyframe: [], nowNanos: 0) else {
                Issue.record("the viewer did not wait"); return
            }
        }
        #expect(number == 1001 && ingest.packet(sequence: 1001)?.payload.getInteger(at: 2, as: UInt8.self) == 3)
        #expect(track.lookup(sent[1].sequence, in: ingest) == nil)
        #expect(track.lookup(sent[0].sequence, in: ingest) == nil)
    }

    @Test func senderReportsGoOutEverySecondAndConsentExpiresAfterThirty() throws {
        var rig = try Rig()
        rig.keyframe()
        let viewer = try FakeViewer()
        try rig.connect(viewer)
        _ = try rig.received(by: viewer)
        rig.advance(milliseconds: 1100)
        rig.core.tick(now: rig.now)
        let reports = rig.drain()
        try #require(reports.count == 1)
        // The viewer would unprotect SRTCP with the server's write key.
        let keys = try viewer.dtls.srtpKeyingMaterial()
        let srtcp = try SRTPSession(profile: keys.profile, key: keys.serverKey, salt: keys.serverSalt, direction: .inbound)
        let compound = try RTCPPacket.parseCompound(ByteBuffer(bytes: try srtcp.unprotect(srtcp: reports[0].bytes)))
        guard case .senderReport(let ssrc, _, _, let packets, let octets, _) = compound.first else {
            Issue.record("no SR: \(compound)")
            return
        }
        #expect(ssrc == viewer.videoSSRC && packets == 4 && octets == 5 + 4 + 102 + 52)
        #expect(compound.contains { if case .sourceDescription = $0 { true } else { false } })

        // A check at 20 s keeps it; 30 s of silence after that ends it.
        rig.advance(milliseconds: 19_000)
        rig.core.receive(viewer.check(useCandidate: false), from: Self.client, now: rig.now)
        rig.advance(milliseconds: 29_000)
        rig.core.tick(now: rig.now)
        #expect(rig.core.viewerCount == 1)
        rig.advance(milliseconds: 1_100)
        rig.core.tick(now: rig.now)
        #expect(rig.core.viewerCount == 0)
        let records = rig.core.takeRecords()
        #expect(records.ended.map(\.reason) == ["consent"])
        #expect(records.ended[0].record.packetsSent == 4)
    }

    @Test func aCertificateThatDoesNotMatchTheOfferGetsNoMedia() throws {
        var rig = try Rig()
        rig.keyframe()
        let viewer = try FakeViewer()
        let other = try DTLSCertificate.generate(commonName: "someone else")
        try rig.connect(viewer, fingerprint: other.fingerprint)
        #expect(rig.core.counters.fingerprintMismatches == 1)
        rig.frame()
        #expect(rig.drain().allSatisfy { PacketKind(firstByte: $0.bytes[0]) != .rtpOrRTCP })
        rig.core.tick(now: rig.now)
        #expect(rig.core.takeRecords().ended.map(\.reason) == ["fingerprint-mismatch"])
    }

    @Test func badChecksAndStrayPacketsAreDroppedAndCounted() throws {
        var rig = try Rig()
        rig.keyframe()
        let viewer = try FakeViewer()
        let (id, answer) = try rig.core.addViewer(stream: "cam", offer: viewer.offer(), token: nil, now: rig.now)
        try viewer.take(answer: answer, id: id)
        rig.core.receive(viewer.check(key: "not the password at all"), from: Self.client, now: rig.now)
        var stranger = STUNMessage(.binding, .request)
        stranger.append(.username, Array("nobody:d0N5".utf8))
        rig.core.receive(ByteBuffer(bytes: stranger.encoded(integrityKey: [1], fingerprint: true)), from: Self.client, now: rig.now)
        rig.core.receive(ByteBuffer(bytes: [0x16, 0xFE, 0xFD, 0, 0]), from: Self.client, now: rig.now)  // DTLS before ICE
        rig.core.receive(ByteBuffer(bytes: [0x80, 0xC8, 0, 1, 0, 0, 0, 0]), from: Self.client, now: rig.now)
        rig.core.receive(ByteBuffer(bytes: [0xFF, 1, 2]), from: Self.client, now: rig.now)
        rig.core.receive(ByteBuffer(), from: Self.client, now: rig.now)
        #expect(rig.drain().isEmpty)
        #expect(rig.core.counters.stunBadIntegrity == 1)
        #expect(rig.core.counters.stunUnknownUser == 1)
        #expect(rig.core.counters.unknownSource == 2)
        #expect(rig.core.counters.malformed == 2)
        // A viewer that never completes ICE is gone after the setup timeout.
        rig.advance(milliseconds: 30_001)
        rig.core.tick(now: rig.now)
        #expect(rig.core.viewerCount == 0 && rig.core.counters.viewersNeverConnected == 1)
        #expect(rig.core.takeRecords().ended.isEmpty)  // never did ICE: not in the history
    }

    @Test func unknownStreamsTokensAndRemovedStreams() throws {
        var rig = try Rig()
        #expect(throws: WHEPError.unknownStream("nope")) { try rig.core.addViewer(stream: "nope", offer: Self.offerText, token: nil, now: rig.now) }
        var locked = MediaStream(name: "cam", videoPort: 5004, audioPort: 5006)
        let token = "secret-token"
        locked.tokenSHA256 = SwitchboardDatabase.tokenHash(token)
        #expect(rig.core.setStreams([locked]).opened.isEmpty)  // same ports: kept, token updated
        rig.keyframe()
        #expect(throws: WHEPError.unauthorized) { try rig.core.addViewer(stream: "cam", offer: Self.offerText, token: "wrong", now: rig.now) }
        _ = try rig.core.addViewer(stream: "cam", offer: Self.offerText, token: token, now: rig.now)
        #expect(rig.core.viewerCount == 1)
        let change = rig.core.setStreams([])
        #expect(change.closed == ["cam"] && rig.core.viewerCount == 0)
        // It never did ICE: counted, not kept in the history.
        #expect(rig.core.takeRecords().ended.isEmpty && rig.core.counters.viewersNeverConnected == 1)
    }

    @Test func theIngestTimelineContinuesAcrossASourceRestart() throws {
        var track = IngestTrack(kind: .video)
        func packet(_ sequence: UInt16, _ timestamp: UInt32, ssrc: UInt32, payload: [UInt8] = [0x41, 1], marker: Bool = true) -> ByteBuffer {
            RTPPacket(marker: marker, payloadType: 96, sequenceNumber: sequence, timestamp: timestamp, ssrc: ssrc,
                      payload: ByteBuffer(bytes: payload)).bytes
        }
        _ = track.receive(packet(100, 5000, ssrc: 1), from: Self.camera, nowNanos: 0)
        let before = track.receive(packet(101, 8000, ssrc: 1), from: Self.camera, nowNanos: 33_000_000)!
        // ffmpeg restarted one second later: new SSRC, unrelated numbers.
        let after = track.receive(packet(40000, 123_456, ssrc: 2), from: Self.camera, nowNanos: 1_033_000_000)!
        #expect(after.sequence == before.sequence &+ 1)
        #expect(after.timestamp &- before.timestamp == 90000)
        #expect(track.sourceRestarts == 1)
        let next = track.receive(packet(40001, 126_456, ssrc: 2), from: Self.camera, nowNanos: 1_066_000_000)!
        #expect(next.sequence == after.sequence &+ 1 && next.timestamp == after.timestamp &+ 3000)
        #expect(track.packet(sequence: before.sequence)?.timestamp == 8000)
        #expect(track.receive(ByteBuffer(bytes: [0x80, 0x60]), from: Self.camera, nowNanos: 0) == nil
                && track.drops.malformed == 1)
        // SPS in a STAP-A: the profile is read from inside it.
        _ = track.receive(packet(40002, 129_456, ssrc: 2, payload: [0x78, 0, 4, 0x67, 0x64, 0x00, 0x28, 0, 2, 0x68, 0x01],
                                 marker: false), from: Self.camera, nowNanos: 1_100_000_000)
        _ = track.receive(packet(40003, 129_456, ssrc: 2, payload: [0x65, 0x88]), from: Self.camera, nowNanos: 1_100_000_000)
        #expect(track.profile?.description == "640028")
        #expect(track.keyframe.count == 2)
    }

    /// Fault 1 of the hardening issue: an access unit of more than 65535 packets, then a
    /// viewer joins. The unit is not cached (counted); the viewer gets the last good keyframe.
    @Test func aViewerJoiningAfterAnOversizedAccessUnitGetsTheLastGoodKeyframe() throws {
        var rig = try Rig()
        rig.keyframe()
        rig.ingest([0x67, 0x42, 0xC0, 0x1E, 0xDA], marker: false)
        rig.ingest([0x68, 0xCE, 0x3C, 0x80], marker: false)
        for index in 0..<70_000 { rig.ingest([0x65, 0x88, 0x84], marker: index == 69_999) }
        rig.timestamp &+= 3000
        #expect(rig.core.counters.ingest.oversizedFrame == 70_002)
        let viewer = try FakeViewer()
        try rig.connect(viewer)
        let first = try rig.received(by: viewer)
        #expect(first.map { $0.payload.getInteger(at: 0, as: UInt8.self)! & 0x1F } == [7, 8, 28, 28])
        rig.frame()
        #expect(try rig.received(by: viewer).count == 1)
    }

    /// Fault 3: the Sender Report's NTP time after 2036-02-07 and its RTP time after days
    /// without media trapped. Now the NTP seconds wrap (era 1) and the RTP time wraps.
    @Test func senderReportsAfterTheNTPEraEndsAndAfterDaysOfSilence() throws {
        var rig = try Rig()
        rig.wallBase = 2_100_000_000  // 2036-07-18
        rig.keyframe()
        let viewer = try FakeViewer()
        try rig.connect(viewer)
        let sent = try rig.received(by: viewer)
        let keys = try viewer.dtls.srtpKeyingMaterial()
        let srtcp = try SRTPSession(profile: keys.profile, key: keys.serverKey, salt: keys.serverSalt, direction: .inbound)
        func report() throws -> (ntp: UInt64, rtp: UInt32)? {
            rig.core.tick(now: rig.now)
            for datagram in rig.drain() where RTPPacket.isRTCP(ByteBuffer(bytes: datagram.bytes)) {
                let compound = try RTCPPacket.parseCompound(ByteBuffer(bytes: try srtcp.unprotect(srtcp: datagram.bytes)))
                if case .senderReport(_, let ntp, let rtp, _, _, _) = compound.first { return (ntp, rtp) }
            }
            return nil
        }
        rig.advance(milliseconds: 1100)
        let firstReport = try report()
        let first = try #require(firstReport)
        let wall = rig.now.wall
        #expect(first.ntp >> 32 == UInt64(UInt32(truncatingIfNeeded: Int64(wall.rounded(.down)) + 2_208_988_800)))
        #expect(first.ntp >> 32 < 100_000_000)  // era 1 started in 2036
        #expect(first.rtp &- sent[0].timestamp == 99_000)  // 1.1 s at 90 kHz after the keyframe went out

        // Sixty hours without media, consent kept: the RTP time moves on by the gap, wrapped.
        rig.advance(milliseconds: 60 * 3600 * 1000)
        rig.core.receive(viewer.check(useCandidate: false), from: Self.client, now: rig.now)
        _ = rig.drain()
        let laterReport = try report()
        let later = try #require(laterReport)
        let gap = UInt64(60 * 3600 + 1) * 1_000_000_000 + 100_000_000
        #expect(later.rtp &- sent[0].timestamp == UInt32(truncatingIfNeeded: gap * 9 / 100_000))
    }

    /// Fault 6: offers cost the caller nothing and each pending viewer holds a DTLS object.
    /// Pending viewers are capped per source (IPv6 by /64) and per stream; one that plays or
    /// ends makes room.
    @Test func pendingViewersAreCappedPerSourceAndPerStream() throws {
        var rig = try Rig()
        rig.core = MediaCore(configuration: {
            var configuration = MediaCore.Configuration(candidates: [TransportAddress(ip: IPAddress("127.0.0.1")!, port: 8189)])
            configuration.maxPendingPerSource = 2
            configuration.maxPendingPerStream = 3
            return configuration
        }(), context: rig.core.context)
        _ = rig.core.setStreams([MediaStream(name: "cam", videoPort: 5004, audioPort: 5006)])
        rig.keyframe()
        let one = IPAddress("2001:db8::1")!, sameNetwork = IPAddress("2001:db8::ffff:2")!, other = IPAddress("192.0.2.1")!
        let first = try FakeViewer()
        let (firstID, firstAnswer) = try rig.core.addViewer(stream: "cam", offer: first.offer(), token: nil, from: one, now: rig.now)
        _ = try rig.core.addViewer(stream: "cam", offer: Self.offerText, token: nil, from: sameNetwork, now: rig.now)
        #expect(throws: WHEPError.sourceBusy) {
            try rig.core.addViewer(stream: "cam", offer: Self.offerText, token: nil, from: IPAddress("2001:db8::3")!, now: rig.now)
        }
        _ = try rig.core.addViewer(stream: "cam", offer: Self.offerText, token: nil, from: other, now: rig.now)
        #expect(throws: WHEPError.streamBusy("cam")) {
            try rig.core.addViewer(stream: "cam", offer: Self.offerText, token: nil, from: IPAddress("192.0.2.2")!, now: rig.now)
        }
        #expect(rig.core.counters.refusedSourceBusy == 1 && rig.core.counters.refusedStreamBusy == 1)

        // The first one plays: its source and its stream have room again.
        try first.take(answer: firstAnswer, id: firstID)
        rig.core.receive(first.check(), from: Self.client, now: rig.now)
        var toServer = first.dtls.start().datagrams
        for _ in 0..<10 where !toServer.isEmpty {
            for datagram in toServer { rig.core.receive(ByteBuffer(bytes: datagram), from: Self.client, now: rig.now) }
            toServer = rig.drain().filter { PacketKind(firstByte: $0.bytes[0]) == .dtls }.flatMap { first.dtls.receive($0.bytes).datagrams }
        }
        #expect(first.dtls.state == .connected)
        _ = try rig.core.addViewer(stream: "cam", offer: Self.offerText, token: nil, from: IPAddress("2001:db8::4")!, now: rig.now)
        // The rest time out: none of them did ICE, so none is in the history.
        rig.advance(milliseconds: 30_001)
        rig.core.receive(first.check(useCandidate: false), from: Self.client, now: rig.now)
        rig.core.tick(now: rig.now)
        #expect(rig.core.viewerCount == 1 && rig.core.counters.viewersNeverConnected == 3)
        #expect(rig.core.takeRecords().ended.isEmpty)
    }

    static func srtcp(_ packet: RTCPPacket, viewer: FakeViewer) throws -> ByteBuffer {
        let keys = try viewer.dtls.srtpKeyingMaterial()
        let out = try viewer.srtcpOut
            ?? SRTPSession(profile: keys.profile, key: keys.clientKey, salt: keys.clientSalt, direction: .outbound)
        viewer.srtcpOut = out
        var buffer = ByteBuffer()
        RTCPPacket.writeCompound([.receiverReport(ssrc: 1, reports: []), packet], to: &buffer)
        return ByteBuffer(bytes: try out.protect(rtcp: Array(buffer.readableBytesView)))
    }
}
