import Foundation
import Testing

/// TestServer is the real `switchboard` executable (built beside this test bundle) serving
/// on loopback from a temporary data directory, with peers added through its own CLI.
final class TestServer: @unchecked Sendable {
    let directory: String
    let process = Process()
    private(set) var baseURL = ""

    static var binary: URL {
        URL(fileURLWithPath: CommandLine.arguments[0]).deletingLastPathComponent().appendingPathComponent("switchboard")
    }

    init(extraArguments: [String] = []) throws {
        directory = NSTemporaryDirectory() + "switchboard-peer-\(UUID().uuidString)"
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        process.executableURL = Self.binary
        process.arguments = ["serve", "--data-dir", directory, "--http-listen", "127.0.0.1:0",
                             "--turn-listen", "127.0.0.1:\(try Self.freePort())",
                             "--media-listen", "127.0.0.1:\(try Self.freePort())"] + extraArguments
        let output = Pipe()
        process.standardOutput = output
        process.standardError = output
        try process.run()
        // The banner names the HTTP address; read until it and the relay line appeared.
        var text = ""
        let handle = output.fileHandleForReading
        let deadline = Date().addingTimeInterval(30)
        while Date() < deadline {
            let chunk = handle.availableData
            if chunk.isEmpty { break }
            text += String(decoding: chunk, as: UTF8.self)
            if let range = text.range(of: #"http\s+(http://127\.0\.0\.1:\d+)"#, options: .regularExpression),
               text.contains("relay ")
            {
                baseURL = String(text[range].split(whereSeparator: \.isWhitespace).last ?? "")
                break
            }
        }
        guard !baseURL.isEmpty else {
            process.terminate()
            throw TestServerError.noBanner(text)
        }
        // Keep draining so the server never blocks on a full pipe.
        handle.readabilityHandler = { handle in _ = handle.availableData }
    }

    /// Adds a peer with the server's CLI and returns its key.
    func addPeer(_ id: String) throws -> String {
        let add = Process()
        add.executableURL = Self.binary
        add.arguments = ["peer", "add", id, "--data-dir", directory, "--group", "test"]
        let output = Pipe()
        add.standardOutput = output
        try add.run()
        add.waitUntilExit()
        let key = String(decoding: output.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
            .trimmingCharacters(in: .whitespacesAndNewlines)
        guard add.terminationStatus == 0, !key.isEmpty else { throw TestServerError.cli("peer add \(id)") }
        return key
    }

    func stop() {
        if process.isRunning {
            process.terminate()
            process.waitUntilExit()
        }
        try? FileManager.default.removeItem(atPath: directory)
    }

    deinit { stop() }

    static func freePort() throws -> Int {
        let fd = socket(AF_INET, Int32(SOCK_DGRAM.rawValue), 0)
        guard fd >= 0 else { throw TestServerError.cli("socket") }
        defer { close(fd) }
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_addr.s_addr = inet_addr("127.0.0.1")
        var length = socklen_t(MemoryLayout<sockaddr_in>.size)
        let bound = withUnsafeMutablePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { pointer in
                bind(fd, pointer, length) == 0 && getsockname(fd, pointer, &length) == 0
            }
        }
        guard bound else { throw TestServerError.cli("bind") }
        return Int(UInt16(bigEndian: address.sin_port))
    }
}

enum TestServerError: Error {
    case noBanner(String)
    case cli(String)
}
