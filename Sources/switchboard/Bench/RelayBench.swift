import ArgumentParser
import Foundation
import LoadClients
import NIOConcurrencyHelpers
import NIOCore
import NIOPosix
import TURNClient
import Wire

struct BenchCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "bench", abstract: "Load tools (benchmarks, not tests).", subcommands: [BenchRelay.self, BenchSignal.self, BenchWHEP.self, BenchSRTP.self])
}

/// `switchboard bench relay`: allocates on a TURN server, binds a channel to an echo peer it
/// runs itself, and floods ChannelData with a window of packets in flight, counting echoes.
/// Works against any TURN server (Switchboard, coturn) with REST or static credentials.
struct BenchRelay: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "relay",
        abstract: "Flood a TURN server's ChannelData path through an echo peer and print packets/s.")

    @Option(help: "TURN server address.") var server = "127.0.0.1:3478"
    @Option(help: "TURN REST shared secret (else --user and --password).") var secret: String?
    @Option(help: "Static user name.") var user = "bench"
    @Option(help: "Static user password.") var password: String?
    @Option(help: "Seconds to flood.") var seconds = 10
    @Option(help: "Packets in flight per client.") var window = 64
    @Option(help: "Payload bytes per packet.") var size = 200
    @Option(help: "Concurrent clients (allocations) flooding.") var clients = 1
    @Option(help: "Instead of flooding: open this many allocations, print READY, hold them --hold seconds.")
    var allocations = 0
    @Option(help: "Seconds to hold allocations in --allocations mode.") var hold = 10
    @Flag(help: "Print one JSON line.") var json = false

    func run() async throws {
        let address = try ListenAddress(parsing: server)
        let serverAddress = try SocketAddress(ipAddress: address.host, port: address.port)
        // One loop for the clients and the echo peer: pin the process to one core with taskset.
        let loop = MultiThreadedEventLoopGroup.singleton.next()

        let echo = try await LoadSockets.offloading(DatagramBootstrap(group: loop))
            .channelInitializer { channel in
                channel.eventLoop.makeCompletedFuture { try channel.pipeline.syncOperations.addHandler(UDPEchoHandler()) }
            }
            .bind(host: address.host.contains(":") ? "::1" : "127.0.0.1", port: 0).get()
        let peer = TransportAddress(echo.localAddress!)!

        let credentials: (String, String)
        if let secret {
            let rest = TURNRESTCredential(secret: secret, name: "bench",
                                          expiry: Int64(Date().timeIntervalSince1970) + 3600)
            credentials = (rest.username, rest.password)
        } else if let password {
            credentials = (user, password)
        } else {
            throw ValidationError("give --secret or --password")
        }

        if allocations > 0 {
            var held: [TURNLoadClient] = []
            let started = ContinuousClock.now
            for _ in 0..<allocations {
                let client = try await TURNLoadClient.connect(
                    loop: loop, server: serverAddress, offload: false, username: credentials.0, password: credentials.1)
                try await client.allocate()
                held.append(client)
            }
            let elapsed = ContinuousClock.now - started
            Output.line("READY \(held.count) allocations in \(elapsed)")
            try await Task.sleep(for: .seconds(hold))
            for client in held { await client.release() }
            return
        }

        var flooders: [TURNLoadClient] = []
        for _ in 0..<clients {
            let client = try await TURNLoadClient.connect(
                loop: loop, server: serverAddress, offload: true, username: credentials.0, password: credentials.1)
            try await client.allocate()
            try await client.bindChannel(to: peer)
            flooders.append(client)
        }
        let payload = ByteBuffer(repeating: 0x5A, count: size)
        try await loop.submit { for client in flooders { client.startFlood(payload: payload, window: window) } }.get()
        try await Task.sleep(for: .seconds(1))  // warm-up
        let before = try await loop.submit { flooders.map(\.received).reduce(0, +) }.get()
        let start = ContinuousClock.now
        try await Task.sleep(for: .seconds(seconds))
        let after = try await loop.submit { flooders.map(\.received).reduce(0, +) }.get()
        let elapsed = ContinuousClock.now - start
        let perSecond = Double(after - before) / elapsed.seconds
        try await loop.submit { for client in flooders { client.stopFlood() } }.get()
        try await Task.sleep(for: .milliseconds(200))  // let the window drain
        for client in flooders { await client.release() }
        try? await echo.close()
        if json {
            struct Report: Encodable {
                var packets_per_second, clients, window, size: Int
            }
            Output.json(Report(packets_per_second: Int(perSecond), clients: clients, window: window, size: size))
        } else {
            // Each echo is two relayed packets: client→peer and peer→client.
            Output.line("relay echo round trips/s: \(Int(perSecond)) (relayed packets/s: \(Int(perSecond * 2)), "
                + "clients \(clients), window \(window), \(size) B)")
        }
    }
}

