import ArgumentParser
import Foundation
import Store

struct PeerCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "peer",
        abstract: "Manage the peer registry (keys are shown once and stored hashed).",
        subcommands: [Add.self, List.self, Show.self, Disable.self, Enable.self, RotateKey.self, Remove.self]
    )

    struct Add: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Add a peer and print its new key (shown once).",
            discussion: "The key alone goes to standard output, so KEY=$(switchboard peer add ID) works.")
        @OptionGroup var common: CommonOptions
        @Argument(help: "Peer ID: 1-64 characters from A-Z a-z 0-9 . _ -") var id: String
        @Option(name: .customLong("group"), help: "A group the peer belongs to (repeatable).") var groups: [String] = []
        @Flag(help: "Print {\"id\":…,\"key\":…} as JSON.") var json = false

        func run() async throws {
            let id = try PeerID(id)
            let groups = try groups.map { name throws(StoreError) in try GroupName(name) }
            let database = try await common.openDatabase()
            let key = try database.addPeer(id, groups: groups, actor: .cli)
            if json {
                Output.json(["id": id.rawValue, "key": key.text])
            } else {
                Output.note("peer \(id) added; its key is printed once, below — store it now")
                Output.line(key.text)
            }
        }
    }

    struct List: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "List peers.")
        @OptionGroup var common: CommonOptions
        @Flag(help: "Print a JSON array.") var json = false

        func run() async throws {
            let peers = try await common.openDatabase().peers()
            if json {
                Output.json(peers.map(PeerJSON.init))
                return
            }
            Output.table(
                header: ["ID", "STATUS", "GROUPS", "CREATED", "LAST LOGIN", "LAST SEEN"],
                rows: peers.map { peer in
                    [peer.id, peer.disabled ? "disabled" : "enabled",
                     peer.groups.isEmpty ? "-" : peer.groups.joined(separator: ","),
                     Output.time(peer.createdAt), Output.time(peer.lastLoginAt), Output.time(peer.lastSeenAt)]
                })
        }
    }

    struct Show: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Show one peer.")
        @OptionGroup var common: CommonOptions
        @Argument(help: "Peer ID.") var id: String
        @Flag(help: "Print a JSON object.") var json = false

        func run() async throws {
            let id = try PeerID(id)
            guard let peer = try await common.openDatabase().peer(id) else {
                throw StoreError.peerNotFound(id.rawValue)
            }
            if json {
                Output.json(PeerJSON(peer))
                return
            }
            Output.table(header: nil, rows: [
                ["id:", peer.id],
                ["status:", peer.disabled ? "disabled" : "enabled"],
                ["groups:", peer.groups.isEmpty ? "-" : peer.groups.joined(separator: ", ")],
                ["created:", Output.time(peer.createdAt)],
                ["key changed:", Output.time(peer.keyChangedAt)],
                ["last login:", Output.time(peer.lastLoginAt)],
                ["last seen:", Output.time(peer.lastSeenAt)],
            ])
        }
    }

    struct Disable: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Disable a peer and revoke its login tokens.")
        @OptionGroup var common: CommonOptions
        @Argument(help: "Peer ID.") var id: String

        func run() async throws {
            let id = try PeerID(id)
            let changed = try await common.openDatabase().setDisabled(id, true, actor: .cli)
            Output.line(changed ? "peer \(id) disabled" : "peer \(id) was already disabled")
        }
    }

    struct Enable: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Enable a disabled peer.")
        @OptionGroup var common: CommonOptions
        @Argument(help: "Peer ID.") var id: String

        func run() async throws {
            let id = try PeerID(id)
            let changed = try await common.openDatabase().setDisabled(id, false, actor: .cli)
            Output.line(changed ? "peer \(id) enabled" : "peer \(id) was already enabled")
        }
    }

    struct RotateKey: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            commandName: "rotate-key",
            abstract: "Give a peer a new key (printed once); the old key and its tokens stop working.")
        @OptionGroup var common: CommonOptions
        @Argument(help: "Peer ID.") var id: String
        @Flag(help: "Print {\"id\":…,\"key\":…} as JSON.") var json = false

        func run() async throws {
            let id = try PeerID(id)
            let key = try await common.openDatabase().rotateKey(id, actor: .cli)
            if json {
                Output.json(["id": id.rawValue, "key": key.text])
            } else {
                Output.note("peer \(id) has a new key; it is printed once, below — store it now")
                Output.line(key.text)
            }
        }
    }

    struct Remove: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Remove a peer, its groups and tokens (the audit log keeps its history).")
        @OptionGroup var common: CommonOptions
        @Argument(help: "Peer ID.") var id: String

        func run() async throws {
            let id = try PeerID(id)
            try await common.openDatabase().removePeer(id, actor: .cli)
            Output.line("peer \(id) removed")
        }
    }
}

/// The JSON shape of a peer in `peer list --json` / `peer show --json`.
struct PeerJSON: Encodable {
    var id: String
    var status: String
    var groups: [String]
    var created_at: Date
    var key_changed_at: Date
    var last_login_at: Date?
    var last_seen_at: Date?

    init(_ peer: Peer) {
        id = peer.id
        status = peer.disabled ? "disabled" : "enabled"
        groups = peer.groups
        created_at = peer.createdAt
        key_changed_at = peer.keyChangedAt
        last_login_at = peer.lastLoginAt
        last_seen_at = peer.lastSeenAt
    }

    enum CodingKeys: String, CodingKey {
        case id, status, groups, created_at, key_changed_at, last_login_at, last_seen_at
    }

    /// Absent times are written as null, so every object has the same keys.
    func encode(to encoder: any Encoder) throws {
        var container = encoder.container(keyedBy: CodingKeys.self)
        try container.encode(id, forKey: .id)
        try container.encode(status, forKey: .status)
        try container.encode(groups, forKey: .groups)
        try container.encode(created_at, forKey: .created_at)
        try container.encode(key_changed_at, forKey: .key_changed_at)
        try container.encode(last_login_at, forKey: .last_login_at)
        try container.encode(last_seen_at, forKey: .last_seen_at)
    }
}

extension CommonOptions {
    func openDatabase() async throws -> SwitchboardDatabase {
        let settings = try await settings()
        return try SwitchboardDatabase(dataDirectory: settings.dataDirectory)
    }
}
