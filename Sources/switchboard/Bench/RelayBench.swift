import ArgumentParser
import Foundation
import NIOConcurrencyHelpers
import NIOCore
import NIOPosix
import Relay
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

    /// The load tool's sockets take bursts as one read (UDP_GRO) and send them as one
    /// message (UDP_SEGMENT) where the kernel can, so that it is not what limits the run.
    static func offloading(_ bootstrap: DatagramBootstrap) -> DatagramBootstrap {
        guard System.supportsUDPReceiveOffload else {
            return bootstrap
                .channelOption(.recvAllocator, value: FixedSizeRecvByteBufferAllocator(capacity: 64 * 2048))
                .channelOption(.datagramVectorReadMessageCount, value: 64)
        }
        return bootstrap
            .channelOption(.recvAllocator, value: FixedSizeRecvByteBufferAllocator(capacity: 8 * 65536))
            .channelOption(.datagramVectorReadMessageCount, value: 8)
            .channelOption(.datagramReceiveOffload, value: true)
            .channelOption(.datagramReceiveSegmentSize, value: true)
    }

    func run() async throws {
        let address = try ListenAddress(parsing: server)
        let serverAddress = try SocketAddress(ipAddress: address.host, port: address.port)
        // One loop for the clients and the echo peer: pin the process to one core with taskset.
        let loop = MultiThreadedEventLoopGroup.singleton.next()

        let echo = try await Self.offloading(DatagramBootstrap(group: loop))
            .channelInitializer { channel in
                channel.eventLoop.makeCompletedFuture { try channel.pipeline.syncOperations.addHandler(EchoHandler()) }
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
            var held: [TURNBenchClient] = []
            let started = ContinuousClock.now
            for _ in 0..<allocations {
                let client = try await TURNBenchClient.connect(loop: loop, server: serverAddress, offload: false)
                try await client.allocate(username: credentials.0, password: credentials.1)
                held.append(client)
            }
            let elapsed = ContinuousClock.now - started
            Output.line("READY \(held.count) allocations in \(elapsed)")
            try await Task.sleep(for: .seconds(hold))
            for client in held { await client.release() }
            return
        }

        var flooders: [TURNBenchClient] = []
        for _ in 0..<clients {
            let client = try await TURNBenchClient.connect(loop: loop, server: serverAddress, offload: true)
            try await client.allocate(username: credentials.0, password: credentials.1)
            try await client.bindChannel(0x4000, to: peer)
            flooders.append(client)
        }
        let payload = ByteBuffer(repeating: 0x5A, count: size)
        try await loop.submit { for client in flooders { client.startFlood(payload: payload, window: window) } }.get()
        try await Task.sleep(for: .seconds(1))  // warm-up
        let before = try await loop.submit { flooders.map(\.handler.received).reduce(0, +) }.get()
        let start = ContinuousClock.now
        try await Task.sleep(for: .seconds(seconds))
        let after = try await loop.submit { flooders.map(\.handler.received).reduce(0, +) }.get()
        let elapsed = ContinuousClock.now - start
        let perSecond = Double(after - before) / elapsed.seconds
        try await loop.submit { for client in flooders { client.handler.stop() } }.get()
        try await Task.sleep(for: .milliseconds(200))  // let the window drain
        for client in flooders { await client.release() }
        try? await echo.close()
        if json {
            Output.line(#"{"packets_per_second":\#(Int(perSecond)),"clients":\#(clients),"window":\#(window),"size":\#(size)}"#)
        } else {
            // Each echo is two relayed packets: client→peer and peer→client.
            Output.line("relay echo round trips/s: \(Int(perSecond)) (relayed packets/s: \(Int(perSecond * 2)), "
                + "clients \(clients), window \(window), \(size) B)")
        }
    }
}

/// A minimal TURN client over UDP for load: STUN transactions during setup, then a
/// ChannelData flood that keeps `window` packets in flight.
final class TURNBenchClient: Sendable {
    let channel: any Channel
    let handler: BenchClientHandler
    let server: SocketAddress
    private let state = NIOLockedValueBox<(key: [UInt8], realm: String, nonce: String, username: String)?>(nil)

    init(channel: any Channel, handler: BenchClientHandler, server: SocketAddress) {
        self.channel = channel
        self.handler = handler
        self.server = server
    }

    /// `offload`: flooding clients take and send bursts whole (big receive buffers); clients
    /// that only hold an allocation keep small ones.
    static func connect(loop: any EventLoop, server: SocketAddress, offload: Bool) async throws -> TURNBenchClient {
        let handler = BenchClientHandler(server: server)
        let bootstrap = DatagramBootstrap(group: loop)
        let channel = try await (offload ? BenchRelay.offloading(bootstrap) : bootstrap)
            .channelInitializer { channel in
                channel.eventLoop.makeCompletedFuture { try channel.pipeline.syncOperations.addHandler(handler) }
            }
            .bind(host: server.protocol == .inet6 ? "::1" : "127.0.0.1", port: 0).get()
        return TURNBenchClient(channel: channel, handler: handler, server: server)
    }

    func allocate(username: String, password: String) async throws {
        let challenge = try await transact(STUNMessage(.allocate, .request, attributes: [.requestedTransport(17)]))
        guard let realm = try challenge.text(.realm), let nonce = try challenge.text(.nonce) else {
            throw BenchError("no REALM/NONCE in the challenge")
        }
        let key = STUNCredentials.longTermKey(username: username, realm: realm, password: password)
        state.withLockedValue { $0 = (key, realm, nonce, username) }
        let response = try await authenticated(STUNMessage(.allocate, .request, attributes: [.requestedTransport(17)]))
        guard response.type.messageClass == .successResponse else {
            throw BenchError("Allocate failed: \(String(describing: try? response.errorCode()))")
        }
    }

    func bindChannel(_ number: UInt16, to peer: TransportAddress) async throws {
        let id = TransactionID.random()
        let response = try await authenticated(STUNMessage(.channelBind, .request, transactionID: id, attributes: [
            .channelNumber(number), .xorAddress(.xorPeerAddress, peer, transactionID: id),
        ]))
        guard response.type.messageClass == .successResponse else {
            throw BenchError("ChannelBind failed: \(String(describing: try? response.errorCode()))")
        }
        handler.channelNumber = number
    }

    /// Ends the allocation (Refresh with LIFETIME 0) and closes the socket, so a later run
    /// that gets the same ephemeral port does not meet it (437).
    func release() async {
        _ = try? await authenticated(STUNMessage(.refresh, .request, attributes: [.lifetime(0)]))
        try? await channel.close()
    }

    private func authenticated(_ message: STUNMessage) async throws -> STUNMessage {
        guard let (key, realm, nonce, username) = state.withLockedValue({ $0 }) else { throw BenchError("no key") }
        var message = message
        message.attributes += [.text(.username, username), .text(.realm, realm), .text(.nonce, nonce)]
        return try await transact(message, key: key)
    }

    private func transact(_ message: STUNMessage, key: [UInt8]? = nil) async throws -> STUNMessage {
        let bytes = message.encoded(integrityKey: key, fingerprint: true)
        for _ in 0..<5 {
            let promise = channel.eventLoop.makePromise(of: STUNMessage.self)
            try await channel.eventLoop.submit {
                self.handler.pending = (message.transactionID, promise)
            }.get()
            try await channel.writeAndFlush(AddressedEnvelope(remoteAddress: server, data: ByteBuffer(bytes: bytes)))
            let timeout = channel.eventLoop.scheduleTask(in: .milliseconds(500)) {
                promise.fail(BenchError("timeout"))
            }
            do {
                let response = try await promise.futureResult.get()
                timeout.cancel()
                return response
            } catch {
                continue
            }
        }
        throw BenchError("no answer from \(server)")
    }

    /// On the event loop: send a window of ChannelData packets; each echo sends another.
    func startFlood(payload: ByteBuffer, window: Int) {
        handler.startFlood(channel: channel, payload: payload, window: window)
    }
}

final class BenchClientHandler: ChannelInboundHandler, @unchecked Sendable {
    typealias InboundIn = AddressedEnvelope<ByteBuffer>

    let server: SocketAddress
    var pending: (TransactionID, EventLoopPromise<STUNMessage>)?
    var channelNumber: UInt16 = 0x4000
    var received = 0
    private var flooding = false
    private var packet = ByteBuffer()
    private weak var channel: (any Channel)?

    init(server: SocketAddress) { self.server = server }

    func startFlood(channel: any Channel, payload: ByteBuffer, window: Int) {
        self.channel = channel
        var frame = ByteBuffer()
        ChannelData(channel: channelNumber, data: payload).write(to: &frame, padded: false)
        packet = frame
        flooding = true
        for _ in 0..<window { channel.write(AddressedEnvelope(remoteAddress: server, data: packet), promise: nil) }
        channel.flush()
    }

    func stop() { flooding = false }

    /// Packets owed for echoes of this read batch: sent at its end, as segmentation-offload
    /// messages where the kernel has them, so that the load tool is not what limits the run.
    private var owed = 0

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        let envelope = unwrapInboundIn(data)
        guard let first = envelope.data.getInteger(at: envelope.data.readerIndex, as: UInt8.self) else { return }
        if first >= 64 && first < 128 {
            // A coalesced read (UDP_GRO) is several echoes of `segmentSize` bytes.
            let size = envelope.metadata?.segmentSize ?? envelope.data.readableBytes
            let count = max(1, (envelope.data.readableBytes + size - 1) / max(size, 1))
            received += count
            if flooding { owed += count }
        } else if let message = try? STUNMessage(datagram: envelope.data), let (id, promise) = pending,
                  message.transactionID == id {
            pending = nil
            promise.succeed(message)
        }
    }

    func channelReadComplete(context: ChannelHandlerContext) {
        while owed > 0 {
            let count = System.supportsUDPSegmentationOffload ? min(owed, 64) : 1
            owed -= count
            context.write(wrapOutboundOut(Self.segmented(packet, count: count, to: server)), promise: nil)
        }
        context.flush()
    }

    /// `count` copies of `packet` to `address`: one datagram, or one message the kernel cuts
    /// into `count` (UDP_SEGMENT).
    static func segmented(_ packet: ByteBuffer, count: Int, to address: SocketAddress) -> AddressedEnvelope<ByteBuffer> {
        guard count > 1 else { return AddressedEnvelope(remoteAddress: address, data: packet) }
        var joined = ByteBuffer()
        joined.reserveCapacity(packet.readableBytes * count)
        for _ in 0..<count { joined.writeImmutableBuffer(packet) }
        return AddressedEnvelope(remoteAddress: address, data: joined, metadata: .init(
            ecnState: .transportNotCapable, packetInfo: nil, segmentSize: packet.readableBytes))
    }
}

extension BenchClientHandler {
    typealias OutboundOut = AddressedEnvelope<ByteBuffer>
}

/// Echoes every datagram to where it came from: the benchmark's peer. A read batch's
/// echoes of one size to one address go back as segmentation-offload messages.
final class EchoHandler: ChannelInboundHandler, @unchecked Sendable {
    typealias InboundIn = AddressedEnvelope<ByteBuffer>
    typealias OutboundOut = AddressedEnvelope<ByteBuffer>
    private var run: (envelope: AddressedEnvelope<ByteBuffer>, count: Int)?

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        let envelope = unwrapInboundIn(data)
        if let size = envelope.metadata?.segmentSize, envelope.data.readableBytes > size {
            // A coalesced read (UDP_GRO): back as one message cut the same way.
            sendRun(context: context)
            context.write(wrapOutboundOut(AddressedEnvelope(remoteAddress: envelope.remoteAddress, data: envelope.data,
                metadata: .init(ecnState: .transportNotCapable, packetInfo: nil, segmentSize: size))), promise: nil)
            return
        }
        if let current = run, System.supportsUDPSegmentationOffload, current.count < 64,
           current.envelope.remoteAddress == envelope.remoteAddress, current.envelope.data == envelope.data {
            run = (current.envelope, current.count + 1)
            return
        }
        sendRun(context: context)
        run = (envelope, 1)
    }

    func channelReadComplete(context: ChannelHandlerContext) {
        sendRun(context: context)
        context.flush()
    }

    private func sendRun(context: ChannelHandlerContext) {
        guard let (envelope, count) = run else { return }
        run = nil
        context.write(wrapOutboundOut(BenchClientHandler.segmented(envelope.data, count: count, to: envelope.remoteAddress)),
                      promise: nil)
    }
}

struct BenchError: Error, CustomStringConvertible {
    var description: String
    init(_ description: String) { self.description = description }
}
