import ArgumentParser
import Configuration
import Foundation
import Hummingbird
import Logging
import MediaEdge
import Metrics
import NIOCore
import Prometheus
import Relay
import Rendezvous
import ServiceLifecycle
import Store
import Wire

struct Serve: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Run the server: every service in one process until SIGTERM or SIGINT.")

    /// Every relayed port takes two descriptors (NIO reads one, the relay writes a dup), every
    /// TCP client one: raise the soft open-file limit to the hard one, as coturn does.
    /// Returns the limit in force.
    static func raiseDescriptorLimit() -> UInt64 {
        var limit = rlimit()
        guard getrlimit(Int32(RLIMIT_NOFILE.rawValue), &limit) == 0 else { return 0 }
        if limit.rlim_cur < limit.rlim_max {
            var raised = limit
            raised.rlim_cur = limit.rlim_max
            if setrlimit(Int32(RLIMIT_NOFILE.rawValue), &raised) == 0 { limit = raised }
        }
        return UInt64(limit.rlim_cur)
    }

    @OptionGroup var common: CommonOptions
    @OptionGroup var server: ServerOptions
    @OptionGroup var relay: RelayOptions

    func run() async throws {
        let reader = try await common.reader(flags: server.flags.merging(relay.flags) { a, _ in a })
        let settings = try Settings(reader: reader)
        let relayConfiguration = try {
            var relay = try RelaySettings.configuration(reader: reader, dataDirectory: settings.dataDirectory)
            // The HTTP, media and ingest addresses are the server's own too: no relaying to them.
            for host in [settings.httpListen.host, settings.mediaListen.host, settings.ingestHost] + settings.mediaAnnounce {
                if let ip = IPAddress(host), ip != .v4(0), ip != .v6(0) { relay.filter.own.insert(ip) }
            }
            return relay
        }()

        let level = settings.logLevel
        LoggingSystem.bootstrap { label in
            var handler = DeferredMetadataLogHandler(output: StreamLogHandler.standardError(label: label))
            handler.logLevel = level
            return handler
        }
        let logger = Logger(label: "switchboard")
        let descriptors = Self.raiseDescriptorLimit()
        logger.debug("open file limit", metadata: ["limit": "\(descriptors)"])

        let registry = PrometheusCollectorRegistry()
        MetricsSystem.bootstrap(PrometheusMetricsFactory(registry: registry))

        let database = try SwitchboardDatabase(dataDirectory: settings.dataDirectory,
                                               writeTimeout: .seconds(settings.writeTimeout))
        let migrations = try database.appliedMigrations()
        try await Self.registerConfiguredStreams(settings.streams, in: database)

        Output.line("""
            switchboard \(Switchboard.configuration.version) serving
              database   \(database.path) (SQLite WAL, schema \(migrations.last ?? "empty"))
            """)
        var rendezvous = RelaySettings.rendezvous(relay: relayConfiguration, aclOpen: settings.acl == "open")
        rendezvous.offerTTL = settings.offerTTL
        rendezvous.sessionRetention = settings.sessionRetention
        rendezvous.historyRetention = settings.historyRetention
        rendezvous.whepOffersPerMinute = settings.whepOffersPerMinute
        rendezvous.sessionsPerMinute = settings.sessionsPerMinute
        rendezvous.turnCredentialLifetime = settings.turnCredentialLifetime
        rendezvous.sseHeartbeat = .seconds(settings.eventKeepalive)
        var media = MediaEdgeConfiguration(
            certificatePath: (settings.dataDirectory as NSString).appendingPathComponent("dtls-certificate.pem"))
        media.listenHost = settings.mediaListen.host
        media.listenPort = settings.mediaListen.port
        media.announce = settings.mediaAnnounce
        media.ingestHost = settings.ingestHost
        media.maxPendingPerStream = settings.whepPendingPerStream
        media.maxPendingPerSource = settings.whepPendingPerSource
        let mediaService = try await MediaService.make(
            configuration: media, database: database, logger: Logger(label: "switchboard.media"),
            onListening: { line in Output.line("  " + line) })
        let hub = EventHub()
        var connections = HTTPConnectionLimits()
        connections.requestTimeout = .seconds(settings.httpRequestTimeout)
        connections.idleTimeout = .seconds(settings.httpIdleTimeout)
        connections.perSource = settings.httpConnectionsPerSource
        let http = HTTPServer.makeApplication(
            configuration: .init(host: settings.httpListen.host, port: settings.httpListen.port, connections: connections),
            database: database, registry: registry, rendezvous: rendezvous, hub: hub,
            edge: MediaEdgeWHEP(edge: mediaService.edge),
            logger: logger,
            onRunning: { address in
                let bound = address.flatMap { $0.port.map { ListenAddress(host: settings.httpListen.host, port: $0) } }
                    ?? settings.httpListen
                Output.line("  http       http://\(bound)  (/v1 peer API, /whep/NAME, /play/NAME, /openapi.yaml, /healthz, /metrics)")
            })
        let relayService = RelayService(
            configuration: relayConfiguration, database: database, logger: Logger(label: "switchboard.relay"),
            onListening: { lines in
                Output.line(lines.map { "  " + $0 }.joined(separator: "\n"))
                Output.line("  relay      \(relayConfiguration.relayIPs.map(\.description).joined(separator: ", ")) "
                    + "ports \(relayConfiguration.relayPorts.lowerBound)-\(relayConfiguration.relayPorts.upperBound), "
                    + "realm \(relayConfiguration.realm)")
            })

        let group = ServiceGroup(configuration: .init(
            services: [
                .init(service: http), .init(service: relayService), .init(service: mediaService),
                .init(service: RendezvousService(database: database, hub: hub, configuration: rendezvous,
                                                 logger: Logger(label: "switchboard.rendezvous"))),
            ],
            gracefulShutdownSignals: [.sigterm, .sigint],
            logger: logger))
        try await group.run()
        logger.info("stopped")
    }
}

extension Serve {
    /// Streams from the configuration that the Store does not have yet are added; one it has
    /// with other ports is left as the Store has it (the CLI's changes win), with a note.
    static func registerConfiguredStreams(_ specs: [Settings.StreamSpec], in database: SwitchboardDatabase) async throws {
        guard !specs.isEmpty else { return }
        let existing = try await database.streams()
        for spec in specs {
            if let stream = existing.first(where: { $0.name == spec.name }) {
                if stream.videoPort != spec.videoPort || stream.audioPort != spec.audioPort {
                    Output.note("stream \(spec.name): the database has other ports than the configuration; keeping the database's")
                }
                continue
            }
            try database.addStream(name: spec.name, videoPort: spec.videoPort, audioPort: spec.audioPort, actor: .system)
        }
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
    @OptionGroup var relay: RelayOptions

    func run() async throws {
        let reader = try await common.reader(flags: server.flags.merging(relay.flags) { a, _ in a })
        let settings = try Settings(reader: reader)
        let relay = try RelaySettings.configuration(reader: reader, dataDirectory: settings.dataDirectory)
        Output.json(EffectiveConfiguration(settings: settings, relay: relay))
    }

    /// What `switchboard config` prints: every setting under its key (the flag's name), the
    /// TURN secret left out.
    struct EffectiveConfiguration: Encodable {
        var dataDir: String
        var httpListen: String
        var logLevel: String
        var acl: String
        var offerTTL: Int
        var sessionRetention: Int
        var sessionsPerMinute: Int
        var turnCredentialLifetime: Int
        var eventKeepalive: Int
        var writeTimeout: Int
        var httpRequestTimeout: Int
        var httpIdleTimeout: Int
        var httpConnectionsPerSource: Int
        var mediaListen: String
        var mediaAnnounce: [String]
        var ingestHost: String
        var whepPendingPerStream: Int
        var whepPendingPerSource: Int
        var whepOffersPerMinute: Int
        var historyRetention: Int
        var streams: [String]
        var turnListen: [String]
        var turnTLSListen: [String]
        var tlsCert: String?
        var tlsKey: String?
        var relayIP: [String]
        var relayPorts: String
        var realm: String
        var allowedPeer: [String]
        var deniedPeer: [String]
        var userQuota: Int
        var totalQuota: Int
        var maxBPS: Int
        var drainSeconds: Int
        var turnAuthTimeout: Int64
        var turnIdleTimeout: Int64
        var turnConnectionsPerSource: Int
        var turnConnections: Int

        init(settings: Settings, relay: RelayConfiguration) {
            dataDir = settings.dataDirectory
            httpListen = settings.httpListen.description
            logLevel = settings.logLevel.rawValue
            acl = settings.acl
            offerTTL = settings.offerTTL
            sessionRetention = settings.sessionRetention
            sessionsPerMinute = settings.sessionsPerMinute
            turnCredentialLifetime = settings.turnCredentialLifetime
            eventKeepalive = settings.eventKeepalive
            writeTimeout = settings.writeTimeout
            httpRequestTimeout = settings.httpRequestTimeout
            httpIdleTimeout = settings.httpIdleTimeout
            httpConnectionsPerSource = settings.httpConnectionsPerSource
            mediaListen = settings.mediaListen.description
            mediaAnnounce = settings.mediaAnnounce
            ingestHost = settings.ingestHost
            whepPendingPerStream = settings.whepPendingPerStream
            whepPendingPerSource = settings.whepPendingPerSource
            whepOffersPerMinute = settings.whepOffersPerMinute
            historyRetention = settings.historyRetention
            streams = settings.streams.map { "\($0.name):\($0.videoPort.map(String.init) ?? ""):\($0.audioPort.map(String.init) ?? "")" }
            turnListen = relay.listeners.map { ListenAddress(host: $0.host, port: $0.port).description }
            turnTLSListen = relay.tlsCertificatePath == nil
                ? [] : relay.tlsListeners.map { ListenAddress(host: $0.host, port: $0.port).description }
            tlsCert = relay.tlsCertificatePath
            tlsKey = relay.tlsKeyPath
            relayIP = relay.relayIPs.map(\.description)
            relayPorts = "\(relay.relayPorts.lowerBound)-\(relay.relayPorts.upperBound)"
            realm = relay.realm
            allowedPeer = relay.filter.allowed.map(\.description)
            deniedPeer = relay.filter.denied.map(\.description)
            userQuota = relay.userQuota
            totalQuota = relay.totalQuota
            maxBPS = relay.bandwidthLimit
            drainSeconds = relay.drainSeconds
            turnAuthTimeout = relay.connectionAuthTimeout / 1000
            turnIdleTimeout = relay.connectionIdleTimeout / 1000
            turnConnectionsPerSource = relay.connectionsPerSource
            turnConnections = relay.connectionsTotal
        }

        enum CodingKeys: String, CodingKey {
            case dataDir = "data-dir", httpListen = "http-listen", logLevel = "log-level", acl
            case offerTTL = "offer-ttl", sessionRetention = "session-retention", sessionsPerMinute = "sessions-per-minute"
            case turnCredentialLifetime = "turn-credential-lifetime", eventKeepalive = "event-keepalive"
            case writeTimeout = "write-timeout", httpRequestTimeout = "http-request-timeout"
            case httpIdleTimeout = "http-idle-timeout", httpConnectionsPerSource = "http-connections-per-source"
            case mediaListen = "media-listen", mediaAnnounce = "media-announce", ingestHost = "ingest-host"
            case whepPendingPerStream = "whep-pending-per-stream", whepPendingPerSource = "whep-pending-per-source"
            case whepOffersPerMinute = "whep-offers-per-minute", historyRetention = "history-retention", streams
            case turnListen = "turn-listen", turnTLSListen = "turn-tls-listen", tlsCert = "tls-cert", tlsKey = "tls-key"
            case relayIP = "relay-ip", relayPorts = "relay-ports", realm, allowedPeer = "allowed-peer"
            case deniedPeer = "denied-peer", userQuota = "user-quota", totalQuota = "total-quota", maxBPS = "max-bps"
            case drainSeconds = "drain-seconds", turnAuthTimeout = "turn-auth-timeout", turnIdleTimeout = "turn-idle-timeout"
            case turnConnectionsPerSource = "turn-connections-per-source", turnConnections = "turn-connections"
        }
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

    @Option(name: .customLong("acl"), help: ArgumentHelp(
        "groups (peers reach peers in a shared group, plus ACL rules) or open (default groups; also SWITCHBOARD_ACL).",
        valueName: "mode"))
    var acl: String?

    @Option(name: .customLong("offer-ttl"), help: ArgumentHelp(
        "Seconds an unanswered offer waits before the caller gets 'expired' (default 30; also SWITCHBOARD_OFFER_TTL).",
        valueName: "seconds"))
    var offerTTL: Int?

    @Option(name: .customLong("session-retention"), help: ArgumentHelp(
        "Seconds a session is kept after its last change, then deleted (default 86400; also SWITCHBOARD_SESSION_RETENTION).",
        valueName: "seconds"))
    var sessionRetention: Int?

    @Option(name: .customLong("turn-credential-lifetime"), help: ArgumentHelp(
        "Seconds a TURN credential handed to peers lives (default 3600; also SWITCHBOARD_TURN_CREDENTIAL_LIFETIME).",
        valueName: "seconds"))
    var turnCredentialLifetime: Int?

    @Option(name: .customLong("sessions-per-minute"), help: ArgumentHelp(
        "New sessions one peer may start per minute, 429 beyond (default 60; also SWITCHBOARD_SESSIONS_PER_MINUTE).",
        valueName: "n"))
    var sessionsPerMinute: Int?

    @Option(name: .customLong("event-keepalive"), help: ArgumentHelp(
        "Seconds an event stream (SSE, WebSocket) stays silent before a keepalive (default 15; also SWITCHBOARD_EVENT_KEEPALIVE).",
        valueName: "seconds"))
    var eventKeepalive: Int?

    @Option(name: .customLong("write-timeout"), help: ArgumentHelp(
        "Seconds a request waits for another process's database write lock (an admin's sqlite3 transaction) "
            + "before it gets 503 with Retry-After (default 3; also SWITCHBOARD_WRITE_TIMEOUT).",
        valueName: "seconds"))
    var writeTimeout: Int?

    @Option(name: .customLong("media-listen"), help: ArgumentHelp(
        "The media edge's UDP port for all WHEP viewers (default 127.0.0.1:8189; also SWITCHBOARD_MEDIA_LISTEN).",
        valueName: "host:port"))
    var mediaListen: String?

    @Option(name: .customLong("media-announce"), help: ArgumentHelp(
        "IPs (comma-separated) put in WHEP answers as host candidates instead of the media-listen one "
            + "(also SWITCHBOARD_MEDIA_ANNOUNCE).", valueName: "ip[,ip]"))
    var mediaAnnounce: String?

    @Option(name: .customLong("ingest-host"), help: ArgumentHelp(
        "Address stream ingest sockets listen on for RTP (default 127.0.0.1; also SWITCHBOARD_INGEST_HOST).",
        valueName: "ip"))
    var ingestHost: String?

    @Option(name: .customLong("whep-pending-per-stream"), help: ArgumentHelp(
        "WHEP viewers of one stream still connecting (ICE + DTLS), 503 beyond (default 200; "
            + "also SWITCHBOARD_WHEP_PENDING_PER_STREAM).", valueName: "n"))
    var whepPendingPerStream: Int?

    @Option(name: .customLong("whep-pending-per-source"), help: ArgumentHelp(
        "WHEP viewers still connecting per client address (IPv6 /64), 429 beyond (default 16; "
            + "also SWITCHBOARD_WHEP_PENDING_PER_SOURCE).", valueName: "n"))
    var whepPendingPerSource: Int?

    @Option(name: .customLong("whep-offers-per-minute"), help: ArgumentHelp(
        "WHEP offers one client address (IPv6 /64) may POST per minute after a burst of 20, 429 beyond "
            + "(default 120; also SWITCHBOARD_WHEP_OFFERS_PER_MINUTE).", valueName: "n"))
    var whepOffersPerMinute: Int?

    @Option(name: .customLong("history-retention"), help: ArgumentHelp(
        "Seconds ended viewers (media_viewer_history) and audit log rows are kept (default 7776000 = 90 days; "
            + "also SWITCHBOARD_HISTORY_RETENTION).", valueName: "seconds"))
    var historyRetention: Int?

    @Option(name: .customLong("http-request-timeout"), help: ArgumentHelp(
        "Seconds a request's head and body may take to arrive, from its first byte or the accept, before the "
            + "connection is closed (default 10; also SWITCHBOARD_HTTP_REQUEST_TIMEOUT).", valueName: "seconds"))
    var httpRequestTimeout: Int?

    @Option(name: .customLong("http-idle-timeout"), help: ArgumentHelp(
        "Seconds a kept-alive connection may be silent between requests (default 75; also "
            + "SWITCHBOARD_HTTP_IDLE_TIMEOUT). Event streams being answered are not cut.", valueName: "seconds"))
    var httpIdleTimeout: Int?

    @Option(name: .customLong("http-connections-per-source"), help: ArgumentHelp(
        "Open HTTP connections per client address (IPv6 /64), more are closed at accept; 0 for no limit "
            + "(default 256; also SWITCHBOARD_HTTP_CONNECTIONS_PER_SOURCE).", valueName: "n"))
    var httpConnectionsPerSource: Int?

    /// The flags the user gave, as configuration values that outrank every other source.
    var flags: [AbsoluteConfigKey: ConfigValue] {
        var values: [AbsoluteConfigKey: ConfigValue] = [:]
        if let httpListen { values[AbsoluteConfigKey(Settings.Key.httpListen)] = .init(.string(httpListen), isSecret: false) }
        if let logLevel { values[AbsoluteConfigKey(Settings.Key.logLevel)] = .init(.string(logLevel), isSecret: false) }
        if let acl { values[AbsoluteConfigKey(Settings.Key.acl)] = .init(.string(acl), isSecret: false) }
        if let offerTTL { values[AbsoluteConfigKey(Settings.Key.offerTTL)] = .init(.int(offerTTL), isSecret: false) }
        if let sessionRetention {
            values[AbsoluteConfigKey(Settings.Key.sessionRetention)] = .init(.int(sessionRetention), isSecret: false)
        }
        if let turnCredentialLifetime {
            values[AbsoluteConfigKey(Settings.Key.turnCredentialLifetime)] = .init(.int(turnCredentialLifetime), isSecret: false)
        }
        if let eventKeepalive {
            values[AbsoluteConfigKey(Settings.Key.eventKeepalive)] = .init(.int(eventKeepalive), isSecret: false)
        }
        if let writeTimeout {
            values[AbsoluteConfigKey(Settings.Key.writeTimeout)] = .init(.int(writeTimeout), isSecret: false)
        }
        if let sessionsPerMinute {
            values[AbsoluteConfigKey(Settings.Key.sessionsPerMinute)] = .init(.int(sessionsPerMinute), isSecret: false)
        }
        if let mediaListen { values[AbsoluteConfigKey(Settings.Key.mediaListen)] = .init(.string(mediaListen), isSecret: false) }
        if let mediaAnnounce {
            values[AbsoluteConfigKey(Settings.Key.mediaAnnounce)] = .init(.string(mediaAnnounce), isSecret: false)
        }
        if let ingestHost { values[AbsoluteConfigKey(Settings.Key.ingestHost)] = .init(.string(ingestHost), isSecret: false) }
        if let whepPendingPerStream {
            values[AbsoluteConfigKey(Settings.Key.whepPendingPerStream)] = .init(.int(whepPendingPerStream), isSecret: false)
        }
        if let whepPendingPerSource {
            values[AbsoluteConfigKey(Settings.Key.whepPendingPerSource)] = .init(.int(whepPendingPerSource), isSecret: false)
        }
        if let whepOffersPerMinute {
            values[AbsoluteConfigKey(Settings.Key.whepOffersPerMinute)] = .init(.int(whepOffersPerMinute), isSecret: false)
        }
        if let historyRetention {
            values[AbsoluteConfigKey(Settings.Key.historyRetention)] = .init(.int(historyRetention), isSecret: false)
        }
        if let httpRequestTimeout {
            values[AbsoluteConfigKey(Settings.Key.httpRequestTimeout)] = .init(.int(httpRequestTimeout), isSecret: false)
        }
        if let httpIdleTimeout {
            values[AbsoluteConfigKey(Settings.Key.httpIdleTimeout)] = .init(.int(httpIdleTimeout), isSecret: false)
        }
        if let httpConnectionsPerSource {
            values[AbsoluteConfigKey(Settings.Key.httpConnectionsPerSource)] =
                .init(.int(httpConnectionsPerSource), isSecret: false)
        }
        return values
    }
}
