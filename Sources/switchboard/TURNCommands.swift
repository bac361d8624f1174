import ArgumentParser
import Configuration
import Foundation
import Relay
import Store
import Wire

struct TURNUserCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "turn-user",
        abstract: "Manage static TURN users (long-term credentials; only the key is stored).",
        subcommands: [Add.self, List.self, Remove.self])

    struct RealmOption: ParsableArguments {
        @Option(name: .long, help: ArgumentHelp("Realm (default: the configured realm).", valueName: "realm"))
        var realm: String?

        func resolve(_ common: CommonOptions) async throws -> String {
            if let realm { return realm }
            return RelaySettings.realm(reader: try await common.reader())
        }
    }

    struct Add: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Add a TURN user.")
        @OptionGroup var common: CommonOptions
        @OptionGroup var realmOption: RealmOption
        @Argument(help: "User name (no \":\"; TURN REST usernames use it).") var name: String
        @Option(help: "The password (stored only as MD5(name:realm:password), as RFC 8489 keys are).")
        var password: String

        func run() async throws {
            let realm = try await realmOption.resolve(common)
            try await common.openDatabase().addTURNUser(name: name, realm: realm, password: password)
            Output.line("TURN user \(name) added to realm \(realm)")
        }
    }

    struct List: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "List TURN users.")
        @OptionGroup var common: CommonOptions
        @Flag(help: "Print a JSON array.") var json = false

        func run() async throws {
            let users = try await common.openDatabase().turnUsers()
            if json {
                struct UserJSON: Encodable { var name: String; var realm: String; var created_at: Date }
                Output.json(users.map { UserJSON(name: $0.name, realm: $0.realm, created_at: $0.createdAt) })
                return
            }
            Output.table(header: ["NAME", "REALM", "CREATED"],
                         rows: users.map { [$0.name, $0.realm, Output.time($0.createdAt)] })
        }
    }

    struct Remove: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Remove a TURN user.")
        @OptionGroup var common: CommonOptions
        @OptionGroup var realmOption: RealmOption
        @Argument(help: "User name.") var name: String

        func run() async throws {
            let realm = try await realmOption.resolve(common)
            try await common.openDatabase().removeTURNUser(name: name, realm: realm)
            Output.line("TURN user \(name) removed from realm \(realm)")
        }
    }
}

/// Prints a TURN REST credential signed with the relay's secret, for tools and tests.
struct TURNCredentialCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "turn-credential",
        abstract: "Print a time-limited TURN REST credential (username expiry:NAME, password base64 HMAC-SHA1).")
    @OptionGroup var common: CommonOptions
    @OptionGroup var relay: RelayOptions
    @Argument(help: "The name part of the username.") var name: String
    @Option(help: "Seconds until it expires (default 3600).") var ttl: Int = 3600
    @Flag(help: "Print {\"username\":…,\"password\":…,\"ttl\":…} as JSON.") var json = false

    func run() async throws {
        guard ttl > 0 else { throw SettingsError("ttl must be positive") }
        guard !name.contains(":") else { throw SettingsError("the name must not contain \":\"") }
        let reader = try await common.reader(flags: relay.flags)
        let settings = try Settings(reader: reader)
        let configuration = try RelaySettings.configuration(reader: reader, dataDirectory: settings.dataDirectory)
        let credential = TURNRESTCredential(
            secret: configuration.restSecret ?? "", name: name, expiry: Int64(Date().timeIntervalSince1970) + Int64(ttl))
        if json {
            struct CredentialJSON: Encodable { var username: String; var password: String; var ttl: Int }
            Output.json(CredentialJSON(username: credential.username, password: credential.password, ttl: ttl))
        } else {
            Output.line(credential.username)
            Output.line(credential.password)
        }
    }
}
