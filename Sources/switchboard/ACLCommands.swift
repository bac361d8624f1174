import ArgumentParser
import Foundation
import Store

struct ACLCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "acl",
        abstract: "Who may reach whom, beyond shared groups: rules between peer:ID and group:NAME.",
        discussion: "Peers in a shared group reach each other. 'allow FROM TO' lets FROM reach TO; "
            + "'deny FROM TO' stops it and beats every allow and shared group. Rules are directional.",
        subcommands: [Allow.self, Deny.self, List.self, Remove.self])

    struct Allow: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Let FROM reach TO.")
        @OptionGroup var common: CommonOptions
        @Argument(help: "peer:ID or group:NAME") var from: String
        @Argument(help: "peer:ID or group:NAME") var to: String

        func run() async throws {
            let id = try await common.openDatabase().addACLRule(
                .allow, from: try ACLSubject(parsing: from), to: try ACLSubject(parsing: to))
            Output.line("rule \(id): allow \(from) -> \(to)")
        }
    }

    struct Deny: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Stop FROM from reaching TO.")
        @OptionGroup var common: CommonOptions
        @Argument(help: "peer:ID or group:NAME") var from: String
        @Argument(help: "peer:ID or group:NAME") var to: String

        func run() async throws {
            let id = try await common.openDatabase().addACLRule(
                .deny, from: try ACLSubject(parsing: from), to: try ACLSubject(parsing: to))
            Output.line("rule \(id): deny \(from) -> \(to)")
        }
    }

    struct List: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "List ACL rules.")
        @OptionGroup var common: CommonOptions
        @Flag(help: "Print a JSON array.") var json = false

        func run() async throws {
            let rules = try await common.openDatabase().aclRules()
            if json {
                struct RuleJSON: Encodable { var id: Int64; var action: String; var from: String; var to: String }
                Output.json(rules.map { RuleJSON(id: $0.id, action: $0.action.rawValue, from: $0.from, to: $0.to) })
                return
            }
            Output.table(header: ["ID", "ACTION", "FROM", "TO", "CREATED"],
                         rows: rules.map { ["\($0.id)", $0.action.rawValue, $0.from, $0.to, Output.time($0.createdAt)] })
        }
    }

    struct Remove: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Remove an ACL rule by its ID.")
        @OptionGroup var common: CommonOptions
        @Argument(help: "Rule ID (see acl list).") var id: Int64

        func run() async throws {
            try await common.openDatabase().removeACLRule(id: id)
            Output.line("rule \(id) removed")
        }
    }
}
