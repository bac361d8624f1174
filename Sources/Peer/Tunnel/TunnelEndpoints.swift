import Logging
import NIOCore
import NIOPosix

/// TunnelListener is the connecting side's local TCP listener: each accepted connection
/// becomes a new tunnel stream (opened by `open`) joined to it by a TCPBridge.
public final class TunnelListener: Sendable {
    public let channel: any Channel

    /// Listens on `host:port` on `eventLoop` (the loop that owns the peer connection).
    /// `open` runs on that loop for each accepted connection and returns its tunnel stream,
    /// or nil to refuse it (the connection is closed at once).
    public static func bind(host: String, port: Int, on eventLoop: any EventLoop, logger: Logger,
                            refused: @escaping @Sendable (_ reason: String) -> Void = { _ in },
                            open: @escaping @Sendable (_ remote: SocketAddress?) -> (any TunnelChannel)?)
        async throws -> TunnelListener
    {
        let channel = try await ServerBootstrap(group: eventLoop)
            .serverChannelOption(.socketOption(.so_reuseaddr), value: 1)
            .serverChannelOption(.backlog, value: 256)
            // Accepted sockets inherit it (it must be set before the handshake to take effect).
            .serverChannelOption(.socketOption(.so_rcvbuf), value: TCPBridge.socketReceiveBuffer)
            .childChannelOption(.allowRemoteHalfClosure, value: true)
            .childChannelOption(.socketOption(.tcp_nodelay), value: 1)
            // A full tunnel stops reading after the current read loop: keep that loop short.
            .childChannelOption(.maxMessagesPerRead, value: 4)
            .childChannelOption(.writeBufferWaterMark, value: .init(low: 128 * 1024, high: 512 * 1024))
            .childChannelInitializer { child in
                child.eventLoop.makeCompletedFuture {
                    guard let tunnel = open(child.remoteAddress) else {
                        child.close(promise: nil)
                        return
                    }
                    let remote = "\(child.remoteAddress.map { "\($0)" } ?? "?")"
                    try child.pipeline.syncOperations.addHandler(TCPBridge(tunnel: tunnel) { refusal in
                        if let refusal {
                            refused(refusal)
                            logger.error("stream refused by the peer", metadata: ["client": "\(remote)", "reason": "\(refusal)"])
                        }
                    })
                }
            }
            .bind(host: host, port: port).get()
        return TunnelListener(channel: channel)
    }

    init(channel: any Channel) { self.channel = channel }

    public var localAddress: SocketAddress? { channel.localAddress }

    public func close() async {
        try? await channel.close()
    }
}

/// ServiceDialer is the exposing side: each incoming tunnel stream names a service; a known
/// one is connected to its local address and joined by a TCPBridge, an unknown one (or one
/// whose service refuses the connection) is refused with a reason the caller sees.
public struct ServiceDialer: Sendable {
    /// Service name → where it listens.
    public var services: [String: (host: String, port: Int)]
    public var connectTimeout: TimeAmount = .seconds(5)

    public init(services: [String: (host: String, port: Int)]) {
        self.services = services
    }

    /// Call on the tunnel's event loop.
    public func accept(_ tunnel: any TunnelChannel, service: String, on eventLoop: any EventLoop, logger: Logger) {
        guard let target = services[service] else {
            logger.info("stream for an unknown service refused", metadata: ["service": "\(service)"])
            tunnel.refuse("unknown service \(service)")
            return
        }
        let box = NIOLoopBound(tunnel, eventLoop: eventLoop)
        ClientBootstrap(group: eventLoop)
            .connectTimeout(connectTimeout)
            .channelOption(.allowRemoteHalfClosure, value: true)
            .channelOption(.socketOption(.tcp_nodelay), value: 1)
            .channelOption(.maxMessagesPerRead, value: 4)
            .channelOption(.socketOption(.so_rcvbuf), value: TCPBridge.socketReceiveBuffer)
            .channelOption(.writeBufferWaterMark, value: .init(low: 128 * 1024, high: 512 * 1024))
            .channelInitializer { channel in
                channel.eventLoop.makeCompletedFuture {
                    try channel.pipeline.syncOperations.addHandler(TCPBridge(tunnel: box.value))
                }
            }
            .connect(host: target.host, port: target.port)
            .whenFailure { error in
                logger.info("service unreachable", metadata: ["service": "\(service)", "error": "\(error)"])
                box.value.refuse("service \(service) unreachable: \(error)")
            }
    }
}
