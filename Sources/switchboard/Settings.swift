import ArgumentParser
import Configuration
import Foundation
import Logging
import SystemPackage
import Wire

/// Settings is the resolved configuration, read through swift-configuration from, in order
/// of precedence: command-line flags, `SWITCHBOARD_*` environment variables, the JSON file
/// named by `--config` (or `SWITCHBOARD_CONFIG`), then the defaults documented here and in
/// the README. A key `http-listen` is the flag `--http-listen`, the variable
/// `SWITCHBOARD_HTTP_LISTEN` and the file key `"http-listen"`.
struct Settings: Sendable, Equatable {
    /// Where the database (`switchboard.db`) and generated secrets live.
    var dataDirectory: String = "./switchboard-data"
    /// The HTTP API's listening address.
    var httpListen = ListenAddress(host: "127.0.0.1", port: 8080)
    /// swift-log level for the server's log on stderr.
    var logLevel: Logger.Level = .info
    /// `groups`: peers reach peers they share a group with (and what ACL rules allow);
    /// `open`: every peer reaches every peer (ACL deny rules still apply).
    var acl = "groups"
    /// Seconds an unanswered offer waits before the caller gets an `expired` event.
    var offerTTL = 30
    /// Seconds a session is kept after its last change (answered, closed or not), then deleted.
    var sessionRetention = 86400
    /// New sessions one peer may start per minute (429 beyond).
    var sessionsPerMinute = 60
    /// Seconds a TURN credential handed out (login, `/v1/ice-servers`, sessions) lives.
    var turnCredentialLifetime = 3600
    /// Seconds an event stream (SSE, WebSocket) may stay silent before it gets a keepalive.
    var eventKeepalive = 15
    /// Seconds a request's write waits for another process's SQLite write lock (an admin's
    /// `sqlite3` transaction) before it gets 503 with Retry-After.
    var writeTimeout = 3
    /// The media edge's one UDP port for every WHEP viewer (ICE-lite, DTLS, SRTP).
    var mediaListen = ListenAddress(host: "127.0.0.1", port: 8189)
    /// IPs announced as host candidates instead of the media-listen one (behind NAT, or 0.0.0.0).
    var mediaAnnounce: [String] = []
    /// Where stream ingest sockets listen for RTP.
    var ingestHost = "127.0.0.1"
    /// WHEP viewers still connecting (ICE + DTLS), per stream (503 beyond) and per source
    /// address or IPv6 /64 (429 beyond).
    var whepPendingPerStream = 200
    var whepPendingPerSource = 16
    /// WHEP offers one client address (IPv6 /64) may make per minute, after a burst of 20.
    var whepOffersPerMinute = 120
    /// HTTP connections: seconds a request's head and body may take from its first byte (or
    /// the accept), seconds a kept-alive connection may be silent between requests, and open
    /// connections per source address or IPv6 /64 (0 for no limit).
    var httpRequestTimeout = 10
    var httpIdleTimeout = 75
    var httpConnectionsPerSource = 256
    /// Seconds ended viewers (media_viewer_history) and audit log rows are kept.
    var historyRetention = 90 * 86400
    /// Streams the configuration declares (`"streams": ["cam:5004:5006"]`), registered at start.
    var streams: [StreamSpec] = []

    /// `NAME:VIDEO_PORT[:AUDIO_PORT]`; either port may be empty (`radio::5006`).
    struct StreamSpec: Sendable, Equatable {
        var name: String
        var videoPort: Int?
        var audioPort: Int?

        init(name: String, videoPort: Int?, audioPort: Int?) {
            self.name = name
            self.videoPort = videoPort
            self.audioPort = audioPort
        }

        init(parsing text: String) throws {
            let parts = text.split(separator: ":", omittingEmptySubsequences: false).map(String.init)
            func port(_ index: Int) throws -> Int? {
                guard index < parts.count, !parts[index].isEmpty else { return nil }
                guard let value = Int(parts[index]), (1...65535).contains(value) else {
                    throw SettingsError("streams: \"\(text)\": \"\(parts[index])\" is not a port")
                }
                return value
            }
            guard (2...3).contains(parts.count), !parts[0].isEmpty else {
                throw SettingsError("streams: \"\(text)\" is not NAME:VIDEO_PORT[:AUDIO_PORT]")
            }
            self.init(name: parts[0], videoPort: try port(1), audioPort: try port(2))
            guard videoPort != nil || audioPort != nil else { throw SettingsError("streams: \"\(text)\" has no port") }
        }
    }

    enum Key {
        static let dataDirectory: ConfigKey = "data-dir"
        static let httpListen: ConfigKey = "http-listen"
        static let logLevel: ConfigKey = "log-level"
        static let acl: ConfigKey = "acl"
        static let offerTTL: ConfigKey = "offer-ttl"
        static let sessionRetention: ConfigKey = "session-retention"
        static let sessionsPerMinute: ConfigKey = "sessions-per-minute"
        static let turnCredentialLifetime: ConfigKey = "turn-credential-lifetime"
        static let eventKeepalive: ConfigKey = "event-keepalive"
        static let writeTimeout: ConfigKey = "write-timeout"
        static let mediaListen: ConfigKey = "media-listen"
        static let mediaAnnounce: ConfigKey = "media-announce"
        static let ingestHost: ConfigKey = "ingest-host"
        static let whepPendingPerStream: ConfigKey = "whep-pending-per-stream"
        static let whepPendingPerSource: ConfigKey = "whep-pending-per-source"
        static let historyRetention: ConfigKey = "history-retention"
        static let whepOffersPerMinute: ConfigKey = "whep-offers-per-minute"
        static let httpRequestTimeout: ConfigKey = "http-request-timeout"
        static let httpIdleTimeout: ConfigKey = "http-idle-timeout"
        static let httpConnectionsPerSource: ConfigKey = "http-connections-per-source"
        static let streams: ConfigKey = "streams"
    }

    init() {}

    init(reader: ConfigReader) throws {
        let defaults = Settings()
        dataDirectory = reader.string(forKey: Key.dataDirectory, default: defaults.dataDirectory)
        guard !dataDirectory.isEmpty else { throw SettingsError("data-dir must not be empty") }
        let listen = reader.string(forKey: Key.httpListen, default: defaults.httpListen.description)
        do {
            httpListen = try ListenAddress(parsing: listen)
        } catch {
            throw SettingsError("http-listen: \(error)")
        }
        let level = reader.string(forKey: Key.logLevel, default: defaults.logLevel.rawValue)
        guard let parsed = Logger.Level(rawValue: level.lowercased()) else {
            throw SettingsError("log-level: \"\(level)\" is not one of \(Logger.Level.allCases.map(\.rawValue).joined(separator: ", "))")
        }
        logLevel = parsed
        acl = reader.string(forKey: Key.acl, default: defaults.acl)
        guard ["groups", "open"].contains(acl) else { throw SettingsError("acl: \"\(acl)\" is not groups or open") }
        offerTTL = try Self.integer(reader, Key.offerTTL, default: defaults.offerTTL)
        guard (1...3600).contains(offerTTL) else { throw SettingsError("offer-ttl must be 1-3600 seconds") }
        sessionRetention = try Self.integer(reader, Key.sessionRetention, default: defaults.sessionRetention)
        guard (1...315_360_000).contains(sessionRetention) else {
            throw SettingsError("session-retention must be 1-315360000 seconds")
        }
        turnCredentialLifetime = try Self.integer(reader, Key.turnCredentialLifetime, default: defaults.turnCredentialLifetime)
        guard (10...604_800).contains(turnCredentialLifetime) else {
            throw SettingsError("turn-credential-lifetime must be 10-604800 seconds")
        }
        sessionsPerMinute = try Self.integer(reader, Key.sessionsPerMinute, default: defaults.sessionsPerMinute)
        guard (1...1_000_000).contains(sessionsPerMinute) else {
            throw SettingsError("sessions-per-minute must be 1-1000000")
        }
        eventKeepalive = try Self.integer(reader, Key.eventKeepalive, default: defaults.eventKeepalive)
        guard (1...300).contains(eventKeepalive) else { throw SettingsError("event-keepalive must be 1-300 seconds") }
        writeTimeout = try Self.integer(reader, Key.writeTimeout, default: defaults.writeTimeout)
        guard (1...60).contains(writeTimeout) else { throw SettingsError("write-timeout must be 1-60 seconds") }
        do {
            mediaListen = try ListenAddress(parsing: reader.string(forKey: Key.mediaListen, default: defaults.mediaListen.description))
        } catch {
            throw SettingsError("media-listen: \(error)")
        }
        mediaAnnounce = reader.string(forKey: Key.mediaAnnounce, default: "")
            .split(separator: ",").map { $0.trimmingCharacters(in: .whitespaces) }.filter { !$0.isEmpty }
        for address in mediaAnnounce where IPAddress(address) == nil {
            throw SettingsError("media-announce: \"\(address)\" is not an IP address")
        }
        ingestHost = reader.string(forKey: Key.ingestHost, default: defaults.ingestHost)
        guard IPAddress(ingestHost) != nil else { throw SettingsError("ingest-host: \"\(ingestHost)\" is not an IP address") }
        streams = try reader.stringArray(forKey: Key.streams, default: []).map(StreamSpec.init(parsing:))
        whepPendingPerStream = try Self.integer(reader, Key.whepPendingPerStream, default: defaults.whepPendingPerStream)
        guard (1...100_000).contains(whepPendingPerStream) else { throw SettingsError("whep-pending-per-stream must be 1-100000") }
        whepPendingPerSource = try Self.integer(reader, Key.whepPendingPerSource, default: defaults.whepPendingPerSource)
        guard (1...100_000).contains(whepPendingPerSource) else { throw SettingsError("whep-pending-per-source must be 1-100000") }
        whepOffersPerMinute = try Self.integer(reader, Key.whepOffersPerMinute, default: defaults.whepOffersPerMinute)
        guard (1...1_000_000).contains(whepOffersPerMinute) else { throw SettingsError("whep-offers-per-minute must be 1-1000000") }
        historyRetention = try Self.integer(reader, Key.historyRetention, default: defaults.historyRetention)
        guard (3600...315_360_000).contains(historyRetention) else {
            throw SettingsError("history-retention must be 3600-315360000 seconds")
        }
        httpRequestTimeout = try Self.integer(reader, Key.httpRequestTimeout, default: defaults.httpRequestTimeout)
        guard (1...3600).contains(httpRequestTimeout) else { throw SettingsError("http-request-timeout must be 1-3600 seconds") }
        httpIdleTimeout = try Self.integer(reader, Key.httpIdleTimeout, default: defaults.httpIdleTimeout)
        guard (1...86400).contains(httpIdleTimeout) else { throw SettingsError("http-idle-timeout must be 1-86400 seconds") }
        httpConnectionsPerSource = try Self.integer(reader, Key.httpConnectionsPerSource,
                                                    default: defaults.httpConnectionsPerSource)
        guard (0...1_000_000).contains(httpConnectionsPerSource) else {
            throw SettingsError("http-connections-per-source must be 0-1000000")
        }
        if mediaAnnounce.isEmpty, let ip = IPAddress(mediaListen.host), ip == .v4(0) || ip == .v6(0) {
            throw SettingsError("media-listen \(mediaListen) is a wildcard: give --media-announce with the IP viewers reach")
        }
    }

    var databasePath: String {
        (dataDirectory as NSString).appendingPathComponent("switchboard.db")
    }

    /// A whole-number setting: `fallback` when it is not set anywhere, an error when it is
    /// set to something else. The reader's own `int(forKey:default:)` falls back to the
    /// default for a value it cannot convert, so `SWITCHBOARD_OFFER_TTL="a minute"` was
    /// quietly 30.
    static func integer(_ reader: ConfigReader, _ key: ConfigKey, default fallback: Int) throws -> Int {
        if let value = reader.int(forKey: key) { return value }
        if let text = reader.string(forKey: key) {
            // A quoted number in the config file is still a number.
            guard let value = Int(text.trimmingCharacters(in: .whitespaces)) else {
                throw SettingsError("\(key): \"\(text)\" is not a whole number")
            }
            return value
        }
        if let value = reader.double(forKey: key) { throw SettingsError("\(key): \(value) is not a whole number") }
        return fallback
    }
}

struct SettingsError: Error, CustomStringConvertible {
    var description: String
    init(_ description: String) { self.description = description }
}

/// Options every command takes: where the configuration and the data live.
struct CommonOptions: ParsableArguments {
    @Option(name: .long, help: ArgumentHelp(
        "A JSON configuration file (also SWITCHBOARD_CONFIG).", valueName: "file"))
    var config: String?

    @Option(name: .customLong("data-dir"), help: ArgumentHelp(
        "Data directory holding switchboard.db (default ./switchboard-data; also SWITCHBOARD_DATA_DIR).",
        valueName: "dir"))
    var dataDirectory: String?

    /// Builds the reader: flags first, then the environment, then the file.
    func reader(
        flags extra: [AbsoluteConfigKey: ConfigValue] = [:],
        environment: [String: String] = ProcessInfo.processInfo.environment
    ) async throws -> ConfigReader {
        var values = extra
        if let dataDirectory { values[AbsoluteConfigKey(Settings.Key.dataDirectory)] = .init(.string(dataDirectory), isSecret: false) }
        let env = EnvironmentVariablesProvider(environmentVariables: environment)
        var providers: [any ConfigProvider] = [
            InMemoryProvider(name: "flags", values: values),
            KeyMappingProvider(upstream: env) { key in key.prepending(["switchboard"]) },
        ]
        if let file = config ?? environment["SWITCHBOARD_CONFIG"] {
            guard FileManager.default.fileExists(atPath: file) else {
                throw SettingsError("configuration file \(file) does not exist")
            }
            do {
                providers.append(try await FileProvider<JSONSnapshot>(filePath: FilePath(file)))
            } catch {
                throw SettingsError("configuration file \(file): \(error)")
            }
        }
        return ConfigReader(providers: providers)
    }

    func settings(flags: [AbsoluteConfigKey: ConfigValue] = [:]) async throws -> Settings {
        try Settings(reader: try await reader(flags: flags))
    }
}
