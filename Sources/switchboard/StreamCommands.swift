import ArgumentParser
import Foundation
import Store
import Wire

struct StreamCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "stream",
        abstract: "Manage live streams: RTP ingest ports and WHEP playback at /whep/NAME.",
        subcommands: [Add.self, List.self, Remove.self])

    struct Add: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Register a stream; the running server starts listening within seconds.")
        @OptionGroup var common: CommonOptions
        @Argument(help: "Stream name (1-64 of A-Z a-z 0-9 . _ -), played at /whep/NAME.") var name: String
        @Option(name: .customLong("video-port"), help: "UDP port for H.264 RTP (packetization-mode 1).")
        var videoPort: Int?
        @Option(name: .customLong("audio-port"), help: "UDP port for Opus RTP.")
        var audioPort: Int?
        @Flag(help: "Require a bearer token to play; it is printed once and only its hash is kept.")
        var token = false
        @Option(help: ArgumentHelp(
            "Take RTP only from these addresses (e.g. 192.0.2.10 or 192.0.2.0/24); others are counted drops.",
            discussion: "Without it the ingest ports follow the first sender until it has been silent for 3 s."))
        var source: String?

        func validate() throws {
            if let source, CIDR(source) == nil { throw ValidationError("--source: \"\(source)\" is not an address or range") }
        }

        func run() async throws {
            let issued = try await common.openDatabase().addStream(
                name: name, videoPort: videoPort, audioPort: audioPort, withToken: token, source: source.flatMap { CIDR($0) })
            let ports = [videoPort.map { "video udp/\($0)" }, audioPort.map { "audio udp/\($0)" }].compactMap { $0 }
            let from = source.flatMap { CIDR($0) }.map { ", from \($0)" } ?? ""
            Output.line("stream \(name) added (\(ports.joined(separator: ", "))\(from))")
            if let issued { Output.line("token: \(issued)") }
        }
    }

    struct List: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "List streams.")
        @OptionGroup var common: CommonOptions
        @Flag(help: "Print a JSON array.") var json = false

        func run() async throws {
            let streams = try await common.openDatabase().streams()
            if json {
                struct StreamJSON: Encodable {
                    var name: String
                    var video_port: Int?
                    var audio_port: Int?
                    var token_required: Bool
                    var source: String?
                    var created_at: Date
                }
                Output.json(streams.map {
                    StreamJSON(name: $0.name, video_port: $0.videoPort, audio_port: $0.audioPort,
                               token_required: $0.tokenSHA256 != nil, source: $0.source?.description, created_at: $0.createdAt)
                })
                return
            }
            Output.table(header: ["NAME", "VIDEO", "AUDIO", "TOKEN", "SOURCE", "CREATED"], rows: streams.map {
                [$0.name, $0.videoPort.map(String.init) ?? "-", $0.audioPort.map(String.init) ?? "-",
                 $0.tokenSHA256 == nil ? "no" : "yes", $0.source?.description ?? "any", Output.time($0.createdAt)]
            })
        }
    }

    struct Remove: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Remove a stream; its viewers are disconnected.")
        @OptionGroup var common: CommonOptions
        @Argument(help: "Stream name.") var name: String

        func run() async throws {
            try await common.openDatabase().removeStream(name: name)
            Output.line("stream \(name) removed")
        }
    }
}
