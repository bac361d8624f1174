import ArgumentParser
import DTLS
import Foundation
import MediaEdge
import NIOConcurrencyHelpers
import NIOCore
import NIOHTTP1
import NIOPosix
import Store
import Wire

/// `switchboard bench whep`: pushes a synthetic H.264 stream (a bitrate, a GOP) into a stream's
/// ingest port and opens N WHEP viewers that do what a browser does — offer, ICE check, DTLS
/// handshake, SRTP decryption of every packet — counting packets, loss and the time from the
/// POST to the first complete keyframe. Prints viewers per server core at the loss measured.
struct BenchWHEP: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "whep",
        abstract: "Load the media edge: N WHEP viewers on a synthetic stream; print loss, first-frame time and viewers/core.")

    @OptionGroup var common: CommonOptions
    @Option(help: "The server's HTTP address.") var server = "127.0.0.1:8080"
    @Option(help: "The server's media port (its --media-listen).") var media = "127.0.0.1:8189"
    @Option(help: "Stream name; registered with --ingest-port in the data directory if missing.") var stream = "bench"
    @Option(name: .customLong("ingest-port"), help: "The stream's video ingest port.") var ingestPort = 25004
    @Option(help: "WHEP viewers.") var viewers = 100
    @Option(help: "New viewers per second.") var ramp = 200
    @Option(help: "Seconds to measure once every viewer plays.") var seconds = 10
    @Option(help: "Stream bitrate, kbit/s.") var bitrate = 1000
    @Option(help: "Keyframe interval, seconds.") var gop = 4.0
    @Option(help: "The server's process ID, for its CPU time from /proc.") var serverPid: Int32?
    @Option(help: "Play from Janus instead (the anchor): its REST API address, e.g. 127.0.0.1:8088 (see Benchmarks/janus).")
    var janus: String?
    @Option(name: .customLong("janus-mountpoint"), help: "The Janus streaming mountpoint fed by --ingest-port.")
    var janusMountpoint = 1
    @Option(name: .customLong("viewer-address"), help: "The address viewers' sockets bind to.")
    var viewerAddress = "127.0.0.1"
    @Flag(help: "Print one JSON line.") var json = false

    func run() async throws {
        guard viewers >= 1, ramp >= 1, seconds >= 1, bitrate >= 50, gop > 0 else {
            throw ValidationError("need --viewers, --ramp, --seconds ≥ 1, --bitrate ≥ 50, --gop > 0")
        }
        let janusClient = janus.map { _ in JanusStreaming(mountpoint: janusMountpoint) }
        if janusClient == nil {
            let settings = try Settings(reader: try await common.reader())
            let database = try SwitchboardDatabase(dataDirectory: settings.dataDirectory)
            let existing = try await database.streams()
            if !existing.contains(where: { $0.name == stream }) {
                try database.addStream(name: stream, videoPort: ingestPort, audioPort: nil)
            }
        }
        let httpAddress = try ListenAddress(parsing: janus ?? server)
        let mediaAddress = try ListenAddress(parsing: media)
        guard let mediaIP = IPAddress(mediaAddress.host) else { throw ValidationError("--media needs an IP") }
        let target = TransportAddress(ip: mediaIP, port: UInt16(mediaAddress.port))
        let group = MultiThreadedEventLoopGroup(numberOfThreads: 1)
        let loop = group.next()

        // The source: a synthetic H.264 stream at the bitrate, real time.
        let source = try await DatagramBootstrap(group: loop).bind(host: "127.0.0.1", port: 0).get()
        let generator = SyntheticH264(bitrate: bitrate * 1000, fps: 30, gopSeconds: gop)
        let ingest = TransportAddress(ip: IPAddress("127.0.0.1")!, port: UInt16(ingestPort))
        let pacer = loop.scheduleRepeatedTask(initialDelay: .zero, delay: .nanoseconds(1_000_000_000 / 30)) { _ in
            for packet in generator.nextFrame() {
                source.write(AddressedEnvelope(remoteAddress: ingest.socketAddress, data: ByteBuffer(bytes: packet)),
                             promise: nil)
            }
            source.flush()
        }

        let certificate = try DTLSCertificate.generate(commonName: "bench")
        let context = try DTLSContext(certificate: certificate, srtpProfiles: [.aeadAes128Gcm, .aes128CmHmacSha1_80])
        let http = try await (0..<8).asyncMap { _ in
            try await HTTPClientConnection.connect(host: httpAddress.host, port: httpAddress.port, group: group)
        }
        // Wait until the stream has a keyframe (the server answers 409 until then; Janus
        // has one from the first frame on).
        let probeStart = ContinuousClock.now
        if janusClient != nil { try await Task.sleep(for: .milliseconds(500)) }
        while janusClient == nil {
            let reply = try await http[0].send(.POST, "/whep/\(stream)", token: "", contentType: "application/sdp",
                                               body: BenchViewer.offer(ufrag: "probe", password: String(repeating: "p", count: 24),
                                                                       fingerprint: certificate.fingerprint))
            if reply.status == 201 {
                if let location = reply.headers["Location"].first {
                    _ = try await http[0].send(.DELETE, location, token: "", contentType: "text/plain", body: "")
                }
                break
            }
            guard reply.status == 409, ContinuousClock.now - probeStart < .seconds(20) else {
                throw BenchError("POST /whep/\(stream): \(reply.status) \(reply.body)")
            }
            try await Task.sleep(for: .milliseconds(200))
        }

        // Viewers join at the ramp rate, each at a random point of the GOP.
        var all: [BenchViewer] = []
        let joinStart = ContinuousClock.now
        for index in 0..<viewers {
            let due = joinStart + .milliseconds(index * 1000 / ramp)
            if due > .now { try await Task.sleep(until: due) }
            let viewer = try BenchViewer(context: context, fingerprint: certificate.fingerprint, server: target,
                                         bindHost: viewerAddress, waitsForRemoteCheck: janusClient != nil, loop: loop)
            try await viewer.open()
            let posted = ContinuousClock.now
            let connection = http[index % http.count]
            if let janusClient {
                // Janus offers: watch, answer, start; the clock runs from the watch request.
                let (session, handle, offer) = try await janusClient.watch(on: connection)
                let answer = try BenchViewer.answer(to: try SessionDescription(parsing: offer), ufrag: viewer.ufrag,
                                                    password: viewer.password, fingerprint: certificate.fingerprint)
                try await janusClient.start(session: session, handle: handle, answer: answer, on: connection)
                try await viewer.answer(offer, posted: posted)
                viewer.location = session
            } else {
                let reply = try await connection.send(
                    .POST, "/whep/\(stream)", token: "", contentType: "application/sdp", body: viewer.offerText)
                guard reply.status == 201 else { throw BenchError("viewer \(index): \(reply.status) \(reply.body)") }
                try await viewer.answer(reply.body, posted: posted)
                viewer.location = reply.headers["Location"].first
            }
            all.append(viewer)
        }
        let joinSeconds = (ContinuousClock.now - joinStart).seconds
        try await Task.sleep(for: .seconds(2))  // the last ones finish their handshakes

        // Measure: packets, loss, and the server's CPU over the window.
        let cpuBefore = serverPid.flatMap(Self.cpuSeconds)
        let countsBefore = try await loop.submit { all.map(\.counts) }.get()
        let windowStart = ContinuousClock.now
        try await Task.sleep(for: .seconds(seconds))
        let countsAfter = try await loop.submit { all.map(\.counts) }.get()
        let window = (ContinuousClock.now - windowStart).seconds
        let cpuAfter = serverPid.flatMap(Self.cpuSeconds)
        let firstFrames = try await loop.submit { all.compactMap(\.firstFrame).map(\.milliseconds).sorted() }.get()
        let failures = try await loop.submit { all.filter { $0.failure != nil }.count }.get()
        pacer.cancel()
        for (index, viewer) in all.enumerated() {
            guard let location = viewer.location else { continue }
            if let janusClient {
                await janusClient.destroy(session: location, on: http[index % http.count])
            } else {
                _ = try? await http[index % http.count].send(.DELETE, location, token: "", contentType: "text/plain", body: "")
            }
        }
        for connection in http { await connection.close() }
        try? await loop.submit {
            for viewer in all {
                viewer.timer?.cancel()
                viewer.channel?.close(promise: nil)
            }
            source.close(promise: nil)
        }.get()
        try? await group.shutdownGracefully()

        var received = 0, expected = 0, playing = 0
        for (before, after) in zip(countsBefore, countsAfter) {
            received += after.received - before.received
            expected += after.expected - before.expected
            if after.received > before.received { playing += 1 }
        }
        let loss = expected > 0 ? max(0, Double(expected - received) / Double(expected)) : 1
        var cpu: Double?
        if let cpuBefore, let cpuAfter { cpu = (cpuAfter - cpuBefore) / window }
        func percentile(_ p: Double) -> Double {
            firstFrames.isEmpty ? .nan : firstFrames[min(firstFrames.count - 1, Int(Double(firstFrames.count) * p))]
        }
        let perCore = cpu.map { Double(playing) / max($0, 0.01) }
        if json {
            struct Report: Encodable {
                var viewers, playing, failures: Int
                var bitrate_kbps: Int
                var gop_seconds: Double
                var loss_percent: Double
                var packets_per_second: Double
                var server_cpu_cores: Double?
                var viewers_per_core: Double?
                var first_frame_ms_p50, first_frame_ms_p95, first_frame_ms_max: Double
                var join_seconds: Double
            }
            Output.json(Report(viewers: viewers, playing: playing, failures: failures, bitrate_kbps: bitrate, gop_seconds: gop,
                               loss_percent: loss * 100, packets_per_second: Double(received) / window,
                               server_cpu_cores: cpu, viewers_per_core: perCore,
                               first_frame_ms_p50: percentile(0.5), first_frame_ms_p95: percentile(0.95),
                               first_frame_ms_max: firstFrames.last ?? .nan, join_seconds: joinSeconds))
            return
        }
        Output.line(String(format: "viewers %d (playing %d, failed %d), %d kbit/s, GOP %.1f s, joined in %.1f s",
                           viewers, playing, failures, bitrate, gop, joinSeconds))
        Output.line(String(format: "packets received %.0f/s, loss %.3f%%", Double(received) / window, loss * 100))
        Output.line(String(format: "first complete keyframe after POST: p50 %.1f ms, p95 %.1f ms, max %.1f ms (%d viewers)",
                           percentile(0.5), percentile(0.95), firstFrames.last ?? .nan, firstFrames.count))
        if let cpu, let perCore {
            Output.line(String(format: "server CPU %.2f cores → %.0f viewers per core%@", cpu, perCore,
                               loss < 0.01 ? "" : " (loss ≥ 1%: not a valid figure)"))
        }
    }

    /// utime + stime of a process, in seconds (/proc/PID/stat fields 14 and 15).
    static func cpuSeconds(_ pid: Int32) -> Double? {
        guard let text = try? String(contentsOfFile: "/proc/\(pid)/stat", encoding: .utf8),
              let close = text.lastIndex(of: ")") else { return nil }
        let fields = text[text.index(after: close)...].split(separator: " ")
        guard fields.count > 13, let user = Double(fields[11]), let system = Double(fields[12]) else { return nil }
        return (user + system) / Double(sysconf(Int32(_SC_CLK_TCK)))
    }
}

/// SyntheticH264 makes RTP packets shaped like an H.264 stream (RFC 6184): SPS, PPS and a
/// large IDR in FU-A fragments every GOP, P slices between. The bytes are not video; the
/// edge forwards without decoding, so only the shapes and sizes matter.
final class SyntheticH264: Sendable {
    private struct State {
        var frame = 0
        // Random starts, as RFC 3550 §5.1 asks and encoders do (Janus's keyframe buffer
        // takes a timestamp of 0 for "none": a stream starting there has no first keyframe).
        var sequence = UInt16.random(in: 0...UInt16.max)
        var timestamp = UInt32.random(in: 1...UInt32.max)
    }

    private let state = NIOLockedValueBox(State())
    private let framesPerGOP: Int
    private let idrBytes: Int
    private let pBytes: Int
    private let fpsTicks: UInt32

    init(bitrate: Int, fps: Int, gopSeconds: Double) {
        framesPerGOP = max(1, Int(gopSeconds * Double(fps)))
        let bytesPerGOP = Int(Double(bitrate) / 8 * gopSeconds)
        idrBytes = max(1000, bytesPerGOP / 6)
        pBytes = max(100, (bytesPerGOP - idrBytes) / max(1, framesPerGOP - 1))
        fpsTicks = UInt32(90000 / fps)
    }

    func nextFrame() -> [[UInt8]] {
        state.withLockedValue { state in
            var packets: [[UInt8]] = []
            func rtp(_ payload: [UInt8], marker: Bool) {
                var packet: [UInt8] = [0x80, (marker ? 0x80 : 0) | 96, UInt8(state.sequence >> 8), UInt8(state.sequence & 0xFF)]
                packet += withUnsafeBytes(of: state.timestamp.bigEndian, Array.init)
                packet += [0x12, 0x34, 0x56, 0x78]
                packets.append(packet + payload)
                state.sequence &+= 1
            }
            let keyframe = state.frame % framesPerGOP == 0
            if keyframe {
                rtp([0x67, 0x42, 0xC0, 0x1E, 0xDA, 0x02, 0x80, 0xBF, 0xE5, 0x84], marker: false)
                rtp([0x68, 0xCE, 0x3C, 0x80], marker: false)
            }
            let type: UInt8 = keyframe ? 5 : 1
            let size = keyframe ? idrBytes : pBytes
            if size <= 1100 {
                rtp([0x60 | type] + [UInt8](repeating: 0x5A, count: size), marker: true)
            } else {
                var offset = 0
                while offset < size {
                    let chunk = min(1100, size - offset)
                    let header: UInt8 = (offset == 0 ? 0x80 : 0) | (offset + chunk == size ? 0x40 : 0) | type
                    rtp([0x7C, header] + [UInt8](repeating: 0x5A, count: chunk), marker: offset + chunk == size)
                    offset += chunk
                }
            }
            state.frame += 1
            state.timestamp &+= fpsTicks
            return packets
        }
    }
}

/// BenchViewer is one WHEP viewer on its own UDP socket: ICE check, DTLS client, SRTP
/// receiver. Everything but `open`/`answer` runs on the bench's event loop.
final class BenchViewer: @unchecked Sendable {
    let ufrag: String
    let password: String
    let offerText: String
    let context: DTLSContext
    /// Where ICE, DTLS and SRTP go: the answer's host candidate, else the --media address.
    var server: TransportAddress
    let bindHost: String
    /// Janus (libnice) sends one check back and takes DTLS only once it is answered; our
    /// ICE-lite edge sends none.
    let waitsForRemoteCheck: Bool
    let loop: any EventLoop
    var channel: (any Channel)?
    var dtls: DTLSEndpoint?
    var srtp: SRTPSession?
    /// Our ICE check was answered.
    var checkAnswered = false
    /// We answered the remote agent's check.
    var remoteCheckAnswered = false
    var dtlsStarted = false
    var location: String?
    var posted: ContinuousClock.Instant?
    var firstFrame: Duration?
    var failure: String?
    var sawKeyframeStart = false
    var received = 0
    var highest: Int?
    var lowest: Int?
    var timer: RepeatedTask?
    var ticks = 0

    var counts: (received: Int, expected: Int) {
        guard let highest, let lowest else { return (0, 0) }
        return (received, highest - lowest + 1)
    }

    init(context: DTLSContext, fingerprint: String, server: TransportAddress, bindHost: String = "127.0.0.1",
         waitsForRemoteCheck: Bool = false, loop: any EventLoop) throws {
        var generator = SystemRandomNumberGenerator()
        ufrag = MediaCore.randomString(8, &generator)
        password = MediaCore.randomString(24, &generator)
        offerText = Self.offer(ufrag: ufrag, password: password, fingerprint: fingerprint)
        self.context = context
        self.server = server
        self.bindHost = bindHost
        self.waitsForRemoteCheck = waitsForRemoteCheck
        self.loop = loop
    }

    /// The answer to a sendonly offer (Janus's): its first H.264 section received with the
    /// offer's payload type and RTX, DTLS client, no candidates (ICE-lite peers learn the
    /// address from our check); every other section rejected.
    static func answer(to offer: SessionDescription, ufrag: String, password: String, fingerprint: String) throws -> String {
        var lines = ["v=0", "o=- 1 1 IN IP4 127.0.0.1", "s=-", "t=0 0"]
        var sections: [String] = []
        var accepted: String?
        for media in offer.media {
            let codecs = try media.codecs()
            guard accepted == nil, media.kind == "video", let mid = media.mid,
                  let h264 = codecs.first(where: { $0.name.uppercased() == "H264" && $0.parameters["packetization-mode"] == "1" })
            else {
                sections += ["m=\(media.kind) 0 \(media.proto) \(media.formats.first ?? "0")", "c=IN IP4 0.0.0.0"]
                    + (media.mid.map { ["a=mid:\($0)"] } ?? []) + ["a=inactive"]
                continue
            }
            accepted = mid
            let rtx = codecs.first { $0.name.lowercased() == "rtx" && $0.associatedPayloadType == h264.payloadType }
            let pt = h264.payloadType
            var types = ["\(pt)"]
            if let rtx { types.append("\(rtx.payloadType)") }
            let fmtp: [String] = h264.parameters.sorted { $0.key < $1.key }.map { "\($0.key)=\($0.value)" }
            sections += ["m=video 9 UDP/TLS/RTP/SAVPF \(types.joined(separator: " "))", "c=IN IP4 0.0.0.0", "a=mid:\(mid)"]
            sections += ["a=recvonly", "a=rtcp-mux", "a=ice-ufrag:\(ufrag)", "a=ice-pwd:\(password)"]
            sections += ["a=fingerprint:sha-256 \(fingerprint)", "a=setup:active", "a=rtpmap:\(pt) H264/90000"]
            sections += ["a=rtcp-fb:\(pt) nack", "a=rtcp-fb:\(pt) nack pli", "a=fmtp:\(pt) \(fmtp.joined(separator: ";"))"]
            if let rtx { sections += ["a=rtpmap:\(rtx.payloadType) rtx/90000", "a=fmtp:\(rtx.payloadType) apt=\(h264.payloadType)"] }
        }
        guard let accepted else { throw BenchError("the offer has no H.264 (packetization-mode=1) video") }
        lines.append("a=group:BUNDLE \(accepted)")
        return (lines + sections).joined(separator: "\r\n") + "\r\n"
    }

    static func offer(ufrag: String, password: String, fingerprint: String) -> String {
        [
            "v=0", "o=- 1 1 IN IP4 127.0.0.1", "s=-", "t=0 0", "a=group:BUNDLE 0",
            "m=video 9 UDP/TLS/RTP/SAVPF 102 103", "c=IN IP4 0.0.0.0", "a=mid:0", "a=recvonly", "a=rtcp-mux",
            "a=rtcp-rsize", "a=ice-ufrag:\(ufrag)", "a=ice-pwd:\(password)", "a=fingerprint:sha-256 \(fingerprint)",
            "a=setup:actpass", "a=rtpmap:102 H264/90000", "a=rtcp-fb:102 nack", "a=rtcp-fb:102 nack pli",
            "a=fmtp:102 level-asymmetry-allowed=1;packetization-mode=1;profile-level-id=42e01f",
            "a=rtpmap:103 rtx/90000", "a=fmtp:103 apt=102",
        ].joined(separator: "\r\n") + "\r\n"
    }

    func open() async throws {
        let channel = try await DatagramBootstrap(group: loop)
            .channelOption(.socketOption(.so_rcvbuf), value: 1 << 18)
            .channelInitializer { channel in
                channel.eventLoop.makeCompletedFuture {
                    try channel.pipeline.syncOperations.addHandler(BenchViewerHandler(viewer: self))
                }
            }
            .bind(host: bindHost, port: 0).get()
        try await loop.submit { self.channel = channel }.get()
    }

    /// Takes the remote description (the edge's answer, or Janus's offer) and starts ICE:
    /// one check with USE-CANDIDATE, repeated until answered.
    func answer(_ sdp: String, posted: ContinuousClock.Instant) async throws {
        let description = try SessionDescription(parsing: sdp)
        guard let media = description.media.first(where: { $0.port != 0 }) ?? description.media.first,
              let credentials = description.iceCredentials(for: media) else {
            throw BenchError("answer without ICE credentials")
        }
        let server = media.candidates.lazy.compactMap(Self.hostCandidate).first
        let dtls = try DTLSEndpoint(context: context, role: .client, remoteFingerprints: nil)
        try await loop.submit {
            if let server { self.server = server }
            self.posted = posted
            self.dtls = dtls
            var message = STUNMessage(.binding, .request)
            message.append(.username, Array("\(credentials.ufrag):\(self.ufrag)".utf8))
            message.append(.useCandidate, [])
            let check = message.encoded(integrityKey: Array(credentials.password.utf8), fingerprint: true)
            self.send(check)
            // Retries and DTLS timers, and a consent check every 5 s.
            self.timer = self.loop.scheduleRepeatedTask(initialDelay: .milliseconds(100), delay: .milliseconds(100)) { _ in
                self.ticks += 1
                let ticks = self.ticks
                if dtls.state == .handshaking && self.srtp == nil {
                    if !self.dtlsStarted && ticks % 5 == 0 { self.send(check) }
                    for datagram in dtls.handleTimeout().datagrams { self.send(datagram) }
                } else if ticks % 50 == 0 {
                    self.send(check)
                }
            }
        }.get()
    }

    /// The address of a UDP host candidate ("foundation component udp priority IP port typ host").
    static func hostCandidate(_ line: String) -> TransportAddress? {
        let fields = line.split(separator: " ").map(String.init)
        guard fields.count >= 8, fields[2].lowercased() == "udp", fields[7] == "host",
              let ip = IPAddress(fields[4]), let port = UInt16(fields[5]) else { return nil }
        return TransportAddress(ip: ip, port: port)
    }

    func send(_ bytes: [UInt8]) {
        channel?.writeAndFlush(AddressedEnvelope(remoteAddress: server.socketAddress, data: ByteBuffer(bytes: bytes)),
                               promise: nil)
    }

    func receive(_ datagram: ByteBuffer, from: TransportAddress? = nil) {
        guard let first = datagram.getInteger(at: datagram.readerIndex, as: UInt8.self), let dtls else { return }
        switch PacketKind(firstByte: first) {
        case .stun:
            guard let message = try? STUNMessage(datagram: datagram) else { return }
            if message.type == STUNMessageType(method: .binding, class: .request), let from {
                // The remote agent's check (Janus sends one): answer it with our short-term key.
                let response = STUNMessage.bindingSuccess(to: message, from: from)
                send(response.encoded(integrityKey: STUNCredentials.shortTermKey(password: password), fingerprint: true))
                remoteCheckAnswered = true
            } else if message.type == STUNMessageType(method: .binding, class: .successResponse) {
                checkAnswered = true
            }
            // DTLS once our check is answered (and, for Janus, theirs too).
            if !dtlsStarted, checkAnswered, remoteCheckAnswered || !waitsForRemoteCheck, dtls.state == .handshaking {
                dtlsStarted = true
                for datagram in dtls.start().datagrams { send(datagram) }
            }
        case .dtls:
            for reply in datagram.withUnsafeReadableBytes({ dtls.receive($0) }).datagrams { send(reply) }
            if dtls.state == .connected, srtp == nil {
                guard let keys = try? dtls.srtpKeyingMaterial(),
                      let session = try? SRTPSession(profile: keys.profile, key: keys.serverKey, salt: keys.serverSalt,
                                                     direction: .inbound) else {
                    failure = "srtp"
                    return
                }
                srtp = session
            } else if case .failed(let reason) = dtls.state {
                failure = reason.description
            }
        case .rtpOrRTCP:
            guard let srtp, !RTPPacket.isRTCP(datagram),
                  let plain = try? srtp.unprotect(srtp: Array(datagram.readableBytesView)), plain.count > 13 else { return }
            received += 1
            let sequence = Int(plain[2]) << 8 | Int(plain[3])
            // Unwrap the 16-bit sequence against the highest seen.
            if let top = highest {
                var unwrapped = (top & ~0xFFFF) | sequence
                if unwrapped < top - 0x8000 { unwrapped += 0x10000 } else if unwrapped > top + 0x8000 { unwrapped -= 0x10000 }
                highest = max(top, unwrapped)
                lowest = min(lowest ?? unwrapped, unwrapped)
            } else {
                highest = sequence
                lowest = sequence
            }
            if firstFrame == nil {
                let nal = plain[12] & 0x1F
                if nal == 7 { sawKeyframeStart = true }
                if sawKeyframeStart, plain[1] & 0x80 != 0, let posted { firstFrame = ContinuousClock.now - posted }
            }
        default:
            break
        }
    }
}

final class BenchViewerHandler: ChannelInboundHandler, @unchecked Sendable {
    typealias InboundIn = AddressedEnvelope<ByteBuffer>
    let viewer: BenchViewer

    init(viewer: BenchViewer) { self.viewer = viewer }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        let envelope = unwrapInboundIn(data)
        viewer.receive(envelope.data, from: TransportAddress(envelope.remoteAddress))
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {}
}
