import ArgumentParser
import Configuration
import Foundation
import Hummingbird
import Logging
import Metrics
import NIOCore
import Prometheus
import Rendezvous
import ServiceLifecycle
import Store

struct Serve: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Run the server: every service in one process until SIGTERM or SIGINT.")

    @OptionGroup var common: CommonOptions
    @OptionGroup var server: ServerOptions

    func run() async throws {
        let settings = try await common.settings(flags: server.flags)

        let level = settings.logLevel
        LoggingSystem.bootstrap { label in
            var handler = StreamLogHandler.standardError(label: label)
            handler.logLevel = level
            return handler
        }
        let logger = Logger(label: "switchboard")

        let registry = PrometheusCollectorRegistry()
        MetricsSystem.bootstrap(PrometheusMetricsFactory(registry: registry))

        let database = try SwitchboardDatabase(dataDirectory: settings.dataDirectory)
        let migrations = try database.appliedMigrations()

        let http = HTTPServer.makeApplication(
            configuration: .init(host: settings.httpListen.host, port: settings.httpListen.port),
            database: database, registry: registry, logger: logger,
            onRunning: { address in
                let bound = address.flatMap { $0.port.map { ListenAddress(host: settings.httpListen.host, port: $0) } }
                    ?? settings.httpListen
                Output.line("""
                    switchboard \(Switchboard.configuration.version) serving
                      database   \(database.path) (SQLite WAL, schema \(migrations.last ?? "empty"))
                      http       http://\(bound)  (/healthz, /metrics)
                    """)
            })

        let group = ServiceGroup(configuration: .init(
            services: [.init(service: http)],
            gracefulShutdownSignals: [.sigterm, .sigint],
            logger: logger))
        try await group.run()
        logger.info("stopped")
    }
}

struct Migrate: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Create the database if needed and apply pending migrations (serve does this too).")
    @OptionGroup var common: CommonOptions

    func run() async throws {
        let database = try await common.openDatabase()
        let applied = try database.appliedMigrations()
        Output.line("\(database.path): \(applied.count) migrations applied, schema is up to date")
        for identifier in applied { Output.line("  \(identifier)") }
    }
}

struct ShowConfig: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "config",
        abstract: "Print the effective configuration (flags > SWITCHBOARD_* > --config file > defaults) as JSON.")
    @OptionGroup var common: CommonOptions
    @OptionGroup var server: ServerOptions

    func run() async throws {
        let settings = try await common.settings(flags: server.flags)
        Output.json([
            "data-dir": settings.dataDirectory,
            "http-listen": settings.httpListen.description,
            "log-level": settings.logLevel.rawValue,
        ])
    }
}

/// Options of the server process; `config` takes them too so it can show their effect.
struct ServerOptions: ParsableArguments {
    @Option(name: .customLong("http-listen"), help: ArgumentHelp(
        "HTTP API address (default 127.0.0.1:8080; also SWITCHBOARD_HTTP_LISTEN).", valueName: "host:port"))
    var httpListen: String?

    @Option(name: .customLong("log-level"), help: ArgumentHelp(
        "trace, debug, info, notice, warning, error or critical (default info; also SWITCHBOARD_LOG_LEVEL).",
        valueName: "level"))
    var logLevel: String?

    /// The flags the user gave, as configuration values that outrank every other source.
    var flags: [AbsoluteConfigKey: ConfigValue] {
        var values: [AbsoluteConfigKey: ConfigValue] = [:]
        if let httpListen { values[AbsoluteConfigKey(Settings.Key.httpListen)] = .init(.string(httpListen), isSecret: false) }
        if let logLevel { values[AbsoluteConfigKey(Settings.Key.logLevel)] = .init(.string(logLevel), isSecret: false) }
        return values
    }
}
