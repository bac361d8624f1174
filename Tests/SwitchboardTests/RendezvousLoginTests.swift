import Crypto
import Foundation
import Hummingbird
import HummingbirdTesting
import Prometheus
import Rendezvous
import Store
import Testing

@Suite struct RendezvousLoginTests {
    let directory = NSTemporaryDirectory() + "switchboard-login-\(UUID().uuidString)"

    static let configuration: RendezvousConfiguration = {
        var configuration = RendezvousConfiguration()
        configuration.stunURLs = ["stun:127.0.0.1:3478"]
        configuration.turnURLs = ["turn:127.0.0.1:3478?transport=udp"]
        configuration.turnSecret = "turn-secret"
        configuration.maximumBodyBytes = 1024
        // No refill during a test, however slowly a loaded machine runs its 22 logins.
        configuration.loginFailureInterval = .seconds(3600)
        return configuration
    }()

    func withApp(
        _ body: @escaping @Sendable (SwitchboardDatabase, String, any TestClientProtocol) async throws -> Void
    ) async throws {
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let database = try SwitchboardDatabase(dataDirectory: directory)
        let key = try database.addPeer(try PeerID("alice"), groups: [try GroupName("cams")]).text
        let app = Application(router: HTTPServer.makeRouter(
            database: database, registry: PrometheusCollectorRegistry(), rendezvous: Self.configuration))
        try await app.test(.router) { client in try await body(database, key, client) }
    }

    static func loginBody(_ id: String, _ key: String) -> ByteBuffer {
        ByteBuffer(data: try! JSONSerialization.data(withJSONObject: ["peer_id": id, "key": key]))
    }

    static let json: HTTPFields = [.contentType: "application/json"]

    static func object(_ buffer: ByteBuffer) -> [String: Any] {
        (try? JSONSerialization.jsonObject(with: Data(buffer: buffer))) as? [String: Any] ?? [:]
    }

    @Test func aPeerLogsInAndGetsATokenAndTURNCredentials() async throws {
        try await withApp { database, key, client in
            let token = try await client.execute(uri: "/v1/login", method: .post, headers: Self.json,
                                                 body: Self.loginBody("alice", key)) { response -> String in
                #expect(response.status == .ok)
                let body = Self.object(response.body)
                let token = body["token"] as? String ?? ""
                #expect(token.count == 43)
                #expect(body["expires_at"] is String)
                let servers = body["ice_servers"] as? [[String: Any]] ?? []
                #expect(servers.count == 2)
                let turn = servers.last ?? [:]
                let username = turn["username"] as? String ?? ""
                #expect(username.hasSuffix(":alice"))
                let mac = HMAC<Insecure.SHA1>.authenticationCode(
                    for: Array(username.utf8), using: SymmetricKey(data: Array("turn-secret".utf8)))
                #expect(turn["credential"] as? String == Data(mac).base64EncodedString())
                return token
            }
            #expect(try database.peerID(forToken: token) == "alice")
            try await client.execute(uri: "/v1/ice-servers", method: .get,
                                     headers: [.authorization: "Bearer \(token)"]) { response in
                #expect(response.status == .ok)
            }
            #expect(try database.peer(try PeerID("alice"))?.lastLoginAt != nil)
            #expect(try database.auditLog().first?.action == "login.ok")
        }
    }

    @Test func aWrongKeyAnUnknownIDAndADisabledPeerGetTheSameAnswer() async throws {
        try await withApp { database, key, client in
            _ = try database.addPeer(try PeerID("bob"))
            try database.setDisabled(try PeerID("bob"), true)
            var details: Set<String> = []
            for (id, candidate) in [("alice", "wrong-key"), ("nobody", key), ("bob", key), ("bad id!", key)] {
                try await client.execute(uri: "/v1/login", method: .post, headers: Self.json,
                                         body: Self.loginBody(id, candidate)) { response in
                    #expect(response.status == .unauthorized)
                    #expect(response.headers[.contentType] == "application/problem+json")
                    #expect(response.headers[.wwwAuthenticate] != nil)
                    details.insert(Self.object(response.body)["detail"] as? String ?? "")
                }
            }
            #expect(details.count == 1)
            #expect(try database.auditLog().filter { $0.action == "login.fail" }.count == 4)
        }
    }

    @Test func repeatedFailuresFromOneSourceGet429WithRetryAfter() async throws {
        try await withApp { _, key, client in
            var statuses: [Int] = []
            for _ in 0..<22 {
                try await client.execute(uri: "/v1/login", method: .post, headers: Self.json,
                                         body: Self.loginBody("alice", "wrong")) { response in
                    statuses.append(response.status.code)
                    if response.status == .tooManyRequests {
                        #expect(Int(response.headers[.retryAfter] ?? "") ?? 0 > 0)
                    }
                }
            }
            #expect(statuses.prefix(20).allSatisfy { $0 == 401 })
            #expect(statuses.suffix(2).allSatisfy { $0 == 429 })
            // Even the right key waits from a throttled source: the limit is checked before the key.
            try await client.execute(uri: "/v1/login", method: .post, headers: Self.json,
                                     body: Self.loginBody("alice", key)) { response in
                #expect(response.status == .tooManyRequests)
            }
        }
    }

    @Test func badRequestsGetProblemDocuments() async throws {
        try await withApp { _, key, client in
            let cases: [(HTTPFields, ByteBuffer, HTTPResponse.Status)] = [
                ([.contentType: "text/plain"], Self.loginBody("alice", key), .unsupportedMediaType),
                ([:], Self.loginBody("alice", key), .unsupportedMediaType),
                (Self.json, ByteBuffer(string: "{not json"), .badRequest),
                (Self.json, ByteBuffer(string: #"{"peer_id": 5}"#), .badRequest),
                (Self.json, ByteBuffer(string: "[" + String(repeating: "1,", count: 1000) + "1]"), .contentTooLarge),
            ]
            for (headers, body, status) in cases {
                try await client.execute(uri: "/v1/login", method: .post, headers: headers, body: body) { response in
                    #expect(response.status == status)
                    #expect(response.headers[.contentType] == "application/problem+json")
                }
            }
        }
    }

    @Test func tokensStopWorkingOnLogoutKeyRotationAndDisable() async throws {
        try await withApp { database, key, client in
            func login(_ key: String) async throws -> String {
                try await client.execute(uri: "/v1/login", method: .post, headers: Self.json,
                                         body: Self.loginBody("alice", key)) { Self.object($0.body)["token"] as? String ?? "" }
            }
            func status(_ token: String) async throws -> HTTPResponse.Status {
                try await client.execute(uri: "/v1/ice-servers", method: .get,
                                         headers: [.authorization: "Bearer \(token)"]) { $0.status }
            }
            let first = try await login(key)
            try await client.execute(uri: "/v1/logout", method: .post,
                                     headers: [.authorization: "Bearer \(first)"]) { #expect($0.status == .noContent) }
            #expect(try await status(first) == .unauthorized)

            let second = try await login(key)
            let newKey = try database.rotateKey(try PeerID("alice")).text
            #expect(try await status(second) == .unauthorized)

            let third = try await login(newKey)
            #expect(try await status(third) == .ok)
            try database.setDisabled(try PeerID("alice"), true)
            #expect(try await status(third) == .unauthorized)
        }
    }

    @Test(arguments: ["", "Bearer", "Bearer ", "Basic abc", "Bearer not-a-token", "bearer x y"])
    func missingOrForeignTokensGet401(header: String) async throws {
        try await withApp { _, _, client in
            let headers: HTTPFields = header.isEmpty ? [:] : [.authorization: header]
            try await client.execute(uri: "/v1/ice-servers", method: .get, headers: headers) { response in
                #expect(response.status == .unauthorized)
                #expect(response.headers[.wwwAuthenticate]?.hasPrefix("Bearer") == true)
            }
        }
    }

    @Test func theTokenIsNotInTheDatabaseFile() async throws {
        try await withApp { database, key, client in
            let token = try await client.execute(uri: "/v1/login", method: .post, headers: Self.json,
                                                 body: Self.loginBody("alice", key)) {
                Self.object($0.body)["token"] as? String ?? ""
            }
            #expect(!token.isEmpty)
            var bytes = Data()
            for suffix in ["", "-wal"] {
                bytes.append(FileManager.default.contents(atPath: database.path + suffix) ?? Data())
            }
            #expect(bytes.range(of: Data(token.utf8)) == nil)
        }
    }
}

@Suite struct RendezvousPeerLookupTests {
    let directory = NSTemporaryDirectory() + "switchboard-peers-\(UUID().uuidString)"

    @Test func aCallerSeesReachablePeersAndA404ForEverythingElse() async throws {
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let database = try SwitchboardDatabase(dataDirectory: directory)
        let key = try database.addPeer(try PeerID("cam1"), groups: [try GroupName("cams")]).text
        _ = try database.addPeer(try PeerID("cam2"), groups: [try GroupName("cams")])
        _ = try database.addPeer(try PeerID("stranger"))
        let app = Application(router: HTTPServer.makeRouter(
            database: database, registry: PrometheusCollectorRegistry(), rendezvous: RendezvousConfiguration()))
        try await app.test(.router) { client in
            let token = try await client.execute(
                uri: "/v1/login", method: .post, headers: RendezvousLoginTests.json,
                body: RendezvousLoginTests.loginBody("cam1", key)) { RendezvousLoginTests.object($0.body)["token"] as? String ?? "" }
            let auth: HTTPFields = [.authorization: "Bearer \(token)"]
            try await client.execute(uri: "/v1/peers/cam2", method: .get, headers: auth) { response in
                #expect(response.status == .ok)
                let body = RendezvousLoginTests.object(response.body)
                #expect(body["id"] as? String == "cam2")
                #expect(body["online"] as? Bool == false)
            }
            // The caller itself was seen just now (it logged in): online.
            try await client.execute(uri: "/v1/peers/cam1", method: .get, headers: auth) { response in
                #expect(RendezvousLoginTests.object(response.body)["online"] as? Bool == true)
            }
            var bodies: Set<String> = []
            for id in ["stranger", "ghost", "bad%20id"] {
                try await client.execute(uri: "/v1/peers/\(id)", method: .get, headers: auth) { response in
                    #expect(response.status == .notFound)
                    var body = RendezvousLoginTests.object(response.body)
                    body["instance"] = nil
                    bodies.insert("\(body["status"] ?? ""):\(body["detail"] ?? "")")
                }
            }
            #expect(bodies.count == 1)
            try await client.execute(uri: "/v1/peers/cam2", method: .get) { #expect($0.status == .unauthorized) }
        }
    }
}
