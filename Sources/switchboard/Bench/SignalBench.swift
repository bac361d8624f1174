import ArgumentParser
import Foundation
import LoadClients
import NIOConcurrencyHelpers
import NIOCore
import NIOHTTP1
import NIOPosix
import Rendezvous
import Store

/// `switchboard bench signal`: keeps N peers connected on SSE event streams and runs
/// sessions (offer → callee's stream → answer → caller's stream) at a given rate, printing
/// offer-to-delivery and offer-to-answer latency, sessions/s and the server's RSS per
/// connected peer. Peers `bench-NNNNN` (group `bench`) are created in the data directory the
/// server uses, and get tokens there; everything else goes over HTTP.
struct BenchSignal: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "signal",
        abstract: "Load the signaling API: N peers on event streams, sessions at a rate; print latency and RSS/peer.")

    @OptionGroup var common: CommonOptions
    @Option(help: "The server's HTTP address.") var server = "127.0.0.1:8080"
    @Option(help: "Peers holding event streams.") var peers = 1000
    @Option(help: "Sessions started per second.") var rate = 100
    @Option(help: "Seconds to run sessions.") var seconds = 10
    @Option(help: "HTTP connections for POST/PATCH.") var connections = 32
    @Option(help: "The server's process ID, to read its RSS from /proc.") var serverPid: Int32?
    @Option(help: "Write each session's offer time and delivery latency (CSV: seconds into the run, ms) here.")
    var latencyLog: String?
    @Flag(help: "Print one JSON line.") var json = false

    func run() async throws {
        guard peers >= 2, rate >= 1, seconds >= 1, connections >= 1 else {
            throw ValidationError("need --peers ≥ 2, --rate, --seconds and --connections ≥ 1")
        }
        let settings = try Settings(reader: try await common.reader())
        let address = try ListenAddress(parsing: server)
        let database = try SwitchboardDatabase(dataDirectory: settings.dataDirectory)

        // Peers and tokens, straight into the Store.
        let provisionStart = ContinuousClock.now
        var issued: [String] = []
        for index in 0..<peers {
            let id = try PeerID(String(format: "bench-%05d", index))
            if try database.peer(id) == nil { _ = try database.addPeer(id, groups: [try GroupName("bench")]) }
            issued.append(try await database.issueToken(for: id, lifetime: 3600, source: "bench").token)
        }
        let tokens = issued
        let provisionSeconds = (ContinuousClock.now - provisionStart).seconds

        // A loop per core the bench may use: two loops time-sliced on one pinned core would
        // add the wait for the other's slice to the latencies measured.
        let group = MultiThreadedEventLoopGroup(numberOfThreads: HTTPServer.usableCores)
        let recorder = Recorder()
        let rssBefore = serverPid.flatMap(Self.rss)

        // Event streams.
        let streamStart = ContinuousClock.now
        var streams: [Channel] = []
        for index in 0..<peers {
            streams.append(try await Self.openStream(host: address.host, port: address.port, token: tokens[index],
                                                     peer: index, recorder: recorder, group: group))
        }
        while recorder.openStreams < peers {
            if ContinuousClock.now - streamStart > .seconds(60) { throw LoadError("only \(recorder.openStreams) of \(peers) streams opened (\(recorder.report().failureKinds))") }
            try await Task.sleep(for: .milliseconds(20))
        }
        let streamSeconds = (ContinuousClock.now - streamStart).seconds
        try await Task.sleep(for: .seconds(1))
        let rssStreams = serverPid.flatMap(Self.rss)

        // Sessions: callers are the first half of the peers, callees the second half.
        let clients = try await (0..<connections).asyncMap { _ in
            try await HTTPClientConnection.connect(host: address.host, port: address.port, group: group)
        }
        let (peers, rate) = (self.peers, self.rate)
        let half = peers / 2
        let total = rate * seconds
        let sessionsStart = ContinuousClock.now
        try await withThrowingTaskGroup(of: Void.self) { tasks in
            // Answers: the callee PATCHes as soon as its stream has the offer.
            tasks.addTask {
                var next = 0
                for await offer in recorder.offers {
                    let client = clients[next % clients.count]
                    next += 1
                    Task {
                        do {
                            let status = try await client.request(
                                .PATCH, "/v1/sessions/\(offer.session)", token: tokens[offer.callee],
                                contentType: "application/sdp", body: Self.answerSDP)
                            if status != 204 { recorder.failed("answer \(status)") }
                        } catch {
                            recorder.failed("answer \(error)")
                        }
                    }
                }
            }
            // Offers at the rate.
            tasks.addTask {
                let interval = Duration.seconds(1) / rate
                for sequence in 0..<total {
                    let due = sessionsStart + interval * sequence
                    if due > ContinuousClock.now { try await Task.sleep(until: due) }
                    let caller = sequence % half
                    let callee = half + (sequence / half + sequence) % (peers - half)
                    let client = clients[sequence % clients.count]
                    recorder.started(sequence)
                    Task {
                        do {
                            let status = try await client.request(
                                .POST, "/v1/peers/\(String(format: "bench-%05d", callee))/sessions", token: tokens[caller],
                                contentType: "application/sdp", body: Self.offerSDP,
                                extraHeaders: [("Switchboard-Connect-Desc", "\(sequence)")])
                            if status != 201 { recorder.failed("offer \(status)") }
                        } catch {
                            recorder.failed("offer \(error)")
                        }
                    }
                }
                // Stragglers: up to 10 s for the last answers.
                let deadline = ContinuousClock.now + .seconds(10)
                while recorder.completed + recorder.failures < total, ContinuousClock.now < deadline {
                    try await Task.sleep(for: .milliseconds(20))
                }
                recorder.finishOffers()
            }
            try await tasks.waitForAll()
        }
        let sessionSeconds = (ContinuousClock.now - sessionsStart).seconds
        let rssAfter = serverPid.flatMap(Self.rss)
        let report = recorder.report()  // before closing, which the stream handlers count
        if let latencyLog {
            try Data(("offer_sent_s,offer_delivery_ms\n" + recorder.timelineCSV()).utf8).write(to: URL(fileURLWithPath: latencyLog))
        }
        for stream in streams { try? await stream.close() }
        for client in clients { await client.close() }

        var perPeer: Double?
        if let rssBefore, let rssStreams { perPeer = Double(rssStreams - rssBefore) / Double(peers) / 1024 }
        var result: [(String, String)] = [
            ("peers", "\(peers)"), ("rate", "\(rate)"), ("seconds", "\(seconds)"),
            ("provision_seconds", String(format: "%.2f", provisionSeconds)),
            ("stream_open_seconds", String(format: "%.2f", streamSeconds)),
            ("sessions_started", "\(total)"), ("sessions_completed", "\(report.completed)"),
            ("failures", "\(report.failures)"),
            ("sessions_per_second", String(format: "%.1f", Double(report.completed) / max(sessionSeconds, 0.001))),
            ("offer_delivery_p50_ms", String(format: "%.2f", report.offer.p50)),
            ("offer_delivery_p99_ms", String(format: "%.2f", report.offer.p99)),
            ("offer_delivery_max_ms", String(format: "%.2f", report.offer.max)),
            ("answer_round_trip_p50_ms", String(format: "%.2f", report.session.p50)),
            ("answer_round_trip_p99_ms", String(format: "%.2f", report.session.p99)),
        ]
        if let rssBefore, let rssStreams, let perPeer {
            result += [("server_rss_idle_mb", String(format: "%.1f", Double(rssBefore) / 1_048_576)),
                       ("server_rss_streams_mb", String(format: "%.1f", Double(rssStreams) / 1_048_576)),
                       ("server_rss_per_peer_kb", String(format: "%.1f", perPeer))]
        }
        if let rssAfter { result.append(("server_rss_after_sessions_mb", String(format: "%.1f", Double(rssAfter) / 1_048_576))) }
        if !report.failureKinds.isEmpty {
            result.append(("failure_kinds", report.failureKinds.map { "\($0.key)×\($0.value)" }.sorted().joined(separator: " ")))
        }
        if json {
            // One object, by the encoder: a figure as a number, anything else as a string.
            Output.json(Dictionary(uniqueKeysWithValues: result.map { key, value in
                (key, Double(value).map(Field.number) ?? .text(value))
            }))
        } else {
            for (key, value) in result { Output.line("\(key.padding(toLength: 28, withPad: " ", startingAt: 0)) \(value)") }
        }
    }

    /// A value of the JSON report.
    enum Field: Encodable {
        case number(Double)
        case text(String)

        func encode(to encoder: any Encoder) throws {
            var container = encoder.singleValueContainer()
            switch self {
            case .number(let value): try container.encode(value)
            case .text(let value): try container.encode(value)
            }
        }
    }

    static let offerSDP = "v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nt=0 0\r\nm=application 9 UDP/DTLS/SCTP webrtc-datachannel\r\nc=IN IP4 0.0.0.0\r\na=mid:0\r\na=ice-ufrag:bnch\r\na=ice-pwd:0123456789012345678901\r\na=setup:actpass\r\n"
    static let answerSDP = offerSDP.replacingOccurrences(of: "actpass", with: "active")

    /// Resident set size of a process, from /proc/PID/status (VmRSS).
    static func rss(_ pid: Int32) -> Int? {
        guard let text = try? String(contentsOfFile: "/proc/\(pid)/status", encoding: .utf8),
              let line = text.split(separator: "\n").first(where: { $0.hasPrefix("VmRSS:") }),
              let kb = Int(line.split(separator: " ").dropFirst().first ?? "") else { return nil }
        return kb * 1024
    }

    static func openStream(host: String, port: Int, token: String, peer: Int, recorder: Recorder,
                           group: any EventLoopGroup) async throws -> Channel {
        let channel = try await ClientBootstrap(group: group)
            .channelInitializer { channel in
                channel.eventLoop.makeCompletedFuture {
                    try channel.pipeline.syncOperations.addHTTPClientHandlers()
                    try channel.pipeline.syncOperations.addHandler(SSEStreamHandler(peer: peer, recorder: recorder))
                }
            }
            .connect(host: host, port: port).get()
        var head = HTTPRequestHead(version: .http1_1, method: .GET, uri: "/v1/events")
        head.headers.add(name: "Host", value: "\(host):\(port)")
        head.headers.add(name: "Authorization", value: "Bearer \(token)")
        head.headers.add(name: "Accept", value: "text/event-stream")
        channel.write(HTTPClientRequestPart.head(head), promise: nil)
        try await channel.writeAndFlush(HTTPClientRequestPart.end(nil)).get()
        return channel
    }
}

/// Recorder keeps the bench's timings; shared by the stream handlers and the tasks.
final class Recorder: Sendable {
    struct Offer: Sendable {
        var session: String
        var callee: Int
    }

    private struct State {
        var started: [Int: ContinuousClock.Instant] = [:]
        var sequenceOfSession: [String: Int] = [:]
        /// Each delivered offer: when it was sent, and its latency in ms.
        var offers: [(sent: ContinuousClock.Instant, latency: Double)] = []
        var sessionLatencies: [Double] = []
        var failureKinds: [String: Int] = [:]
        var openStreams = 0
    }

    private let state = NIOLockedValueBox(State())
    let offers: AsyncStream<Offer>
    private let offerContinuation: AsyncStream<Offer>.Continuation

    init() {
        (offers, offerContinuation) = AsyncStream.makeStream(of: Offer.self)
    }

    var openStreams: Int { state.withLockedValue { $0.openStreams } }
    var completed: Int { state.withLockedValue { $0.sessionLatencies.count } }
    var failures: Int { state.withLockedValue { $0.failureKinds.values.reduce(0, +) } }

    func streamOpened() { state.withLockedValue { $0.openStreams += 1 } }
    func started(_ sequence: Int) { state.withLockedValue { $0.started[sequence] = .now } }
    func failed(_ kind: String) { state.withLockedValue { $0.failureKinds[kind, default: 0] += 1 } }
    func finishOffers() { offerContinuation.finish() }

    /// The callee's stream has the offer of bench session `sequence`.
    func offerDelivered(sequence: Int, session: String, callee: Int) {
        let now = ContinuousClock.now
        state.withLockedValue { state in
            state.sequenceOfSession[session] = sequence
            if let start = state.started[sequence] {
                state.offers.append((start, (now - start).milliseconds))
            }
        }
        offerContinuation.yield(Offer(session: session, callee: callee))
    }

    /// The caller's stream has the answer.
    func answerDelivered(session: String) {
        let now = ContinuousClock.now
        state.withLockedValue { state in
            if let sequence = state.sequenceOfSession.removeValue(forKey: session),
               let start = state.started.removeValue(forKey: sequence) {
                state.sessionLatencies.append((now - start).milliseconds)
            }
        }
    }

    /// Each delivered offer as "seconds since the first offer,latency ms", in sending order.
    func timelineCSV() -> String {
        state.withLockedValue { state in
            let timeline = state.offers.sorted { $0.sent < $1.sent }
            guard let first = timeline.first?.sent else { return "" }
            return timeline.map { String(format: "%.4f,%.3f\n", ($0.sent - first).seconds, $0.latency) }.joined()
        }
    }

    struct Percentiles {
        var p50 = 0.0, p99 = 0.0, max = 0.0
        init(_ values: [Double]) {
            guard !values.isEmpty else { return }
            let sorted = values.sorted()
            p50 = sorted[sorted.count / 2]
            p99 = sorted[min(sorted.count - 1, Int(Double(sorted.count) * 0.99))]
            max = sorted[sorted.count - 1]
        }
    }

    func report() -> (completed: Int, failures: Int, offer: Percentiles, session: Percentiles, failureKinds: [String: Int]) {
        state.withLockedValue { state in
            (state.sessionLatencies.count, state.failureKinds.values.reduce(0, +), Percentiles(state.offers.map(\.latency)),
             Percentiles(state.sessionLatencies), state.failureKinds)
        }
    }
}

/// Reads one peer's SSE stream (de-chunked by NIOHTTP1) and reports offers and answers.
final class SSEStreamHandler: ChannelInboundHandler {
    typealias InboundIn = HTTPClientResponsePart

    let peer: Int
    let recorder: Recorder
    private var buffer = ByteBuffer()
    private var opened = false

    init(peer: Int, recorder: Recorder) {
        self.peer = peer
        self.recorder = recorder
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        switch unwrapInboundIn(data) {
        case .head(let head):
            if head.status != .ok { recorder.failed("stream \(head.status.code)") }
        case .body(var chunk):
            if !opened {
                opened = true
                recorder.streamOpened()
            }
            buffer.writeBuffer(&chunk)
            drainEvents()
        case .end:
            context.close(promise: nil)
        }
    }

    func channelInactive(context: ChannelHandlerContext) {
        recorder.failed(opened ? "stream closed" : "stream closed before it opened")
        context.fireChannelInactive()
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        recorder.failed("stream error \(error)")
        context.close(promise: nil)
    }

    private func drainEvents() {
        let view = buffer.readableBytesView
        var start = view.startIndex
        var index = start
        while index < view.endIndex {
            // An event ends with a blank line.
            if view[index] == UInt8(ascii: "\n"), index + 1 < view.endIndex, view[index + 1] == UInt8(ascii: "\n") {
                handle(String(decoding: view[start..<index], as: UTF8.self))
                start = index + 2
                index = start
                continue
            }
            index += 1
        }
        buffer.moveReaderIndex(forwardBy: start - view.startIndex)
        buffer.discardReadBytes()
    }

    private func handle(_ block: String) {
        var type = ""
        var data = ""
        for line in block.split(separator: "\n") {
            if line.hasPrefix("event: ") { type = String(line.dropFirst(7)) }
            if line.hasPrefix("data: ") { data = String(line.dropFirst(6)) }
        }
        guard !type.isEmpty,
              let object = try? JSONSerialization.jsonObject(with: Data(data.utf8)) as? [String: Any],
              let session = object["session"] as? String else { return }
        switch type {
        case "offer":
            if let desc = object["desc"] as? String, let sequence = Int(desc) {
                recorder.offerDelivered(sequence: sequence, session: session, callee: peer)
            }
        case "answer":
            recorder.answerDelivered(session: session)
        default:
            break
        }
    }
}

extension Sequence {
    func asyncMap<T>(_ transform: (Element) async throws -> T) async rethrows -> [T] {
        var result: [T] = []
        for element in self { result.append(try await transform(element)) }
        return result
    }
}

extension Duration {
    /// The duration in (fractional) seconds, for rates and reports.
    var seconds: Double { Double(components.seconds) + Double(components.attoseconds) / 1e18 }
    var milliseconds: Double { seconds * 1000 }
}
