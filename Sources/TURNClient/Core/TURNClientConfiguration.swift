import NIOCore
import Wire

/// TURNClientTransport is how the client reaches the TURN server (RFC 8656 §3.1). Over TCP and
/// TLS, requests are not retransmitted (the stream does that) and ChannelData is padded to 4.
package enum TURNClientTransport: String, Sendable, Hashable {
    case udp, tcp, tls

    package var isStream: Bool { self != .udp }
}

/// TURNClientConfiguration is what one allocation needs: credentials, timers and the bounds
/// on its tables. Times are milliseconds; defaults follow RFC 8489 §6.2.1 and RFC 8656.
package struct TURNClientConfiguration: Sendable {
    package var username: String
    package var password: String
    package var transport: TURNClientTransport

    /// LIFETIME asked for in Allocate and Refresh (seconds); nil lets the server choose.
    package var requestedLifetime: UInt32?
    /// REQUESTED-ADDRESS-FAMILY (RFC 8656 §7.1): nil asks for the default, IPv4.
    package var requestedFamily: AddressFamily?

    /// UDP retransmission: first RTO, doubling, `maxTransmissions` sends in all (Rc), then a
    /// last wait of `lastWaitFactor` × RTO (Rm) — 39.5 s with the defaults.
    package var initialRTO: Int64 = 500
    package var maxTransmissions = 7
    package var lastWaitFactor: Int64 = 16
    /// TCP/TLS: one send, and no answer within this long fails the transaction.
    package var streamTimeout: Int64 = 39_500

    /// The allocation is refreshed this long before it expires (or at half its lifetime
    /// when that is shorter than twice the margin).
    package var refreshMargin: Int64 = 60_000
    /// Permissions (300 s at the server) and channels (600 s) in use are refreshed this
    /// often; unused ones are left to expire.
    package var permissionRefreshInterval: Int64 = 240_000
    package var channelRefreshInterval: Int64 = 540_000
    /// Bind a channel to each peer once its permission is installed (ChannelData after the
    /// bind succeeds; Send indications before). Off: Send indications only.
    package var useChannels = true

    /// Distinct peer transport addresses (each may hold a channel) and peer IPs (each a
    /// permission) one allocation tracks; sends to more are dropped and counted.
    package var maxPeers = 64
    package var maxPermissions = 64
    /// Data waiting for a permission: per peer IP, and bytes in all.
    package var queuedPacketsPerPermission = 8
    package var queuedBytesLimit = 64 * 1024
    /// After CreatePermission fails, sends to that IP are dropped this long before it is tried again.
    package var permissionRetryDelay: Int64 = 30_000
    /// 438 Stale Nonce answers one request may get before it fails.
    package var maxStaleNonceRetries = 3
    /// Largest payload `send` carries (the ChannelData length is 16 bits; the STUN
    /// header and attributes need room too).
    package var maxPayload = 65_000

    package init(username: String, password: String, transport: TURNClientTransport = .udp) {
        self.username = username
        self.password = password
        self.transport = transport
    }
}

/// TURNClientError says why an allocation, a permission or a close did not go through.
package enum TURNClientError: Error, Sendable, Equatable, CustomStringConvertible {
    /// The server answered with an error response (its code and reason).
    case rejected(STUNErrorCode)
    /// No answer to a request of this method in time.
    case timeout(STUNMethod)
    /// A success response the client cannot use (no XOR-RELAYED-ADDRESS, ...).
    case badResponse(String)
    /// The allocation's lifetime ran out before a Refresh succeeded.
    case expired
    /// The TCP/TLS connection to the server closed.
    case connectionClosed
    /// The driver's transport failed (connect, TLS handshake, an unframeable stream).
    case transport(String)

    package var description: String {
        switch self {
        case .rejected(let code): "rejected: \(code)"
        case .timeout(let method): "\(method): no answer"
        case .badResponse(let reason): "bad response: \(reason)"
        case .expired: "allocation expired"
        case .connectionClosed: "connection to the server closed"
        case .transport(let reason): "transport: \(reason)"
        }
    }
}

/// TURNAllocation is what a successful Allocate gave: the relayed address peers send to, the
/// client's address as the server saw it, and the granted lifetime in seconds.
package struct TURNAllocation: Sendable, Hashable {
    package var relayed: TransportAddress
    package var mapped: TransportAddress?
    package var lifetime: UInt32

    package init(relayed: TransportAddress, mapped: TransportAddress?, lifetime: UInt32) {
        self.relayed = relayed
        self.mapped = mapped
        self.lifetime = lifetime
    }
}

/// TURNClientEvent is what the owner of an allocation learns.
package enum TURNClientEvent: Sendable, Equatable {
    case allocated(relayed: TransportAddress, mapped: TransportAddress?, lifetime: UInt32)
    /// CreatePermission for this peer IP failed; data queued for it was dropped.
    case permissionFailed(IPAddress, TURNClientError)
    /// A channel is bound to `peer`: data to it goes as ChannelData from now on.
    case channelBound(peer: TransportAddress, channel: UInt16)
    /// Application data from a peer, through a Data indication or ChannelData.
    case data(from: TransportAddress, ByteBuffer)
    /// The allocation is gone or never came: nothing more will happen.
    case failed(TURNClientError)
    /// `close()` finished: the server answered the Refresh with LIFETIME 0, or it timed out.
    case closed
}

/// TURNClientAction is one thing for the driver to do, in order.
package enum TURNClientAction: Sendable, Equatable {
    /// Bytes for the server: one datagram over UDP, or one frame for the stream.
    case send(ByteBuffer)
    case event(TURNClientEvent)
}
