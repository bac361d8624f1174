// swift-tools-version: 6.2
import PackageDescription

let package = Package(
    name: "switchboard",
    platforms: [.macOS(.v15)],
    products: [
        .executable(name: "switchboard", targets: ["switchboard"]),
    ],
    dependencies: [
        .package(url: "https://github.com/groue/GRDB.swift", from: "7.10.0"),
        .package(url: "https://github.com/hummingbird-project/hummingbird", from: "2.28.1"),
        .package(url: "https://github.com/hummingbird-project/hummingbird-websocket", from: "2.8.1"),
        .package(url: "https://github.com/apple/swift-argument-parser", from: "1.8.2"),
        .package(url: "https://github.com/apple/swift-configuration", from: "1.4.0"),
        .package(url: "https://github.com/apple/swift-crypto", "3.12.3"..<"5.0.0"),
        .package(url: "https://github.com/apple/swift-log", from: "1.16.2"),
        .package(url: "https://github.com/apple/swift-metrics", from: "2.13.0"),
        .package(url: "https://github.com/swift-server/swift-prometheus", from: "2.4.1"),
        .package(url: "https://github.com/swift-server/swift-service-lifecycle", from: "2.13.0"),
        .package(url: "https://github.com/apple/swift-system", from: "1.8.1"),
        .package(url: "https://github.com/apple/swift-nio", from: "2.101.2"),
        .package(url: "https://github.com/apple/swift-nio-ssl", from: "2.37.6"),
        .package(url: "https://github.com/apple/swift-nio-extras", from: "1.35.2"),
        .package(url: "https://github.com/swift-server/async-http-client", from: "1.37.0"),
    ],
    targets: [
        // Byte formats (STUN/TURN, ChannelData, RTP/RTCP, SDP): pure values, no I/O.
        .target(
            name: "Wire",
            dependencies: [
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "Crypto", package: "swift-crypto"),
            ]
        ),

        // Who may come in: token buckets per client source (an IPv4 address, an IPv6 /64),
        // shared by the login limit, WHEP admission and the relay. Pure values plus a lock.
        .target(
            name: "Admission",
            dependencies: [
                "Wire",
                .product(name: "Metrics", package: "swift-metrics"),
                .product(name: "NIOConcurrencyHelpers", package: "swift-nio"),
            ]
        ),

        // SQLite through GRDB; the SQL in top-level Migrations/ is embedded at build time.
        .target(
            name: "Store",
            dependencies: [
                "Wire",
                .product(name: "GRDB", package: "GRDB.swift"),
                .product(name: "Crypto", package: "swift-crypto"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "NIOConcurrencyHelpers", package: "swift-nio"),
            ],
            plugins: ["EmbedMigrations"]
        ),

        // HTTP API (Hummingbird).
        .target(
            name: "Rendezvous",
            dependencies: [
                "Wire", "Store", "Admission",
                .product(name: "Hummingbird", package: "hummingbird"),
                .product(name: "HummingbirdWebSocket", package: "hummingbird-websocket"),
                .product(name: "NIOHTTPTypes", package: "swift-nio-extras"),
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "NIOHTTP1", package: "swift-nio"),
                .product(name: "NIOConcurrencyHelpers", package: "swift-nio"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "Metrics", package: "swift-metrics"),
                .product(name: "Prometheus", package: "swift-prometheus"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
            ],
            plugins: ["EmbedDocs"]
        ),

        // TURN/STUN relay (issue: Relay).
        .target(
            name: "Relay",
            dependencies: [
                "Wire", "Store", "Datagram", "Admission",
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "NIOSSL", package: "swift-nio-ssl"),
                .product(name: "Crypto", package: "swift-crypto"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "Metrics", package: "swift-metrics"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
            ]
        ),

        // TURN client (RFC 8656): a pure state machine (Core/) and a NIO driver over UDP, TCP
        // and TLS, for the peer agent's relay candidates and the relay benchmark.
        .target(
            name: "TURNClient",
            dependencies: [
                "Wire",
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "NIOSSL", package: "swift-nio-ssl"),
            ]
        ),

        // System OpenSSL (DTLS 1.2) and libsrtp2 (SRTP) for the media edge.
        .systemLibrary(name: "CSSL", path: "Sources/CSSL", pkgConfig: "openssl", providers: [.apt(["libssl-dev"])]),
        .systemLibrary(name: "CSRTP", path: "Sources/CSRTP", pkgConfig: "libsrtp2", providers: [.apt(["libsrtp2-dev"])]),
        // sendmmsg with UDP segmentation offload (glibc GNU extensions and CMSG macros), and the
        // Swift side the media edge and the relay send with.
        .target(name: "CDatagram", path: "Sources/CDatagram"),
        // System usrsctp (SCTP in AF_CONN mode, carried inside DTLS) for the peer agent's data
        // channels, and the Swift side: associations driven from one thread, DCEP on top.
        .systemLibrary(name: "CUSRSCTP", path: "Sources/CUSRSCTP", pkgConfig: "usrsctp", providers: [.apt(["libusrsctp-dev"])]),
        .target(
            name: "DataChannel",
            dependencies: ["CUSRSCTP", "Wire", .product(name: "NIOCore", package: "swift-nio")]
        ),
        .target(
            name: "Datagram",
            dependencies: ["Wire", "CDatagram", .product(name: "NIOCore", package: "swift-nio")]
        ),

        // Full ICE agent (RFC 8445, consent RFC 7675) for the peer agent: a pure state machine
        // over Wire's STUN that takes a clock and returns datagrams to send; no sockets.
        .target(
            name: "ICE",
            dependencies: ["Wire", .product(name: "NIOCore", package: "swift-nio")]
        ),
        // DTLS 1.2 through OpenSSL over memory BIOs: certificate, fingerprint, SRTP key export;
        // the media edge's DTLS-SRTP and the peer agent's SCTP over DTLS.
        .target(name: "DTLS", dependencies: ["CSSL", "Wire"]),

        // SRTP/SRTCP through libsrtp2 (with OpenSSL behind its ciphers): the media edge and the
        // load viewers.
        .target(
            name: "SRTP",
            dependencies: ["Wire", "DTLS", "CSSL", "CSRTP", .product(name: "NIOCore", package: "swift-nio")]
        ),

        // Load clients for the benchmarks (`switchboard bench …`): an HTTP/1.1 connection, a
        // TURN flood client and UDP echo peer, WHEP viewers and a synthetic H.264 source.
        .target(
            name: "LoadClients",
            dependencies: [
                "Wire", "DTLS", "SRTP", "ICE", "TURNClient",
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "NIOHTTP1", package: "swift-nio"),
                .product(name: "NIOConcurrencyHelpers", package: "swift-nio"),
            ]
        ),

        // WHEP media edge (issue: MediaEdge).
        .target(
            name: "MediaEdge",
            dependencies: [
                "Wire", "Store", "DTLS", "SRTP", "CSSL", "CSRTP", "Datagram", "Admission",
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "Metrics", package: "swift-metrics"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
            ]
        ),

        // The peer agent's library (issue 16): signaling client, connection manager, tunnels.
        .target(
            name: "Peer",
            dependencies: [
                "Wire", "ICE", "DTLS", "DataChannel", "TURNClient",
                .product(name: "AsyncHTTPClient", package: "async-http-client"),
                .product(name: "HummingbirdWSClient", package: "hummingbird-websocket"),
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "NIOHTTP1", package: "swift-nio"),
                .product(name: "NIOWebSocket", package: "swift-nio"),
                .product(name: "Logging", package: "swift-log"),
            ]
        ),

        .executableTarget(
            name: "switchboard",
            dependencies: [
                "Wire", "Store", "Rendezvous", "Relay", "MediaEdge", "TURNClient", "DTLS", "SRTP", "Peer", "LoadClients",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
                .product(name: "Configuration", package: "swift-configuration"),
                .product(name: "Hummingbird", package: "hummingbird"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "Metrics", package: "swift-metrics"),
                .product(name: "Prometheus", package: "swift-prometheus"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
                .product(name: "SystemPackage", package: "swift-system"),
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "NIOHTTP1", package: "swift-nio"),
                .product(name: "NIOConcurrencyHelpers", package: "swift-nio"),
            ]
        ),

        // Build-time tool + plugin that turn Migrations/*.sql into Swift source inside Store.
        .executableTarget(name: "migration-embedder", path: "Sources/migration-embedder"),
        .plugin(
            name: "EmbedMigrations",
            capability: .buildTool(),
            dependencies: ["migration-embedder"]
        ),
        // The same for files served over HTTP (docs/openapi.yaml).
        .executableTarget(name: "file-embedder", path: "Sources/file-embedder"),
        .plugin(
            name: "EmbedDocs",
            capability: .buildTool(),
            dependencies: ["file-embedder"]
        ),

        .testTarget(
            name: "WireTests",
            dependencies: [
                "Wire",
                .product(name: "NIOCore", package: "swift-nio"),
            ]
        ),
        .testTarget(name: "AdmissionTests", dependencies: ["Admission", "Wire"]),
        .testTarget(
            name: "PeerTests",
            dependencies: [
                "Peer", "Wire",
                .product(name: "Logging", package: "swift-log"),
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "Crypto", package: "swift-crypto"),
            ]
        ),
        .testTarget(
            name: "DataChannelTests",
            dependencies: [
                "DataChannel", "Wire",
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "Crypto", package: "swift-crypto"),
            ],
            exclude: ["aiortc_sctp_peer.py"]
        ),
        .testTarget(
            name: "ICETests",
            dependencies: ["ICE", "Wire", .product(name: "NIOCore", package: "swift-nio")]
        ),
        .testTarget(
            name: "RelayTests",
            dependencies: [
                "Relay", "Wire",
                .product(name: "NIOCore", package: "swift-nio"),
            ]
        ),
        .testTarget(
            name: "TURNClientTests",
            dependencies: [
                "TURNClient", "Relay", "Wire", "Store",
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "NIOEmbedded", package: "swift-nio"),
                .product(name: "NIOConcurrencyHelpers", package: "swift-nio"),
                .product(name: "Logging", package: "swift-log"),
            ]
        ),
        .testTarget(
            name: "DatagramTests",
            dependencies: ["Datagram", "Wire", .product(name: "NIOCore", package: "swift-nio")]
        ),
        .testTarget(name: "DTLSTests", dependencies: ["DTLS", "Wire"]),
        .testTarget(
            name: "MediaEdgeTests",
            dependencies: [
                "MediaEdge", "DTLS", "SRTP", "Wire", "Store",
                .product(name: "NIOCore", package: "swift-nio"),
            ]
        ),
        .testTarget(
            name: "StoreTests",
            dependencies: [
                "Store",
                .product(name: "GRDB", package: "GRDB.swift"),
                .product(name: "NIOConcurrencyHelpers", package: "swift-nio"),
            ]
        ),
        .testTarget(
            name: "SwitchboardTests",
            dependencies: [
                "switchboard", "Rendezvous", "Store", "MediaEdge",
                .product(name: "Logging", package: "swift-log"),
                .product(name: "Configuration", package: "swift-configuration"),
                .product(name: "Hummingbird", package: "hummingbird"),
                .product(name: "HummingbirdTesting", package: "hummingbird"),
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "NIOConcurrencyHelpers", package: "swift-nio"),
            ]
        ),
    ],
    swiftLanguageModes: [.v6]
)

// libFuzzer targets (Fuzz/Sources), declared only when SWITCHBOARD_FUZZ is set (`make fuzz`,
// `make fuzz-all`): they drive the `package` and internal cores (MediaCore, TURNCore,
// WHEPAnswer, the HTTP handlers' parsers), so they live in this package, and `swift build` and
// `swift test` never see them. SWITCHBOARD_FUZZ names the sanitizer besides the fuzzer's
// coverage ("address", or "none" for runs many times faster). Only our own targets are
// instrumented: coverage then points at our code, and the build tools the plugins run stay
// plain executables. They are built optimized (debug Swift is 10-50x slower per input) with
// testability, since the harnesses reach internal state (`@testable import`).
if let sanitizer = Context.environment["SWITCHBOARD_FUZZ"] {
    let flags = (sanitizer == "none" ? ["-sanitize=fuzzer"] : ["-sanitize=fuzzer,\(sanitizer)"]) + ["-enable-testing"]
    for target in package.targets
        where ["Wire", "Store", "Rendezvous", "Relay", "Datagram", "DTLS", "SRTP", "MediaEdge", "ICE", "Peer"].contains(target.name) {
        target.swiftSettings = (target.swiftSettings ?? []) + [.unsafeFlags(flags)]
    }
    let nio = Target.Dependency.product(name: "NIOCore", package: "swift-nio")
    func fuzzTarget(_ name: String, _ dependencies: [Target.Dependency]) -> Target {
        .executableTarget(name: name, dependencies: ["FuzzSupport", nio] + dependencies, path: "Fuzz/Sources/\(name)",
                          swiftSettings: [.unsafeFlags(["-parse-as-library"] + flags)],
                          linkerSettings: [.unsafeFlags(Array(flags.dropLast()))])
    }
    package.targets += [
        .target(name: "FuzzSupport", dependencies: ["Wire", nio], path: "Fuzz/Sources/FuzzSupport",
                swiftSettings: [.unsafeFlags(flags)]),
        .target(name: "MediaRig", dependencies: ["FuzzSupport", "MediaEdge", "DTLS", "SRTP", "Wire", "Store", nio],
                path: "Fuzz/Sources/MediaRig", swiftSettings: [.unsafeFlags(flags)]),
        fuzzTarget("WireFuzz", ["Wire"]),
        fuzzTarget("MediaFuzz", ["MediaRig", "MediaEdge", "DTLS", "Wire", "Store"]),
        fuzzTarget("RTCPFuzz", ["MediaRig", "MediaEdge", "Wire"]),
        fuzzTarget("TURNFuzz", ["Relay", "Wire"]),
        fuzzTarget("WHEPFuzz", ["MediaEdge", "Wire"]),
        fuzzTarget("HTTPFuzz", ["Rendezvous", "Wire", "Admission"]),
        fuzzTarget("PeerFuzz", ["Peer", "ICE", "Wire"]),
    ]
    package.products += ["WireFuzz", "MediaFuzz", "RTCPFuzz", "TURNFuzz", "WHEPFuzz", "HTTPFuzz", "PeerFuzz"].map {
        .executable(name: $0, targets: [$0])
    }
}
