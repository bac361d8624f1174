import ArgumentParser
import Foundation
import Logging
import Peer

/// `switchboard agent …`: the peer agent a device runs (issue 16).
struct AgentCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "agent",
        abstract: "Run the peer agent: expose local TCP services to peers, or connect to a peer's service.",
        subcommands: [Expose.self, Connect.self]
    )

    struct Login: ParsableArguments {
        @Option(help: ArgumentHelp("Switchboard's HTTP address.", valueName: "url")) var server: String
        @Option(name: .customLong("peer-id"), help: "This device's peer ID.") var peerID: String
        @Option(name: .customLong("key-file"),
                help: ArgumentHelp("A file holding this peer's key (or set SWITCHBOARD_PEER_KEY).", valueName: "file"))
        var keyFile: String?
        @Option(name: .customLong("host-address"),
                help: ArgumentHelp("An address to gather host candidates on (repeatable; default: every IPv4 interface address).",
                                   valueName: "ip"))
        var hostAddresses: [String] = []
        @Option(name: .customLong("session-refresh"),
                help: ArgumentHelp("Seconds between refreshes of each live session, so that the server's session retention never purges one that is in use (0: never).",
                                   valueName: "seconds"))
        var sessionRefresh = 600
        @Flag(help: "Log what the agent does on standard error.") var verbose = false

        func agentConfiguration() throws -> PeerAgent.Configuration {
            let key: String
            if let keyFile {
                guard let text = try? String(contentsOfFile: keyFile, encoding: .utf8) else {
                    throw ValidationError("cannot read the key file \(keyFile)")
                }
                key = text.trimmingCharacters(in: .whitespacesAndNewlines)
            } else if let environment = ProcessInfo.processInfo.environment["SWITCHBOARD_PEER_KEY"] {
                key = environment.trimmingCharacters(in: .whitespacesAndNewlines)
            } else {
                throw ValidationError("give the peer key with --key-file or SWITCHBOARD_PEER_KEY")
            }
            guard !key.isEmpty else { throw ValidationError("the peer key is empty") }
            guard (0...86_400).contains(sessionRefresh) else { throw ValidationError("--session-refresh must be 0-86400 seconds") }
            var configuration = PeerAgent.Configuration(signaling: .init(baseURL: server, peerID: peerID, key: key))
            configuration.hostAddresses = hostAddresses
            configuration.sessionRefresh = sessionRefresh == 0 ? nil : .seconds(sessionRefresh)
            return configuration
        }

        func logger() -> Logger {
            var logger = Logger(label: "switchboard.agent") { StreamLogHandler.standardError(label: $0) }
            logger.logLevel = verbose ? .debug : .warning
            return logger
        }
    }

    /// One status line on stdout, flushed at once (a pipe would otherwise hold it).
    static func report(_ line: String) {
        FileHandle.standardOutput.write(Data((line + "\n").utf8))
    }

    /// SIGTERM and SIGINT end the agent's peer connections cleanly (peers see the close at
    /// once, TURN allocations are released), then exit. Keep the returned sources alive.
    static func stopOnSignals(_ agent: PeerAgent) -> [any DispatchSourceSignal] {
        [SIGTERM, SIGINT].map { number in
            signal(number, SIG_IGN)
            let source = DispatchSource.makeSignalSource(signal: number, queue: .global())
            source.setEventHandler {
                Task {
                    await agent.shutdown()
                    Foundation.exit(0)
                }
            }
            source.resume()
            return source
        }
    }

    static func fail(_ message: String) -> Never {
        FileHandle.standardError.write(Data("switchboard agent: \(message)\n".utf8))
        Foundation.exit(1)
    }

    struct Expose: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Stay online and forward each incoming stream to the local service its name selects.")
        @OptionGroup var login: Login
        @Option(name: .customLong("service"),
                help: ArgumentHelp("A service: NAME=HOST:PORT (repeatable).", valueName: "name=host:port"))
        var services: [String]
        @Option(name: .customLong("max-peer-connections"),
                help: "Peer connections held at once; offers past it are hung up.")
        var maximumPeerConnections = 256
        @Option(name: .customLong("max-per-peer"), help: "Peer connections held at once from one peer ID.")
        var maximumPerPeer = 16

        func validate() throws {
            guard maximumPeerConnections >= 1, maximumPerPeer >= 1 else {
                throw ValidationError("--max-peer-connections and --max-per-peer take a number of at least 1")
            }
        }

        func run() async throws {
            var table: [String: (host: String, port: Int)] = [:]
            for service in services {
                let parts = service.split(separator: "=", maxSplits: 1)
                guard parts.count == 2, let colon = parts[1].lastIndex(of: ":"),
                      let port = Int(parts[1][parts[1].index(after: colon)...]), (1...65535).contains(port)
                else { throw ValidationError("--service takes NAME=HOST:PORT, not \(service)") }
                table[String(parts[0])] = (String(parts[1][..<colon]), port)
            }
            var configuration = try login.agentConfiguration()
            configuration.maximumPeerConnections = maximumPeerConnections
            configuration.maximumPeerConnectionsPerPeer = maximumPerPeer
            let agent = try PeerAgent(configuration: configuration, logger: login.logger(), report: AgentCommand.report)
            let signals = AgentCommand.stopOnSignals(agent)
            defer { withExtendedLifetime(signals) {} }
            do {
                try await agent.expose(ServiceDialer(services: table))
            } catch {
                AgentCommand.fail("\(error)")
            }
        }
    }

    struct Connect: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Listen locally and carry each TCP connection to a peer's service.")
        @OptionGroup var login: Login
        @Argument(help: "The peer to connect to.") var peer: String
        @Option(help: ArgumentHelp("Local address to listen on.", valueName: "host:port")) var listen: String
        @Option(help: "The peer's service to reach.") var service: String
        @Option(help: "auto (direct, else relay), p2p (direct only) or relay (relay only).") var mode: ConnectMode = .auto

        func run() async throws {
            guard let colon = listen.lastIndex(of: ":"), let port = Int(listen[listen.index(after: colon)...]),
                  (0...65535).contains(port)
            else { throw ValidationError("--listen takes HOST:PORT") }
            let agent = try PeerAgent(configuration: try login.agentConfiguration(), logger: login.logger(),
                                      report: AgentCommand.report)
            let signals = AgentCommand.stopOnSignals(agent)
            defer { withExtendedLifetime(signals) {} }
            do {
                let listener = try await agent.connect(to: peer, mode: mode, service: service,
                                                       listenHost: String(listen[..<colon]), listenPort: port)
                let bound = listener.localAddress.flatMap { address in
                    address.ipAddress.map { "\(address.protocol == .inet6 ? "[\($0)]" : $0):\(address.port ?? port)" }
                } ?? listen
                AgentCommand.report("listening \(bound) peer=\(peer) service=\(service)")
                try await listener.channel.closeFuture.get()
            } catch {
                AgentCommand.fail("\(error)")
            }
        }
    }
}

extension ConnectMode: ExpressibleByArgument {}
