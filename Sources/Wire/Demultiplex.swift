/// PacketKind is what the first byte of a packet says it is (RFC 7983 §7, with TURN
/// ChannelData from RFC 7983 §5 / RFC 8656): how one UDP port carries STUN, DTLS, RTP/RTCP
/// and ChannelData at once.
public enum PacketKind: Sendable, Equatable {
    case stun          // 0–3
    case zrtp          // 16–19
    case dtls          // 20–63
    case channelData   // 64–79
    case rtpOrRTCP     // 128–191
    case unknown

    public init(firstByte: UInt8) {
        switch firstByte {
        case 0...3: self = .stun
        case 16...19: self = .zrtp
        case 20...63: self = .dtls
        case 64...79: self = .channelData
        case 128...191: self = .rtpOrRTCP
        default: self = .unknown
        }
    }
}

/// StreamFrame finds message boundaries in a TCP/TLS byte stream that carries STUN
/// messages and ChannelData (RFC 8656 §12.5): each frame's length is in its header.
public enum StreamFrame {
    public enum Kind: Sendable, Equatable {
        case stun
        case channelData
    }

    public enum FramingError: Error, Sendable, Equatable {
        /// The stream is at a byte that starts neither STUN nor ChannelData: it cannot be
        /// resynchronised, so the connection should be closed.
        case unframeable(firstByte: UInt8)
    }
}

import NIOCore

extension StreamFrame {
    /// The kind and length of the complete frame at the front of `buffer`, or nil while
    /// more bytes are needed. `rfc5766Channels` also accepts ChannelData first bytes 80–127.
    public static func next(in buffer: ByteBuffer, rfc5766Channels: Bool = false) throws(FramingError)
        -> (kind: Kind, length: Int)?
    {
        guard let first = buffer.getInteger(at: buffer.readerIndex, as: UInt8.self) else { return nil }
        let kind = PacketKind(firstByte: first)
        if kind == .stun {
            guard let length = STUNMessage.frameLength(buffer) else { return nil }
            return buffer.readableBytes >= length ? (.stun, length) : nil
        }
        if kind == .channelData || (rfc5766Channels && (64...127).contains(first)) {
            guard let length = ChannelData.streamFrameLength(buffer) else { return nil }
            return buffer.readableBytes >= length ? (.channelData, length) : nil
        }
        throw .unframeable(firstByte: first)
    }
}
