import Foundation
import Hummingbird
import Logging
import MediaEdge
import HummingbirdTesting
import Prometheus
import Rendezvous
import Store
import Testing
@testable import switchboard

@Suite struct HTTPServerTests {
    let directory = NSTemporaryDirectory() + "switchboard-http-\(UUID().uuidString)"

    func withApp(_ body: @escaping @Sendable (any TestClientProtocol) async throws -> Void) async throws {
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let database = try SwitchboardDatabase(dataDirectory: directory)
        let registry = PrometheusCollectorRegistry()
        registry.makeCounter(name: "switchboard_test_marker").increment()
        for name in ["a", "b", "c"] { _ = try database.addPeer(try PeerID(name)) }
        try database.setDisabled(try PeerID("c"), true)
        var media = MediaEdgeConfiguration(certificatePath: directory + "/dtls-certificate.pem")
        media.listenPort = 0
        let service = try await MediaService.make(configuration: media, database: database, logger: Logger(label: "test"))
        let app = Application(router: HTTPServer.makeRouter(database: database, registry: registry,
                                                                  edge: MediaEdgeWHEP(edge: service.edge)))
        try await app.test(.router) { client in try await body(client) }
    }

    /// Every route in `Routes.table` is served with each of its methods (the router never says
    /// "no such route"), and any other method gets 405 with the right Allow header.
    @Test func theRouteTableMatchesTheRouterAndOtherMethodsGet405() async throws {
        try await withApp { client in
            let every: [HTTPRequest.Method] = [.get, .post, .put, .patch, .delete, .trace]
            for route in Routes.table {
                let path = route.path.replacingOccurrences(of: ":id", with: "a").replacingOccurrences(of: ":sid", with: "s")
                    .replacingOccurrences(of: ":name", with: "cam").replacingOccurrences(of: ":viewer", with: "v")
                for method in every {
                    try await client.execute(uri: path, method: method) { response in
                        let body = String(buffer: response.body)
                        if route.methods.contains(method) {
                            #expect(response.status != .methodNotAllowed, "\(method) \(path)")
                            // The router's own 404 has no detail; handlers' 404s do.
                            #expect(!(response.status == .notFound && !body.contains("detail")), "\(method) \(path)")
                        } else {
                            #expect(response.status == .methodNotAllowed, "\(method) \(path)")
                            #expect(response.headers[.allow] == route.methods.map(\.rawValue).joined(separator: ", "))
                            #expect(response.headers[.contentType] == "application/problem+json")
                        }
                    }
                }
            }
        }
    }

    @Test func theOpenAPIDocumentIsServed() async throws {
        try await withApp { client in
            try await client.execute(uri: "/openapi.yaml", method: .get) { response in
                #expect(response.status == .ok)
                #expect(response.headers[.contentType] == "application/yaml")
                let text = String(buffer: response.body)
                #expect(text.hasPrefix("openapi: 3.1.0"))
                for route in Routes.table {
                    let path = route.path.split(separator: "/", omittingEmptySubsequences: false)
                        .map { $0.hasPrefix(":") ? "{\($0.dropFirst())}" : String($0) }.joined(separator: "/")
                    #expect(text.contains("\n  \(path):\n"), "\(path) is not in openapi.yaml")
                }
            }
        }
    }

    @Test func healthzAnswersOKWithJSON() async throws {
        try await withApp { client in
            try await client.execute(uri: "/healthz", method: .get) { response in
                #expect(response.status == .ok)
                #expect(response.headers[.contentType] == "application/json")
                #expect(String(buffer: response.body) == #"{"status":"ok"}"#)
            }
        }
    }

    @Test func metricsAreInPrometheusTextFormat() async throws {
        try await withApp { client in
            try await client.execute(uri: "/metrics", method: .get) { response in
                #expect(response.status == .ok)
                #expect(response.headers[.contentType]?.hasPrefix("text/plain; version=0.0.4") == true)
                let text = String(buffer: response.body)
                #expect(text.contains("# TYPE switchboard_test_marker counter"))
                #expect(text.contains("switchboard_test_marker 1"))
                #expect(text.contains(#"switchboard_peers{status="enabled"} 2"#))
                #expect(text.contains(#"switchboard_peers{status="disabled"} 1"#))
            }
        }
    }

    @Test(arguments: ["/nope", "/healthz/extra", "/%00", "/metrics?x=" + String(repeating: "a", count: 2000)])
    func unknownPathsAnswerWithAProblemDocument(path: String) async throws {
        try await withApp { client in
            try await client.execute(uri: path, method: .get) { response in
                if path.hasPrefix("/metrics") {
                    #expect(response.status == .ok)
                    return
                }
                #expect(response.status == .notFound)
                #expect(response.headers[.contentType] == "application/problem+json")
                let json = try JSONSerialization.jsonObject(with: Data(buffer: response.body)) as? [String: Any]
                #expect(json?["status"] as? Int == 404)
                #expect(json?["title"] as? String == "Not Found")
            }
        }
    }

    @Test func aWrongMethodIsAProblemToo() async throws {
        try await withApp { client in
            try await client.execute(uri: "/healthz", method: .post, body: ByteBuffer(string: "x")) { response in
                #expect(response.status.code >= 400 && response.status.code < 500)
                #expect(response.headers[.contentType] == "application/problem+json")
            }
        }
    }
}
