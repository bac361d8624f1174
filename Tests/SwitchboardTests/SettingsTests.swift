import ArgumentParser
import Configuration
import Foundation
import Testing
@testable import switchboard

@Suite struct SettingsTests {
    func settings(_ arguments: [String], environment: [String: String] = [:]) async throws -> Settings {
        let common = try CommonOptions.parse(arguments.filter { !$0.hasPrefix("--http-listen") && !$0.hasPrefix("--log-level") })
        let server = try ServerOptions.parse(arguments.filter { $0.hasPrefix("--http-listen") || $0.hasPrefix("--log-level") })
        return try Settings(reader: try await common.reader(flags: server.flags, environment: environment))
    }

    func configFile(_ json: String) throws -> String {
        let path = NSTemporaryDirectory() + "switchboard-config-\(UUID().uuidString).json"
        try json.write(toFile: path, atomically: true, encoding: .utf8)
        return path
    }

    @Test func defaultsApplyWhenNothingIsSet() async throws {
        let settings = try await settings([])
        #expect(settings == Settings())
        #expect(settings.dataDirectory == "./switchboard-data")
        #expect(settings.httpListen == ListenAddress(host: "127.0.0.1", port: 8080))
        #expect(settings.databasePath == "./switchboard-data/switchboard.db")
        #expect(settings.eventKeepalive == 15)
    }

    @Test func theEventKeepaliveComesFromTheEnvironment() async throws {
        #expect(try await settings([], environment: ["SWITCHBOARD_EVENT_KEEPALIVE": "2"]).eventKeepalive == 2)
    }

    @Test func theSessionRetentionDefaultsToADay() async throws {
        #expect(try await settings([]).sessionRetention == 86400)
        #expect(try await settings([], environment: ["SWITCHBOARD_SESSION_RETENTION": "2"]).sessionRetention == 2)
        for bad in ["0", "-5", "315360001", "a day"] {
            await #expect(throws: (any Error).self) {
                _ = try await settings([], environment: ["SWITCHBOARD_SESSION_RETENTION": bad])
            }
        }
    }

    @Test func streamsComeFromTheConfigFileAndBadOnesAreRefused() async throws {
        let file = try configFile(#"{"streams": ["cam:5004:5006", "radio::5008", "silent:5010"]}"#)
        defer { try? FileManager.default.removeItem(atPath: file) }
        let parsed = try await settings(["--config", file])
        #expect(parsed.streams == [
            .init(name: "cam", videoPort: 5004, audioPort: 5006), .init(name: "radio", videoPort: nil, audioPort: 5008),
            .init(name: "silent", videoPort: 5010, audioPort: nil),
        ])
        for bad in [#"["cam"]"#, #"["cam::"]"#, #"["cam:70000"]"#, #"[":5004"]"#, #"["cam:1:2:3"]"#, #"["cam:x"]"#] {
            let badFile = try configFile(#"{"streams": "# + bad + "}")
            defer { try? FileManager.default.removeItem(atPath: badFile) }
            await #expect(throws: SettingsError.self, "\(bad)") { try await settings(["--config", badFile]) }
        }
    }

    @Test func flagsBeatEnvironmentWhichBeatsTheFile() async throws {
        let file = try configFile(#"{"data-dir": "/from/file", "http-listen": "127.0.0.3:3", "log-level": "error"}"#)
        defer { try? FileManager.default.removeItem(atPath: file) }

        let fileOnly = try await settings(["--config", file])
        #expect(fileOnly.dataDirectory == "/from/file")
        #expect(fileOnly.httpListen.port == 3)
        #expect(fileOnly.logLevel == .error)

        let env = ["SWITCHBOARD_DATA_DIR": "/from/env", "SWITCHBOARD_HTTP_LISTEN": "127.0.0.2:2"]
        let envOverFile = try await settings(["--config", file], environment: env)
        #expect(envOverFile.dataDirectory == "/from/env")
        #expect(envOverFile.httpListen.port == 2)
        #expect(envOverFile.logLevel == .error)

        let flagsOverAll = try await settings(
            ["--config", file, "--data-dir", "/from/flag", "--http-listen=[::1]:1"], environment: env)
        #expect(flagsOverAll.dataDirectory == "/from/flag")
        #expect(flagsOverAll.httpListen == ListenAddress(host: "::1", port: 1))
    }

    @Test func theConfigFileCanBeNamedByTheEnvironment() async throws {
        let file = try configFile(#"{"data-dir": "/named/by/env"}"#)
        defer { try? FileManager.default.removeItem(atPath: file) }
        let settings = try await settings([], environment: ["SWITCHBOARD_CONFIG": file])
        #expect(settings.dataDirectory == "/named/by/env")
    }

    @Test func unrelatedEnvironmentVariablesAreIgnored() async throws {
        let settings = try await settings([], environment: ["DATA_DIR": "/x", "HTTP_LISTEN": "1.2.3.4:5"])
        #expect(settings == Settings())
    }

    @Test(arguments: [
        (["--http-listen", "nonsense"], [String: String]()),
        (["--log-level", "loud"], [:]),
        (["--data-dir", ""], [:]),
        ([], ["SWITCHBOARD_HTTP_LISTEN": "127.0.0.1:99999"]),
        ([], ["SWITCHBOARD_EVENT_KEEPALIVE": "0"]),
        ([], ["SWITCHBOARD_OFFER_TTL": "a minute"]),
        ([], ["SWITCHBOARD_SESSIONS_PER_MINUTE": "12.5"]),
        ([], ["SWITCHBOARD_SESSION_RETENTION": "a day"]),
        (["--config", "/does/not/exist.json"], [:]),
    ])
    func badValuesAreReportedNotDefaulted(arguments: [String], environment: [String: String]) async {
        await #expect(throws: (any Error).self) { _ = try await settings(arguments, environment: environment) }
    }

    /// `switchboard config` prints every setting under its key: read back as a config file, its
    /// output gives the same configuration again.
    @Test func whatConfigPrintsReadsBackAsTheSameConfiguration() async throws {
        let dataDirectory = NSTemporaryDirectory() + "switchboard-config-\(UUID().uuidString)"
        defer { try? FileManager.default.removeItem(atPath: dataDirectory) }
        let file = try configFile("""
            {"data-dir": "\(dataDirectory)", "acl": "open", "offer-ttl": 45, "session-retention": 600,
             "sessions-per-minute": 7, "turn-credential-lifetime": 900, "event-keepalive": 5, "write-timeout": 2,
             "http-request-timeout": 4, "http-idle-timeout": 20, "http-connections-per-source": 9,
             "media-listen": "127.0.0.2:9189", "media-announce": ["192.0.2.1"], "ingest-host": "127.0.0.3",
             "whep-pending-per-stream": 11, "whep-pending-per-source": 3, "whep-offers-per-minute": 30,
             "history-retention": 86400, "streams": ["cam:5004:5006", "radio::5008"],
             "turn-listen": ["127.0.0.1:3479"], "relay-ip": ["127.0.0.1"], "relay-ports": "50000-50100",
             "realm": "example.org", "allowed-peer": ["10.0.0.0/8"], "denied-peer": ["192.0.2.0/24"],
             "user-quota": 4, "total-quota": 400, "max-bps": 1000000, "drain-seconds": 3, "turn-auth-timeout": 7,
             "turn-idle-timeout": 40, "turn-connections-per-source": 12, "turn-connections": 99}
            """)
        defer { try? FileManager.default.removeItem(atPath: file) }
        func printed(_ path: String) async throws -> Data {
            let reader = try await CommonOptions.parse(["--config", path]).reader(flags: [:], environment: [:])
            let settings = try Settings(reader: reader)
            let relay = try RelaySettings.configuration(reader: reader, dataDirectory: settings.dataDirectory)
            let encoder = JSONEncoder()
            encoder.outputFormatting = [.sortedKeys]
            return try encoder.encode(ShowConfig.EffectiveConfiguration(settings: settings, relay: relay))
        }
        let first = try await printed(file)
        let printedFile = try configFile(String(decoding: first, as: UTF8.self))
        defer { try? FileManager.default.removeItem(atPath: printedFile) }
        #expect(try await printed(printedFile) == first)
        let keys = try #require(try JSONSerialization.jsonObject(with: first) as? [String: Any]).keys
        // Every key but tls-cert and tls-key, which are printed when set; never the secret.
        #expect(keys.count == 36 && !keys.contains("turn-secret"))
        #expect(try await settings(["--config", printedFile]).whepOffersPerMinute == 30)
    }

    @Test func aMalformedConfigFileIsAnError() async throws {
        let file = try configFile(#"{"data-dir": "#)
        defer { try? FileManager.default.removeItem(atPath: file) }
        await #expect(throws: SettingsError.self) { _ = try await settings(["--config", file]) }
    }
}
