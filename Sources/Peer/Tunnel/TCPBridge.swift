import NIOCore

/// TCPBridge joins one TCP connection and one tunnel stream, on the TCP channel's event
/// loop (the same loop that owns the tunnel): bytes both ways, half-close both ways, and
/// flow control both ways — a TCP peer that reads slowly pauses the tunnel's delivery, a
/// tunnel whose queue is full stops reading the TCP socket.
public final class TCPBridge: ChannelInboundHandler, TunnelChannelDelegate {
    public typealias InboundIn = ByteBuffer
    public typealias OutboundOut = ByteBuffer

    /// SO_RCVBUF for every bridged TCP socket (Linux doubles the figure for its bookkeeping).
    /// It bounds what a stream can take in without asking: when a socket is hung up at both
    /// ends (EPOLLHUP), NIO reads all it holds at once, whatever `autoRead` says, and those
    /// bytes join the tunnel's queue. Without a set size, Linux lets a socket's buffer grow to
    /// `tcp_rmem`'s maximum (32 MiB on some machines) per stream.
    public static let socketReceiveBuffer = 256 * 1024

    private let tunnel: any TunnelChannel
    private var context: ChannelHandlerContext?
    private var tcpInputEnded = false
    private var tunnelInputEnded = false
    /// Every byte that came through the tunnel before its end marker is written to TCP.
    private var tcpOutputFlushed = false
    private var receivingPaused = false
    private var closed = false
    /// Called once, when both directions are done or either side failed; `reason` is a
    /// refusal the other side sent, if any.
    private let onFinish: (_ refusal: String?) -> Void

    public init(tunnel: any TunnelChannel, onFinish: @escaping (_ refusal: String?) -> Void = { _ in }) {
        self.tunnel = tunnel
        self.onFinish = onFinish
    }

    public func handlerAdded(context: ChannelHandlerContext) {
        self.context = context
        if context.channel.isActive { tunnel.delegate = self }
    }

    /// The tunnel delivers (what waited in it, then what comes) once the socket is connected.
    public func channelActive(context: ChannelHandlerContext) {
        if tunnel.delegate !== self { tunnel.delegate = self }
        context.fireChannelActive()
    }

    public func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        let bytes = unwrapInboundIn(data)
        if !tunnel.send(bytes) {
            // The tunnel's queue is full: stop reading until it drains.
            _ = context.channel.setOption(ChannelOptions.autoRead, value: false)
        }
    }

    public func userInboundEventTriggered(context: ChannelHandlerContext, event: Any) {
        if case ChannelEvent.inputClosed = event {
            tcpInputEnded = true
            tunnel.sendEnd()
            if tcpOutputFlushed { finish(refusal: nil) }
        } else {
            context.fireUserInboundEventTriggered(event)
        }
    }

    public func channelWritabilityChanged(context: ChannelHandlerContext) {
        updateReceiving()
        context.fireChannelWritabilityChanged()
    }

    public func channelInactive(context: ChannelHandlerContext) {
        finish(refusal: nil)
        context.fireChannelInactive()
    }

    public func errorCaught(context: ChannelHandlerContext, error: any Error) {
        context.close(promise: nil)
    }

    // MARK: TunnelChannelDelegate

    public func tunnel(received bytes: ByteBuffer) {
        guard let context, !closed else { return }
        context.writeAndFlush(wrapOutboundOut(bytes), promise: nil)
        updateReceiving()
    }

    public func tunnelEnded() {
        guard let context, !closed, !tunnelInputEnded else { return }
        tunnelInputEnded = true
        // Half-close once every byte before the end marker is written (writes complete in order).
        context.writeAndFlush(wrapOutboundOut(ByteBuffer())).whenComplete { [self] _ in
            tcpOutputFlushed = true
            if tcpInputEnded {
                finish(refusal: nil)
            } else {
                self.context?.close(mode: .output, promise: nil)
            }
        }
    }

    public func tunnel(refused reason: String) {
        finish(refusal: reason)
    }

    public func tunnelClosed() {
        // What came before the close is written out first: a close is no reason to lose it.
        guard let context, !closed else { return }
        context.writeAndFlush(wrapOutboundOut(ByteBuffer())).whenComplete { [self] _ in finish(refusal: nil) }
    }

    public func tunnelWritable() {
        guard let context, !closed else { return }
        _ = context.channel.setOption(ChannelOptions.autoRead, value: true)
    }

    // MARK: -

    private func updateReceiving() {
        guard let context, !closed else { return }
        let writable = context.channel.isWritable
        if !writable && !receivingPaused {
            receivingPaused = true
            tunnel.pauseReceiving()
        } else if writable && receivingPaused {
            receivingPaused = false
            tunnel.resumeReceiving()
        }
    }

    private func finish(refusal: String?) {
        guard !closed else { return }
        closed = true
        if receivingPaused { tunnel.resumeReceiving() }
        tunnel.delegate = nil
        tunnel.close()
        onFinish(refusal)  // before the TCP close, so whoever sees the close also sees the reason
        context?.close(promise: nil)
    }
}

@available(*, unavailable)
extension TCPBridge: Sendable {}
