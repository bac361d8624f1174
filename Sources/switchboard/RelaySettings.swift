import ArgumentParser
import Configuration
import Foundation
import Relay
import Rendezvous
import Wire

/// Flags of the TURN relay (each also a `SWITCHBOARD_*` variable and a config-file key;
/// repeatable ones take a comma-separated list there).
struct RelayOptions: ParsableArguments {
    @Option(name: .customLong("turn-listen"), help: ArgumentHelp(
        "TURN/STUN address for UDP and TCP, repeatable (default 127.0.0.1:3478).", valueName: "host:port"))
    var turnListen: [String] = []

    @Option(name: .customLong("turn-tls-listen"), help: ArgumentHelp(
        "TURN over TLS address, repeatable (default 127.0.0.1:5349; needs --tls-cert and --tls-key).",
        valueName: "host:port"))
    var turnTLSListen: [String] = []

    @Option(name: .customLong("tls-cert"), help: ArgumentHelp("PEM certificate chain for TURN over TLS.", valueName: "file"))
    var tlsCert: String?

    @Option(name: .customLong("tls-key"), help: ArgumentHelp("PEM private key for TURN over TLS.", valueName: "file"))
    var tlsKey: String?

    @Option(name: .customLong("relay-ip"), help: ArgumentHelp(
        "Address relayed sockets bind to, repeatable: one IPv4, one IPv6 (default 127.0.0.1).", valueName: "ip"))
    var relayIP: [String] = []

    @Option(name: .customLong("relay-ports"), help: ArgumentHelp(
        "Port range of relayed sockets (default 49152-65535).", valueName: "min-max"))
    var relayPorts: String?

    @Option(name: .long, help: ArgumentHelp("TURN realm (default switchboard).", valueName: "realm"))
    var realm: String?

    @Option(name: .customLong("turn-secret"), help: ArgumentHelp(
        "TURN REST shared secret (default: generated once and kept in DATA_DIR/turn-secret).", valueName: "secret"))
    var turnSecret: String?

    @Option(name: .customLong("allowed-peer"), help: ArgumentHelp(
        "Peer range to allow despite the default deny list, repeatable.", valueName: "cidr"))
    var allowedPeer: [String] = []

    @Option(name: .customLong("denied-peer"), help: ArgumentHelp("Peer range to deny, repeatable.", valueName: "cidr"))
    var deniedPeer: [String] = []

    @Option(name: .customLong("user-quota"), help: ArgumentHelp(
        "Allocations per TURN username, 0 for no limit (default 0).", valueName: "n"))
    var userQuota: Int?

    @Option(name: .customLong("total-quota"), help: ArgumentHelp(
        "Allocations in all (default 50000).", valueName: "n"))
    var totalQuota: Int?

    @Option(name: .customLong("max-bps"), help: ArgumentHelp(
        "Bytes per second per allocation and direction, 0 for no cap (default 0).", valueName: "n"))
    var maxBPS: Int?

    @Option(name: .customLong("drain-seconds"), help: ArgumentHelp(
        "On SIGTERM, how long existing allocations may go on (default 10).", valueName: "n"))
    var drainSeconds: Int?

    @Option(name: .customLong("turn-auth-timeout"), help: ArgumentHelp(
        "Seconds a TURN TCP/TLS connection has, from accept and TLS handshake included, to send a request "
            + "that passes MESSAGE-INTEGRITY before it is closed (default 5).", valueName: "seconds"))
    var turnAuthTimeout: Int?

    @Option(name: .customLong("turn-idle-timeout"), help: ArgumentHelp(
        "Seconds a TURN TCP/TLS connection may go without an allocation (after its last authenticated "
            + "request or the allocation's end) before it is closed (default 30).", valueName: "seconds"))
    var turnIdleTimeout: Int?

    @Option(name: .customLong("turn-connections-per-source"), help: ArgumentHelp(
        "TURN TCP/TLS connections per client address (IPv6 /64), more are closed at accept; 0 for no limit "
            + "(default 128).", valueName: "n"))
    var turnConnectionsPerSource: Int?

    @Option(name: .customLong("turn-connections"), help: ArgumentHelp(
        "TURN TCP/TLS connections in all, more are closed at accept; 0 for no limit (default 10000).",
        valueName: "n"))
    var turnConnections: Int?

    var flags: [AbsoluteConfigKey: ConfigValue] {
        var values: [AbsoluteConfigKey: ConfigValue] = [:]
        func set(_ key: ConfigKey, _ value: String?, secret: Bool = false) {
            if let value { values[AbsoluteConfigKey(key)] = .init(.string(value), isSecret: secret) }
        }
        func set(_ key: ConfigKey, _ list: [String]) {
            if !list.isEmpty { values[AbsoluteConfigKey(key)] = .init(.stringArray(list), isSecret: false) }
        }
        func set(_ key: ConfigKey, _ number: Int?) {
            if let number { values[AbsoluteConfigKey(key)] = .init(.int(number), isSecret: false) }
        }
        set(RelaySettings.Key.turnListen, turnListen)
        set(RelaySettings.Key.turnTLSListen, turnTLSListen)
        set(RelaySettings.Key.tlsCert, tlsCert)
        set(RelaySettings.Key.tlsKey, tlsKey)
        set(RelaySettings.Key.relayIP, relayIP)
        set(RelaySettings.Key.relayPorts, relayPorts)
        set(RelaySettings.Key.realm, realm)
        set(RelaySettings.Key.turnSecret, turnSecret, secret: true)
        set(RelaySettings.Key.allowedPeer, allowedPeer)
        set(RelaySettings.Key.deniedPeer, deniedPeer)
        set(RelaySettings.Key.userQuota, userQuota)
        set(RelaySettings.Key.totalQuota, totalQuota)
        set(RelaySettings.Key.maxBPS, maxBPS)
        set(RelaySettings.Key.drainSeconds, drainSeconds)
        set(RelaySettings.Key.turnAuthTimeout, turnAuthTimeout)
        set(RelaySettings.Key.turnIdleTimeout, turnIdleTimeout)
        set(RelaySettings.Key.turnConnectionsPerSource, turnConnectionsPerSource)
        set(RelaySettings.Key.turnConnections, turnConnections)
        return values
    }
}

/// RelaySettings reads the relay's keys into a `RelayConfiguration`.
enum RelaySettings {
    enum Key {
        static let turnListen: ConfigKey = "turn-listen"
        static let turnTLSListen: ConfigKey = "turn-tls-listen"
        static let tlsCert: ConfigKey = "tls-cert"
        static let tlsKey: ConfigKey = "tls-key"
        static let relayIP: ConfigKey = "relay-ip"
        static let relayPorts: ConfigKey = "relay-ports"
        static let realm: ConfigKey = "realm"
        static let turnSecret: ConfigKey = "turn-secret"
        static let allowedPeer: ConfigKey = "allowed-peer"
        static let deniedPeer: ConfigKey = "denied-peer"
        static let userQuota: ConfigKey = "user-quota"
        static let totalQuota: ConfigKey = "total-quota"
        static let maxBPS: ConfigKey = "max-bps"
        static let drainSeconds: ConfigKey = "drain-seconds"
        static let turnAuthTimeout: ConfigKey = "turn-auth-timeout"
        static let turnIdleTimeout: ConfigKey = "turn-idle-timeout"
        static let turnConnectionsPerSource: ConfigKey = "turn-connections-per-source"
        static let turnConnections: ConfigKey = "turn-connections"
    }

    static let secretFileName = "turn-secret"

    /// What peers are told about the relay: its STUN/TURN URLs (RFC 7064/7065) and the
    /// secret that signs their TURN credentials.
    static func rendezvous(relay: RelayConfiguration, aclOpen: Bool) -> RendezvousConfiguration {
        var configuration = RendezvousConfiguration()
        configuration.aclOpen = aclOpen
        func host(_ listener: RelayConfiguration.Listener) -> String {
            listener.host.contains(":") ? "[\(listener.host)]" : listener.host
        }
        for listener in relay.listeners {
            configuration.stunURLs.append("stun:\(host(listener)):\(listener.port)")
            configuration.turnURLs.append("turn:\(host(listener)):\(listener.port)?transport=udp")
            configuration.turnURLs.append("turn:\(host(listener)):\(listener.port)?transport=tcp")
        }
        if relay.tlsCertificatePath != nil {
            for listener in relay.tlsListeners {
                configuration.turnURLs.append("turns:\(host(listener)):\(listener.port)?transport=tcp")
            }
        }
        configuration.turnSecret = relay.restSecret
        return configuration
    }

    static func realm(reader: ConfigReader) -> String {
        reader.string(forKey: Key.realm, default: "switchboard")
    }

    /// The relay configuration; `dataDirectory` holds the generated REST secret.
    static func configuration(reader: ConfigReader, dataDirectory: String) throws -> RelayConfiguration {
        var configuration = RelayConfiguration()
        configuration.listeners = try listeners(reader, Key.turnListen, default: ["127.0.0.1:3478"])
        configuration.tlsListeners = try listeners(reader, Key.turnTLSListen, default: ["127.0.0.1:5349"])
        configuration.tlsCertificatePath = reader.string(forKey: Key.tlsCert)
        configuration.tlsKeyPath = reader.string(forKey: Key.tlsKey)
        if (configuration.tlsCertificatePath == nil) != (configuration.tlsKeyPath == nil) {
            throw SettingsError("tls-cert and tls-key go together")
        }

        let ips = reader.stringArray(forKey: Key.relayIP, default: ["127.0.0.1"])
        var relayIPs: [IPAddress] = []
        for text in ips {
            guard let ip = IPAddress(text) else { throw SettingsError("relay-ip: \"\(text)\" is not an IP address") }
            relayIPs.append(ip)
        }
        guard relayIPs.filter(\.isIPv4).count <= 1, relayIPs.filter({ !$0.isIPv4 }).count <= 1, !relayIPs.isEmpty else {
            throw SettingsError("relay-ip: give one IPv4 and/or one IPv6 address")
        }
        configuration.relayIPs = relayIPs

        let ports = reader.string(forKey: Key.relayPorts, default: "49152-65535")
        let bounds = ports.split(separator: "-", omittingEmptySubsequences: false)
        guard bounds.count == 2, let low = UInt16(bounds[0]), let high = UInt16(bounds[1]), low >= 1024, low < high else {
            throw SettingsError("relay-ports: \"\(ports)\" is not MIN-MAX with 1024 <= MIN < MAX <= 65535")
        }
        configuration.relayPorts = low...high

        configuration.realm = realm(reader: reader)
        guard !configuration.realm.isEmpty, configuration.realm.utf8.count <= 763 else {
            throw SettingsError("realm must be 1-763 bytes")
        }
        configuration.restSecret = try reader.string(forKey: Key.turnSecret, isSecret: true)
            ?? loadOrCreateSecret(dataDirectory: dataDirectory)

        var filter = PeerAddressFilter()
        for (key, target) in [(Key.allowedPeer, \PeerAddressFilter.allowed), (Key.deniedPeer, \PeerAddressFilter.denied)] {
            for text in reader.stringArray(forKey: key, default: []) {
                guard let cidr = CIDR(text) else { throw SettingsError("\(key): \"\(text)\" is not an address range") }
                filter[keyPath: target].append(cidr)
            }
        }
        // The relay's own addresses: peers there may only be its relayed sockets. The
        // server adds its HTTP and media addresses (`serve`).
        filter.own = Set(relayIPs)
        for listener in configuration.listeners + configuration.tlsListeners {
            if let ip = IPAddress(listener.host), ip != .v4(0), ip != .v6(0) { filter.own.insert(ip) }
        }
        filter.ownOpenPorts = configuration.relayPorts
        configuration.filter = filter

        configuration.userQuota = try nonNegative(reader, Key.userQuota, default: 0)
        configuration.totalQuota = try nonNegative(reader, Key.totalQuota, default: 50_000)
        configuration.bandwidthLimit = try nonNegative(reader, Key.maxBPS, default: 0)
        configuration.drainSeconds = try nonNegative(reader, Key.drainSeconds, default: 10)
        for (key, target, fallback) in [(Key.turnAuthTimeout, \RelayConfiguration.connectionAuthTimeout, 5),
                                        (Key.turnIdleTimeout, \RelayConfiguration.connectionIdleTimeout, 30)] {
            let seconds = try Settings.integer(reader, key, default: fallback)
            guard (1...3600).contains(seconds) else { throw SettingsError("\(key) must be 1-3600 seconds") }
            configuration[keyPath: target] = Int64(seconds) * 1000
        }
        configuration.connectionsPerSource = try nonNegative(reader, Key.turnConnectionsPerSource, default: 128)
        configuration.connectionsTotal = try nonNegative(reader, Key.turnConnections, default: 10_000)
        return configuration
    }

    private static func listeners(_ reader: ConfigReader, _ key: ConfigKey, default fallback: [String]) throws
        -> [RelayConfiguration.Listener]
    {
        try reader.stringArray(forKey: key, default: fallback).map { text in
            do {
                let address = try ListenAddress(parsing: text)
                return RelayConfiguration.Listener(host: address.host, port: address.port)
            } catch {
                throw SettingsError("\(key): \(error)")
            }
        }
    }

    private static func nonNegative(_ reader: ConfigReader, _ key: ConfigKey, default fallback: Int) throws -> Int {
        let value = try Settings.integer(reader, key, default: fallback)
        guard value >= 0 else { throw SettingsError("\(key) must not be negative") }
        return value
    }

    /// The REST secret kept in the data directory, made (256 random bits) on first use.
    static func loadOrCreateSecret(dataDirectory: String) throws -> String {
        let path = (dataDirectory as NSString).appendingPathComponent(secretFileName)
        if let data = FileManager.default.contents(atPath: path),
           let text = String(data: data, encoding: .utf8)?.trimmingCharacters(in: .whitespacesAndNewlines),
           !text.isEmpty {
            return text
        }
        try FileManager.default.createDirectory(atPath: dataDirectory, withIntermediateDirectories: true,
                                                attributes: [.posixPermissions: 0o700])
        let bytes = randomBytes(32)
        let secret = Data(bytes).base64EncodedString()
            .replacingOccurrences(of: "+", with: "-").replacingOccurrences(of: "/", with: "_")
            .replacingOccurrences(of: "=", with: "")
        guard FileManager.default.createFile(atPath: path, contents: Data((secret + "\n").utf8),
                                             attributes: [.posixPermissions: 0o600]) else {
            throw SettingsError("cannot write \(path)")
        }
        return secret
    }
}
