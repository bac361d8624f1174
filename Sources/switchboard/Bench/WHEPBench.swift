import ArgumentParser
import DTLS
import Foundation
import LoadClients
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
                                               body: WHEPLoadViewer.offer(ufrag: "probe", password: String(repeating: "p", count: 24),
                                                                       fingerprint: certificate.fingerprint))
            if reply.status == 201 {
                if let location = reply.headers["Location"].first {
                    _ = try await http[0].send(.DELETE, location, token: "", contentType: "text/plain", body: "")
                }
                break
            }
            guard reply.status == 409, ContinuousClock.now - probeStart < .seconds(20) else {
                throw LoadError("POST /whep/\(stream): \(reply.status) \(reply.body)")
            }
            try await Task.sleep(for: .milliseconds(200))
        }

        // Viewers join at the ramp rate, each at a random point of the GOP.
        var all: [WHEPLoadViewer] = []
        let joinStart = ContinuousClock.now
        for index in 0..<viewers {
            let due = joinStart + .milliseconds(index * 1000 / ramp)
            if due > .now { try await Task.sleep(until: due) }
            let viewer = try WHEPLoadViewer(context: context, fingerprint: certificate.fingerprint, server: target,
                                         bindHost: viewerAddress, waitsForRemoteCheck: janusClient != nil, loop: loop)
            try await viewer.open()
            let posted = ContinuousClock.now
            let connection = http[index % http.count]
            if let janusClient {
                // Janus offers: watch, answer, start; the clock runs from the watch request.
                let (session, handle, offer) = try await janusClient.watch(on: connection)
                let answer = try WHEPLoadViewer.answer(to: try SessionDescription(parsing: offer), ufrag: viewer.ufrag,
                                                    password: viewer.password, fingerprint: certificate.fingerprint)
                try await janusClient.start(session: session, handle: handle, answer: answer, on: connection)
                try await viewer.answer(offer, posted: posted)
                viewer.location = session
            } else {
                let reply = try await connection.send(
                    .POST, "/whep/\(stream)", token: "", contentType: "application/sdp", body: viewer.offerText)
                guard reply.status == 201 else { throw LoadError("viewer \(index): \(reply.status) \(reply.body)") }
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

