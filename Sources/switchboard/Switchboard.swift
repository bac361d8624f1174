import ArgumentParser

@main
struct Switchboard: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "switchboard",
        abstract: "Peer registry, signaling, TURN relay and WHEP media edge in one server.",
        version: "0.1.0",
        subcommands: [Serve.self, PeerCommand.self, TURNUserCommand.self, TURNCredentialCommand.self, ACLCommand.self, StreamCommand.self, AgentCommand.self, Migrate.self, ShowConfig.self, BenchCommand.self]
    )
}
