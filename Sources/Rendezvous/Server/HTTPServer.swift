import Admission
import Foundation
import Hummingbird
import HummingbirdCore
import HummingbirdWebSocket
import Logging
import NIOCore
import NIOPosix
import Prometheus
import Store

/// HTTPServer assembles Switchboard's HTTP application: the operational endpoints
/// (`/healthz`, `/metrics`) and the peer API (`/v1/...`, see `RendezvousAPI`).
package enum HTTPServer {
    package struct Configuration: Sendable {
        package var host: String
        package var port: Int
        package var serverName: String
        package var connections: HTTPConnectionLimits

        package init(host: String = "127.0.0.1", port: Int = 8080, serverName: String = "switchboard",
                     connections: HTTPConnectionLimits = HTTPConnectionLimits()) {
            self.host = host
            self.port = port
            self.serverName = serverName
            self.connections = connections
        }
    }

    /// The router alone, so that tests can drive it in-process.
    package static func makeRouter(
        database: SwitchboardDatabase, registry: PrometheusCollectorRegistry,
        rendezvous: RendezvousConfiguration = RendezvousConfiguration(), hub: EventHub = EventHub(),
        presence: PresenceTracker? = nil, edge: (any WHEPEdge)? = nil, logRequests: Bool = true
    ) -> Router<SwitchboardRequestContext> {
        let router = Router(context: SwitchboardRequestContext.self)
        router.middlewares.add(ProblemMiddleware(allowedMethods: Routes.methods(for:)))
        router.middlewares.add(MetricsMiddleware())
        // Every middleware is a layer of async frames each connection's task keeps for its
        // lifetime (an SSE stream lives long): request logging only when it would print.
        if logRequests { router.middlewares.add(LogRequestsMiddleware(.debug)) }

        router.get("healthz") { _, context -> Response in
            do {
                try await database.ping()
            } catch {
                context.logger.error("health check: database unavailable", metadata: ["error": "\(error)"])
                throw Problem(.serviceUnavailable, detail: "database unavailable")
            }
            return jsonResponse(#"{"status":"ok"}"#)
        }

        let enabledPeers = registry.makeGauge(name: "switchboard_peers", labels: [("status", "enabled")])
        let disabledPeers = registry.makeGauge(name: "switchboard_peers", labels: [("status", "disabled")])
        router.get("metrics") { _, context -> Response in
            // Registry sizes are read at scrape time: one cheap query, no bookkeeping elsewhere.
            do {
                let counts = try await database.peerCounts()
                enabledPeers.set(Double(counts.enabled))
                disabledPeers.set(Double(counts.disabled))
            } catch {
                context.logger.warning("metrics: cannot count peers", metadata: ["error": "\(error)"])
            }
            var buffer = ByteBuffer()
            buffer.writeBytes(registry.emitToBuffer())
            return Response(
                status: .ok,
                headers: [.contentType: "text/plain; version=0.0.4; charset=utf-8"],
                body: .init(byteBuffer: buffer))
        }
        router.get("openapi.yaml") { _, _ -> Response in
            Response(status: .ok, headers: [.contentType: "application/yaml"],
                     body: .init(byteBuffer: ByteBuffer(string: EmbeddedFiles.openAPIYAML)))
        }
        RendezvousAPI.addRoutes(to: router, database: database, configuration: rendezvous,
                                limiter: SourceLimiter(limits: .init(burst: rendezvous.loginFailureBurst,
                                                                     interval: rendezvous.loginFailureInterval)),
                                hub: hub, presence: presence ?? PresenceTracker(database: database))
        if let edge {
            let offers = SourceLimiter(limits: .init(burst: rendezvous.whepOfferBurst, interval: .seconds(60) / rendezvous.whepOffersPerMinute),
                                       name: "whep_offer")
            WHEPAPI.addRoutes(to: router, edge: edge, maximumBodyBytes: rendezvous.maximumBodyBytes, offers: offers)
        }
        return router
    }

    /// The HTTP server's own event loops. Request handlers run on their connection's loop and
    /// make short Store calls in place there (see `ConnectionOnItsLoop`); on loops of their own,
    /// a slow Store call can never hold up the relay's or the media edge's packets, which use
    /// NIO's shared loops. (None waits for the write lock there: see Store's `writeInPlace`.)
    /// One loop per core the process may run on.
    static let eventLoopGroup = MultiThreadedEventLoopGroup(numberOfThreads: usableCores)

    /// The cores this process may run on: NIO's `System.coreCount` follows cgroup and cpuset
    /// limits but not the affinity mask (`taskset`, systemd's `CPUAffinity=`). Two loops
    /// time-sliced on one core make a request on one wait out the other's slice.
    package static var usableCores: Int {
        // Glibc's sched_getaffinity needs _GNU_SOURCE; the kernel says the same here.
        if let status = try? String(contentsOfFile: "/proc/self/status", encoding: .utf8),
           let line = status.split(separator: "\n").first(where: { $0.hasPrefix("Cpus_allowed:") }) {
            let allowed = line.dropFirst("Cpus_allowed:".count).reduce(0) { count, digit in
                count + (digit.hexDigitValue ?? 0).nonzeroBitCount
            }
            if allowed > 0 { return min(allowed, System.coreCount) }
        }
        return System.coreCount
    }

    /// The HTTP service. `onRunning` receives the bound address (useful with port 0).
    package static func makeApplication(
        configuration: Configuration,
        database: SwitchboardDatabase,
        registry: PrometheusCollectorRegistry,
        rendezvous: RendezvousConfiguration = RendezvousConfiguration(),
        hub: EventHub = EventHub(),
        edge: (any WHEPEdge)? = nil,
        logger: Logger,
        onRunning: @escaping @Sendable (SocketAddress?) async -> Void = { _ in }
    ) -> some ApplicationProtocol & Sendable {
        let presence = PresenceTracker(database: database)
        let streams = EventStreamHandler.Services(
            database: database, hub: hub, presence: presence, heartbeats: Heartbeats(period: rendezvous.sseHeartbeat),
            serverName: configuration.serverName)
        let sources = HTTPSourceCounter(limit: configuration.connections.perSource)
        return Application(
            router: makeRouter(database: database, registry: registry, rendezvous: rendezvous, hub: hub,
                               presence: presence, edge: edge, logRequests: logger.logLevel <= .debug),
            server: HTTPServerBuilder { responder in
                ConnectionOnItsLoop(
                    inner: HTTP1WebSocketUpgradeChannel(
                        responder: responder,
                        configuration: .init(
                            http1: .init(additionalChannelHandlers: [EventStreamHandler(services: streams)]),
                            ws: .init(maxFrameSize: 1 << 16, autoPing: .enabled(timePeriod: .seconds(30)))),
                        shouldUpgrade: { head, _, _ in
                            try await WebSocketAPI.shouldUpgrade(head, database: database, configuration: rendezvous,
                                                                 hub: hub, presence: presence)
                        }),
                    connectionGuard: HTTPConnectionGuard(limits: configuration.connections, sources: sources))
            },
            configuration: .init(
                address: .hostname(configuration.host, port: configuration.port),
                serverName: configuration.serverName,
                // Thousands of peers reconnect their event streams at once after a restart;
                // Hummingbird's 256 overflowed the accept queue (the kernel caps this at
                // net.core.somaxconn).
                backlog: 4096),
            onServerRunning: { channel in await onRunning(channel.localAddress) },
            eventLoopGroupProvider: .shared(eventLoopGroup),
            logger: logger)
    }

    static func jsonResponse(_ json: String, status: HTTPResponse.Status = .ok) -> Response {
        Response(
            status: status, headers: [.contentType: "application/json"],
            body: .init(byteBuffer: ByteBuffer(string: json)))
    }
}

/// Routes lists every path the HTTP API serves and its methods, for 405 answers. A test
/// checks each entry against the router.
package enum Routes {
    package static let table: [(path: String, methods: [HTTPRequest.Method])] = [
        ("/healthz", [.get]),
        ("/metrics", [.get]),
        ("/openapi.yaml", [.get]),
        ("/v1/login", [.post]),
        ("/v1/logout", [.post]),
        ("/v1/ice-servers", [.get]),
        ("/v1/peers/:id", [.get]),
        ("/v1/peers/:id/sessions", [.post]),
        ("/v1/sessions/:sid", [.get, .patch, .delete]),
        ("/v1/events", [.get]),
        ("/v1/ws", [.get]),
        ("/whep/:name", [.post, .options]),
        ("/whep/:name/:viewer", [.patch, .delete, .options]),
        ("/play/:name", [.get]),
    ]

    /// The methods of the route `path` matches (`:name` matches one segment), or nil.
    package static func methods(for path: String) -> [HTTPRequest.Method]? {
        let segments = path.split(separator: "/", omittingEmptySubsequences: false).dropFirst()
        for route in table {
            let pattern = route.path.split(separator: "/", omittingEmptySubsequences: false).dropFirst()
            guard pattern.count == segments.count else { continue }
            if zip(pattern, segments).allSatisfy({ $0.hasPrefix(":") ? !$1.isEmpty : $0 == $1 }) {
                return route.methods
            }
        }
        return nil
    }
}
