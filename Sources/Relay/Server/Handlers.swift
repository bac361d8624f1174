import Datagram
import Logging
import NIOCore
import Wire

/// UDPListenerHandler reads a TURN listening socket: STUN goes to the core, ChannelData is
/// relayed, anything else is dropped and counted.
final class UDPListenerHandler: ChannelInboundHandler {
    typealias InboundIn = AddressedEnvelope<ByteBuffer>

    private let engine: RelayEngine
    private let local: TransportAddress

    init(engine: RelayEngine, local: TransportAddress) {
        self.engine = engine
        self.local = local
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        let envelope = unwrapInboundIn(data)
        guard let client = TransportAddress(envelope.remoteAddress),
              let first = envelope.data.getInteger(at: envelope.data.readerIndex, as: UInt8.self) else { return }
        let fiveTuple = FiveTuple(client: client, server: local, transport: .udp)
        if first < 4 {
            engine.handleSTUN(envelope.data, from: fiveTuple)
        } else if first >= 64 && first < 128 {
            do {
                engine.handleChannelData(
                    try ChannelData(datagram: envelope.data, range: TURNCore.channelRange), from: fiveTuple)
            } catch {
                engine.core.counters.malformed += 1
            }
        } else {
            engine.core.counters.malformed += 1
        }
    }

    func channelReadComplete(context: ChannelHandlerContext) {
        engine.flushPending()
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        // ICMP errors (ECONNREFUSED and the like) surface here; a UDP listener carries on.
        engine.logger.trace("udp listener error", metadata: ["error": "\(error)"])
    }
}

/// RelaySocketHandler reads one relayed socket: datagrams from peers.
final class RelaySocketHandler: ChannelInboundHandler {
    typealias InboundIn = AddressedEnvelope<ByteBuffer>

    private let engine: RelayEngine
    private let binding: RelayBinding
    private let socket: UDPSocket

    init(engine: RelayEngine, binding: RelayBinding, socket: UDPSocket) {
        self.engine = engine
        self.binding = binding
        self.socket = socket
    }

    /// NIO closed the descriptor in this same call: no write may use it from now on.
    func channelInactive(context: ChannelHandlerContext) {
        socket.stopWriting()
        context.fireChannelInactive()
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        engine.handlePeerDatagram(unwrapInboundIn(data), binding: binding)
    }

    func channelReadComplete(context: ChannelHandlerContext) {
        engine.flushPending()
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        engine.logger.trace("relayed socket error", metadata: ["error": "\(error)"])
    }
}

/// StreamFrameDecoder cuts a TCP/TLS byte stream into STUN messages and ChannelData
/// frames (RFC 8656 §12.5). A byte that starts neither closes the connection.
struct StreamFrameDecoder: ByteToMessageDecoder {
    typealias InboundOut = ByteBuffer

    mutating func decode(context: ChannelHandlerContext, buffer: inout ByteBuffer) throws -> DecodingState {
        guard let frame = try StreamFrame.next(in: buffer, rfc5766Channels: true) else { return .needMoreData }
        context.fireChannelRead(wrapInboundOut(buffer.readSlice(length: frame.length)!))
        return .continue
    }

    mutating func decodeLast(context: ChannelHandlerContext, buffer: inout ByteBuffer, seenEOF: Bool) throws
        -> DecodingState
    {
        while try decode(context: context, buffer: &buffer) == .continue {}
        return .needMoreData
    }
}

/// StreamClientHandler serves one TCP or TLS client connection, admitted by the engine's
/// `ConnectionPolicy` before this handler was added.
final class StreamClientHandler: ChannelInboundHandler {
    typealias InboundIn = ByteBuffer

    private let engine: RelayEngine
    private let fiveTuple: FiveTuple
    private var released = false

    init(engine: RelayEngine, fiveTuple: FiveTuple) {
        self.engine = engine
        self.fiveTuple = fiveTuple
    }

    func channelActive(context: ChannelHandlerContext) {
        engine.connections[fiveTuple] = context.channel
        context.fireChannelActive()
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        var frame = unwrapInboundIn(data)
        guard let first = frame.getInteger(at: frame.readerIndex, as: UInt8.self) else { return }
        if PacketKind(firstByte: first) == .stun {
            engine.handleSTUN(frame, from: fiveTuple)
        } else if let channelData = try? ChannelData(parsingStream: &frame, range: TURNCore.channelRange) {
            engine.handleChannelData(channelData, from: fiveTuple)
        } else {
            engine.core.counters.malformed += 1
        }
    }

    func channelReadComplete(context: ChannelHandlerContext) {
        engine.flushPending()
    }

    func channelInactive(context: ChannelHandlerContext) {
        release()
        context.fireChannelInactive()
    }

    /// A channel that never became active (closed during registration) still gives back its
    /// place under the connection caps.
    func handlerRemoved(context: ChannelHandlerContext) {
        release()
    }

    private func release() {
        guard !released else { return }
        released = true
        engine.connectionClosed(fiveTuple)
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        engine.logger.debug("stream client error", metadata: ["error": "\(error)"])
        engine.core.counters.malformed += 1
        context.close(promise: nil)
    }
}

@available(*, unavailable)
extension UDPListenerHandler: Sendable {}
@available(*, unavailable)
extension RelaySocketHandler: Sendable {}
@available(*, unavailable)
extension StreamClientHandler: Sendable {}
