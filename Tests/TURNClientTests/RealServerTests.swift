import Foundation
import Logging
import NIOCore
import NIOPosix
import Relay
import Store
import NIOConcurrencyHelpers
import Testing
import TURNClient
import Wire

/// `TURNConnection` against real servers on 127.0.0.1: coturn's `turnserver` (Debian
/// `coturn`), which this project did not write, over UDP, TCP and TLS; and our own relay
/// (`RelayService`) over TLS. Each test sends to a UDP echo socket it opens itself through
/// the relay and waits for the echo to come back.
@Suite(.serialized) struct RealServerTests {
    static let turnserver = "/usr/bin/turnserver"

    @Test(arguments: [TURNClientTransport.udp, .tcp, .tls])
    func coturnRelaysToAnEchoPeerAndBack(transport: TURNClientTransport) async throws {
        guard FileManager.default.isExecutableFile(atPath: Self.turnserver) else {
            print("SKIPPED: \(Self.turnserver) is missing (Debian package coturn)")
            return
        }
        let coturn = try await Coturn.start(tls: transport == .tls)
        defer { coturn.stop() }
        let port = transport == .tls ? coturn.tlsPort : coturn.port
        try await Self.exchange(server: SocketAddress(ipAddress: "127.0.0.1", port: port), transport: transport,
                                username: "u", password: "p")
    }

    @Test func aWrongPasswordOnCoturnFailsTheAllocationWith401AndClosesTheSocket() async throws {
        guard FileManager.default.isExecutableFile(atPath: Self.turnserver) else {
            print("SKIPPED: \(Self.turnserver) is missing (Debian package coturn)")
            return
        }
        let coturn = try await Coturn.start(tls: false)
        defer { coturn.stop() }
        let log = EventLog()
        let connection = try await TURNConnection.connect(
            .init(server: SocketAddress(ipAddress: "127.0.0.1", port: coturn.port),
                  client: TURNClientConfiguration(username: "u", password: "wrong")),
            on: MultiThreadedEventLoopGroup.singleton.next(), onEvent: { log.append($0) }).get()
        await #expect(throws: TURNClientError.rejected(.unauthorized)) { try await connection.allocation.get() }
        try await connection.channel.closeFuture.get()
        #expect(log.events == [.failed(.rejected(.unauthorized))])
    }

    @Test func ourRelayOverTLSRelaysToAnEchoPeerAndBack() async throws {
        let directory = try TemporaryFolder()
        let (certificate, key) = try directory.selfSignedCertificate()
        var configuration = RelayConfiguration()
        configuration.listeners = [.init(host: "127.0.0.1", port: 0)]
        configuration.tlsListeners = [.init(host: "127.0.0.1", port: 0)]
        configuration.tlsCertificatePath = certificate
        configuration.tlsKeyPath = key
        configuration.relayIPs = [IPAddress("127.0.0.1")!]
        configuration.restSecret = "relay-secret"
        configuration.filter = PeerAddressFilter(allowed: [CIDR("127.0.0.0/8")!])
        configuration.drainSeconds = 0
        let database = try SwitchboardDatabase(dataDirectory: directory.path)
        let (listening, announce) = AsyncStream.makeStream(of: [String].self)
        let service = RelayService(configuration: configuration, database: database,
                                   logger: Logger(label: "test.relay"), onListening: { announce.yield($0) })
        let running = Task { try await service.run() }
        defer { running.cancel() }

        var lines: [String] = []
        for await announced in listening {
            lines = announced
            break
        }
        let tls = try #require(lines.first { $0.contains("tls://") })
        let port = try #require(tls.split(separator: ":").last.flatMap { Int($0) })
        let credential = TURNRESTCredential(secret: "relay-secret", name: "test",
                                            expiry: Int64(Date().timeIntervalSince1970) + 3600)
        try await Self.exchange(server: SocketAddress(ipAddress: "127.0.0.1", port: port), transport: .tls,
                                username: credential.username, password: credential.password)
        running.cancel()
        _ = try? await running.value
    }

    /// Allocates, sends to an echo peer (the first packet waits for the permission and goes
    /// as a Send indication), waits for the channel, sends again as ChannelData, and closes.
    static func exchange(server: SocketAddress, transport: TURNClientTransport, username: String,
                         password: String) async throws {
        let loop = MultiThreadedEventLoopGroup.singleton.next()
        let echo = try await DatagramBootstrap(group: loop)
            .channelInitializer { channel in
                channel.eventLoop.makeCompletedFuture { try channel.pipeline.syncOperations.addHandler(Echo()) }
            }
            .bind(host: "127.0.0.1", port: 0).get()
        defer { echo.close(promise: nil) }
        let peer = try #require(echo.localAddress.flatMap(TransportAddress.init))

        let log = EventLog()
        let client = TURNClientConfiguration(username: username, password: password, transport: transport)
        let connection = try await TURNConnection.connect(
            .init(server: server, client: client, tls: .noVerification), on: loop,
            onEvent: { event in
                loop.preconditionInEventLoop()
                log.append(event)
            }).get()
        let allocation = try await connection.allocation.get()
        #expect(allocation.relayed.ip == IPAddress("127.0.0.1"))
        #expect(allocation.mapped?.ip == IPAddress("127.0.0.1"))
        #expect(allocation.lifetime > 0)

        connection.send(ByteBuffer(string: "through a Send indication"), to: peer)
        try await log.waitFor("the first echo") { $0 == .data(from: peer, ByteBuffer(string: "through a Send indication")) }
        try await log.waitFor("the channel") { if case .channelBound(peer, _) = $0 { true } else { false } }
        connection.send(ByteBuffer(string: "through ChannelData"), to: peer)
        try await log.waitFor("the second echo") { $0 == .data(from: peer, ByteBuffer(string: "through ChannelData")) }
        let counters = try await loop.submit { connection.counters }.get()
        #expect(counters.sendIndications == 1)
        #expect(counters.channelDataSent == 1)
        #expect(counters.malformed == 0 && counters.badIntegrity == 0 && counters.unknownTransactions == 0)

        try await connection.close().get()
        try await log.waitFor("closed") { $0 == .closed }
        #expect(!log.events.contains { if case .failed = $0 { true } else { false } })
    }
}

/// Events from a connection, appended on its loop and read by the test.
final class EventLog: Sendable {
    private let storage = NIOLockedValueBox<[TURNClientEvent]>([])

    func append(_ event: TURNClientEvent) { storage.withLockedValue { $0.append(event) } }
    var events: [TURNClientEvent] { storage.withLockedValue { $0 } }

    func waitFor(_ what: String, seconds: Int = 10, _ predicate: (TURNClientEvent) -> Bool) async throws {
        let deadline = ContinuousClock.now + .seconds(seconds)
        while ContinuousClock.now < deadline {
            if events.contains(where: predicate) { return }
            try await Task.sleep(for: .milliseconds(10))
        }
        Issue.record("no \(what) within \(seconds) s; events: \(events)")
        throw CancellationError()
    }
}

/// The echo peer: every datagram goes back where it came from.
final class Echo: ChannelInboundHandler, Sendable {
    typealias InboundIn = AddressedEnvelope<ByteBuffer>
    typealias OutboundOut = AddressedEnvelope<ByteBuffer>

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        let envelope = unwrapInboundIn(data)
        context.writeAndFlush(wrapOutboundOut(AddressedEnvelope(remoteAddress: envelope.remoteAddress,
                                                                data: envelope.data)), promise: nil)
    }
}

/// A scratch folder under the system temp folder, removed at the end.
final class TemporaryFolder {
    let path: String

    init() throws {
        path = NSTemporaryDirectory() + "turnclient-test-" + UUID().uuidString
        try FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: true)
    }

    deinit { try? FileManager.default.removeItem(atPath: path) }

    /// A self-signed P-256 certificate for "localhost" made with the openssl CLI: (cert, key) paths.
    func selfSignedCertificate() throws -> (String, String) {
        let certificate = path + "/cert.pem", key = path + "/key.pem"
        let openssl = Process()
        openssl.executableURL = URL(fileURLWithPath: "/usr/bin/openssl")
        openssl.arguments = ["req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
                             "-keyout", key, "-out", certificate, "-days", "2", "-subj", "/CN=localhost"]
        openssl.standardOutput = FileHandle.nullDevice
        openssl.standardError = FileHandle.nullDevice
        try openssl.run()
        openssl.waitUntilExit()
        guard openssl.terminationStatus == 0 else { throw TestFailure("openssl req failed") }
        return (certificate, key)
    }
}

struct TestFailure: Error, CustomStringConvertible {
    var description: String
    init(_ description: String) { self.description = description }
}

/// coturn's `turnserver` on 127.0.0.1 with free ports, a static user u:p in realm "test",
/// loopback peers allowed, its pid file, database and log in a scratch folder.
final class Coturn {
    let process: Process
    let port: Int
    let tlsPort: Int
    let folder: TemporaryFolder

    private init(process: Process, port: Int, tlsPort: Int, folder: TemporaryFolder) {
        self.process = process
        self.port = port
        self.tlsPort = tlsPort
        self.folder = folder
    }

    static func start(tls: Bool) async throws -> Coturn {
        let folder = try TemporaryFolder()
        let port = try await freePort(), tlsPort = try await freePort()
        let relayBase = Int.random(in: 20_000...40_000)
        var arguments = [
            "-n", "--listening-ip=127.0.0.1", "--listening-port=\(port)", "--relay-ip=127.0.0.1",
            "--min-port=\(relayBase)", "--max-port=\(relayBase + 200)", "--lt-cred-mech", "--user=u:p",
            "--realm=test", "--allow-loopback-peers", "--no-cli", "--no-dtls", "--no-stdout-log",
            "--log-file=\(folder.path)/turn.log", "--simple-log", "--pidfile=\(folder.path)/turn.pid",
            "--db=\(folder.path)/turndb",
        ]
        if tls {
            let (certificate, key) = try folder.selfSignedCertificate()
            arguments += ["--tls-listening-port=\(tlsPort)", "--cert=\(certificate)", "--pkey=\(key)"]
        } else {
            arguments.append("--no-tls")
        }
        let process = Process()
        process.executableURL = URL(fileURLWithPath: RealServerTests.turnserver)
        process.arguments = arguments
        process.standardOutput = FileHandle.nullDevice
        process.standardError = FileHandle.nullDevice
        try process.run()
        let coturn = Coturn(process: process, port: port, tlsPort: tlsPort, folder: folder)
        // Ready when its TCP (or TLS) listener accepts: seconds while the other suites run
        // beside it on two cores (10 s was once not enough in a clean-clone CI run).
        let deadline = ContinuousClock.now + .seconds(30)
        while ContinuousClock.now < deadline {
            if await canConnect(port: tls ? tlsPort : port) { return coturn }
            guard process.isRunning else { break }
            try await Task.sleep(for: .milliseconds(50))
        }
        coturn.stop()
        let log = (try? String(contentsOfFile: folder.path + "/turn.log", encoding: .utf8)) ?? ""
        throw TestFailure("turnserver did not start listening; log:\n\(log.suffix(2000))")
    }

    /// SIGKILL, then a bounded wait (Foundation's `waitUntilExit` spins a core here).
    func stop() {
        guard process.isRunning else { return }
        kill(process.processIdentifier, SIGKILL)
        for _ in 0..<200 where process.isRunning { usleep(10_000) }
    }

    static func freePort() async throws -> Int {
        let channel = try await ServerBootstrap(group: MultiThreadedEventLoopGroup.singleton)
            .bind(host: "127.0.0.1", port: 0).get()
        let port = channel.localAddress?.port ?? 0
        try await channel.close()
        guard port > 0 else { throw TestFailure("no free port") }
        return port
    }

    static func canConnect(port: Int) async -> Bool {
        guard let channel = try? await ClientBootstrap(group: MultiThreadedEventLoopGroup.singleton)
            .connect(host: "127.0.0.1", port: port).get() else { return false }
        try? await channel.close()
        return true
    }
}
