import Foundation
import Testing
@testable import DTLS

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// Our endpoint against a DTLS 1.2 peer this project did not write: the `openssl` command's
/// `s_server` and `s_client`, over real UDP sockets on 127.0.0.1, with the peer's certificate
/// made by `openssl req` and its fingerprint read by `openssl x509`.
@Suite(.serialized, .enabled(if: OpenSSLTool.path != nil, "the openssl command is not installed (Debian package openssl)"))
struct OpenSSLInteropTests {
    @Test func ourClientTalksToOpenSSLsServer() throws {
        let directory = try TemporaryDirectory()
        let peer = try OpenSSLTool.certificate(in: directory.path, name: "server")
        let port = try UDPSocket.freePort()
        let server = try OpenSSLTool.start([
            // Not -naccept 1: with it s_server closes its socket before its close_notify goes out.
            "s_server", "-dtls1_2", "-accept", "127.0.0.1:\(port)", "-cert", peer.certificate, "-key", peer.key,
        ])
        defer { server.stop() }
        #expect(server.wait(for: "ACCEPT", seconds: 10), "s_server did not start: \(server.text)")

        let socket = try UDPSocket()
        let client = try DTLSEndpoint(
            context: try DTLSContext(certificate: try Certificates.client, srtpProfiles: []), role: .client,
            remoteFingerprints: [peer.fingerprint])
        let pump = Pump(endpoint: client, socket: socket, peerPort: port)
        pump.take(client.start())
        #expect(pump.run(seconds: 10) { client.state != .handshaking }, "no handshake: \(server.text)")
        #expect(client.state == .connected)
        #expect(pump.events == [.connected])
        // s_server answered HelloVerifyRequest first (it always asks for a cookie): we did it over.
        #expect(client.remoteFingerprint() == peer.fingerprint)

        pump.send(Array("hello from switchboard\n".utf8))
        #expect(pump.run(seconds: 10) { server.text.contains("hello from switchboard") }, "s_server saw: \(server.text)")

        server.write("hello from openssl s_server\n")
        #expect(pump.run(seconds: 10) { pump.received.contains("hello from openssl s_server\n") })
        // One line, one record.
        #expect(pump.records.contains(Array("hello from openssl s_server\n".utf8)))

        // Our close_notify: s_server reads the end of the stream ("DONE").
        // (It sends no close_notify of its own when its input ends: it closes its socket first.)
        pump.sendDatagrams(client.close())
        #expect(client.state == .closed && !client.closeNotifyReceived)
        #expect(server.wait(for: "hello from switchboard\nDONE\n", seconds: 10), "s_server: \(server.text.suffix(600))")
    }

    @Test func openSSLsClientTalksToOurServer() throws {
        let directory = try TemporaryDirectory()
        let peer = try OpenSSLTool.certificate(in: directory.path, name: "client")
        let socket = try UDPSocket()
        let server = try DTLSEndpoint(
            context: try DTLSContext(certificate: try Certificates.server, srtpProfiles: []), role: .server,
            remoteFingerprints: [peer.fingerprint])
        let pump = Pump(endpoint: server, socket: socket, peerPort: nil)
        let client = try OpenSSLTool.start([
            "s_client", "-dtls1_2", "-connect", "127.0.0.1:\(socket.port)", "-cert", peer.certificate, "-key", peer.key,
        ])
        defer { client.stop() }

        #expect(pump.run(seconds: 10) { server.state != .handshaking }, "no handshake: \(client.text)")
        #expect(server.state == .connected)
        #expect(pump.events == [.connected])
        #expect(server.remoteFingerprint() == peer.fingerprint)
        // s_client checked our certificate too: self-signed, so "verify error", but it is ours.
        #expect(pump.run(seconds: 10) { client.text.contains("CN = server") })

        pump.send(Array("hello from switchboard\n".utf8))
        #expect(pump.run(seconds: 10) { client.text.contains("hello from switchboard") }, "s_client saw: \(client.text.suffix(400))")

        client.write("hello from openssl s_client\n")
        #expect(pump.run(seconds: 10) { pump.received.contains("hello from openssl s_client\n") })

        // s_client's input ends: it says DONE and closes with close_notify, which we report
        // and answer.
        client.closeInput()
        #expect(pump.run(seconds: 10) { server.state != .connected }, "s_client saw: \(client.text.suffix(400))")
        #expect(server.state == .closed && server.closeNotifyReceived)
        #expect(pump.events == [.connected, .closeNotifyReceived])
        // s_client printed DONE before its close_notify, but the pipe's handler may still be on it.
        #expect(client.wait(for: "DONE", seconds: 10), "s_client: \(client.text.suffix(400))")
    }

    @Test func openSSLsClientIsRefusedWhenItsCertificateIsNotTheOneInTheSDP() throws {
        let directory = try TemporaryDirectory()
        let peer = try OpenSSLTool.certificate(in: directory.path, name: "client")
        let socket = try UDPSocket()
        let expected = try Certificates.other.sha256Fingerprint
        let server = try DTLSEndpoint(
            context: try DTLSContext(certificate: try Certificates.server, srtpProfiles: []), role: .server,
            remoteFingerprints: [expected])
        let pump = Pump(endpoint: server, socket: socket, peerPort: nil)
        let client = try OpenSSLTool.start([
            "s_client", "-dtls1_2", "-connect", "127.0.0.1:\(socket.port)", "-cert", peer.certificate, "-key", peer.key,
        ])
        defer { client.stop() }

        #expect(pump.run(seconds: 10) { server.state != .handshaking }, "s_client: \(client.text)")
        #expect(server.state == .failed(.fingerprintMismatch(expected: [expected], received: peer.fingerprint)))
        #expect(client.wait(for: "bad certificate", seconds: 10), "s_client saw: \(client.text.suffix(400))")
    }
}

/// Drives one endpoint over a UDP socket: what it says goes to the peer, what arrives goes in,
/// its timer is served, until a condition holds.
final class Pump {
    let endpoint: DTLSEndpoint
    let socket: UDPSocket
    /// Where the peer is; a server learns it from the first datagram.
    var peerPort: UInt16?
    var records: [[UInt8]] = []
    var events: [DTLSEndpoint.Event] = []
    var received: String { String(decoding: records.flatMap { $0 }, as: UTF8.self) }

    init(endpoint: DTLSEndpoint, socket: UDPSocket, peerPort: UInt16?) {
        self.endpoint = endpoint
        self.socket = socket
        self.peerPort = peerPort
    }

    func take(_ output: DTLSEndpoint.Output) {
        sendDatagrams(output.datagrams)
        records += output.applicationData
        events += output.events
    }

    func sendDatagrams(_ datagrams: [[UInt8]]) {
        guard let peerPort else { return }
        for datagram in datagrams { socket.send(datagram, to: peerPort) }
    }

    func send(_ message: [UInt8]) {
        do {
            sendDatagrams(try endpoint.write(message))
        } catch {
            Issue.record("write failed: \(error)")
        }
    }

    /// Runs until `done` holds (true) or `seconds` pass (false).
    func run(seconds: Double, until done: () -> Bool) -> Bool {
        let deadline = Date().addingTimeInterval(seconds)
        while !done() {
            guard Date() < deadline else { return false }
            let wait = min(endpoint.nextTimeout ?? .milliseconds(20), .milliseconds(20))
            if let (datagram, port) = socket.receive(timeout: wait) {
                if peerPort == nil { peerPort = port }
                if port == peerPort { take(endpoint.receive(datagram)) }
            }
            if endpoint.nextTimeout == .zero { take(endpoint.handleTimeout()) }
        }
        return true
    }
}

/// The `openssl` command line tool.
enum OpenSSLTool {
    static let path: String? = {
        let directories = (ProcessInfo.processInfo.environment["PATH"] ?? "/usr/bin:/bin").split(separator: ":")
        return directories.map { "\($0)/openssl" }.first { FileManager.default.isExecutableFile(atPath: $0) }
    }()

    /// A new EC key and self-signed certificate made by `openssl req`, and the certificate's
    /// SHA-256 fingerprint as `openssl x509` prints it.
    static func certificate(in directory: String, name: String) throws
        -> (certificate: String, key: String, fingerprint: DTLSFingerprint)
    {
        let certificate = "\(directory)/\(name).pem", key = "\(directory)/\(name)-key.pem"
        _ = try run(["req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
                     "-keyout", key, "-out", certificate, "-days", "1", "-subj", "/CN=openssl-\(name)"])
        // "sha256 Fingerprint=AB:CD:…" (the prefix's case varies between versions).
        let printed = try run(["x509", "-in", certificate, "-noout", "-fingerprint", "-sha256"])
        guard let hex = printed.split(separator: "=").last?.trimmingCharacters(in: .whitespacesAndNewlines),
              let fingerprint = DTLSFingerprint(sdp: "sha-256 " + hex) else {
            throw ToolError("openssl x509 printed \(printed)")
        }
        return (certificate, key, fingerprint)
    }

    /// Runs an openssl command to its end; its output. Read to the end of the pipe before the
    /// exit status is looked at: with a pipe handler, the output could still be on its way (a
    /// clean-clone run once read an empty fingerprint).
    static func run(_ arguments: [String]) throws -> String {
        guard let path else { throw ToolError("no openssl") }
        let process = Process()
        process.executableURL = URL(fileURLWithPath: path)
        process.arguments = arguments
        let output = Pipe()
        process.standardOutput = output
        process.standardError = output
        process.standardInput = FileHandle.nullDevice
        try process.run()
        let text = String(decoding: output.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
        process.waitUntilExit()
        guard process.terminationStatus == 0 else {
            throw ToolError("openssl \(arguments.joined(separator: " ")) failed: \(text)")
        }
        return text
    }

    static func start(_ arguments: [String]) throws -> RunningTool {
        guard let path else { throw ToolError("no openssl") }
        return try RunningTool(path: path, arguments: arguments)
    }
}

struct ToolError: Error, CustomStringConvertible {
    var description: String
    init(_ description: String) { self.description = description }
}

/// A child process whose stdout and stderr are collected as they come.
final class RunningTool: @unchecked Sendable {
    let process = Process()
    private let input = Pipe()
    private let output = Pipe()
    private let lock = NSLock()
    private var collected = Data()

    init(path: String, arguments: [String]) throws {
        process.executableURL = URL(fileURLWithPath: path)
        process.arguments = arguments
        process.standardInput = input
        process.standardOutput = output
        process.standardError = output
        output.fileHandleForReading.readabilityHandler = { [weak self] handle in
            let data = handle.availableData
            guard let self, !data.isEmpty else { return }
            self.lock.withLock { self.collected.append(data) }
        }
        try process.run()
    }

    var text: String {
        let data = lock.withLock { collected }
        return String(decoding: data, as: UTF8.self)
    }

    func write(_ line: String) { input.fileHandleForWriting.write(Data(line.utf8)) }

    func closeInput() { try? input.fileHandleForWriting.close() }

    func wait(for needle: String, seconds: Double) -> Bool {
        let deadline = Date().addingTimeInterval(seconds)
        while !text.contains(needle) {
            guard Date() < deadline else { return false }
            Thread.sleep(forTimeInterval: 0.02)
        }
        return true
    }

    func stop() {
        // SIGKILL: a child started from a test thread inherits its blocked SIGTERM.
        if process.isRunning { kill(process.processIdentifier, SIGKILL) }
        process.waitUntilExit()
        output.fileHandleForReading.readabilityHandler = nil
    }
}

/// A UDP socket on 127.0.0.1 (plain POSIX: the test needs nothing more).
final class UDPSocket {
    let descriptor: Int32
    let port: UInt16

    init(port requested: UInt16 = 0) throws {
        #if canImport(Glibc)
        let descriptor = socket(AF_INET, Int32(SOCK_DGRAM.rawValue), 0)
        #else
        let descriptor = socket(AF_INET, SOCK_DGRAM, 0)
        #endif
        guard descriptor >= 0 else { throw ToolError("socket: errno \(errno)") }
        var address = Self.loopback(requested)
        let bound = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(descriptor, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
        }
        guard bound == 0 else {
            close(descriptor)
            throw ToolError("bind: errno \(errno)")
        }
        var actual = sockaddr_in()
        var length = socklen_t(MemoryLayout<sockaddr_in>.size)
        _ = withUnsafeMutablePointer(to: &actual) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { getsockname(descriptor, $0, &length) }
        }
        self.descriptor = descriptor
        port = UInt16(bigEndian: actual.sin_port)
    }

    deinit { close(descriptor) }

    /// A port nobody holds right now (bound, read, released).
    static func freePort() throws -> UInt16 { try UDPSocket().port }

    static func loopback(_ port: UInt16) -> sockaddr_in {
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_port = port.bigEndian
        address.sin_addr.s_addr = UInt32(0x7F00_0001).bigEndian
        return address
    }

    func send(_ bytes: [UInt8], to port: UInt16) {
        var address = Self.loopback(port)
        _ = bytes.withUnsafeBytes { buffer in
            withUnsafePointer(to: &address) {
                $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                    sendto(descriptor, buffer.baseAddress, buffer.count, 0, $0, socklen_t(MemoryLayout<sockaddr_in>.size))
                }
            }
        }
    }

    /// One datagram and the port it came from, or nil after `timeout`.
    func receive(timeout: Duration) -> ([UInt8], UInt16)? {
        let (seconds, attoseconds) = timeout.components
        var poller = pollfd(fd: descriptor, events: Int16(POLLIN), revents: 0)
        guard poll(&poller, 1, Int32(seconds * 1000 + attoseconds / 1_000_000_000_000_000)) == 1 else { return nil }
        var buffer = [UInt8](repeating: 0, count: 65_536)
        var from = sockaddr_in()
        var length = socklen_t(MemoryLayout<sockaddr_in>.size)
        let count = withUnsafeMutablePointer(to: &from) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { recvfrom(descriptor, &buffer, buffer.count, 0, $0, &length) }
        }
        guard count > 0 else { return nil }
        return (Array(buffer[0..<count]), UInt16(bigEndian: from.sin_port))
    }
}

/// A directory removed when the value goes.
final class TemporaryDirectory {
    let path: String

    init() throws {
        path = NSTemporaryDirectory() + "dtls-interop-\(UUID().uuidString)"
        try FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: true)
    }

    deinit { try? FileManager.default.removeItem(atPath: path) }
}
