import NIOCore
import Wire

/// ClientTransport is how a client reaches the relay.
package enum ClientTransport: String, Sendable, Hashable {
    case udp, tcp, tls
}

/// FiveTuple identifies a client's allocation (RFC 8656 §2): its address, the server
/// address it talks to, and the transport.
package struct FiveTuple: Sendable, Hashable, CustomStringConvertible {
    package var client: TransportAddress
    package var server: TransportAddress
    package var transport: ClientTransport

    package init(client: TransportAddress, server: TransportAddress, transport: ClientTransport) {
        self.client = client
        self.server = server
        self.transport = transport
    }

    package var description: String { "\(transport)://\(client)->\(server)" }
}

/// Allocation is one client's relay state (RFC 8656 §2.2): relayed addresses, lifetime,
/// permissions and channels, and its traffic counters. It lives on the relay's event loop.
final class Allocation {
    let id: Int
    let fiveTuple: FiveTuple
    let username: String
    let key: [UInt8]
    /// The relayed transport addresses: one, or an IPv4 and an IPv6 one (RFC 8656 §7.2).
    var relayed: [TransportAddress]
    let startedAtUnix: Int64
    var expiresAt: Int64  // monotonic milliseconds
    var expiresAtUnix: Int64

    /// Peer IP → expiry (monotonic ms). Permissions ignore the port (RFC 8656 §9).
    var permissions: [IPAddress: Int64] = [:]
    var channels: [UInt16: ChannelBinding] = [:]
    var channelByPeer: [TransportAddress: UInt16] = [:]

    /// The last Allocate/Refresh transaction and its response, for retransmissions.
    var lastTransaction: TransactionID
    var lastResponse: [UInt8]

    var packetsToPeer = 0
    var bytesToPeer = 0
    var packetsToClient = 0
    var bytesToClient = 0
    var dropped = 0

    /// Token buckets for the optional bandwidth cap, one per direction.
    var budgetToPeer: Double
    var budgetToClient: Double
    var budgetUpdated: Int64

    struct ChannelBinding {
        var peer: TransportAddress
        var expiresAt: Int64
    }

    init(id: Int, fiveTuple: FiveTuple, username: String, key: [UInt8], relayed: [TransportAddress],
         nowMillis: Int64, nowUnix: Int64, lifetime: UInt32, transaction: TransactionID, budget: Double) {
        self.id = id
        self.fiveTuple = fiveTuple
        self.username = username
        self.key = key
        self.relayed = relayed
        self.startedAtUnix = nowUnix
        self.expiresAt = nowMillis + Int64(lifetime) * 1000
        self.expiresAtUnix = nowUnix + Int64(lifetime)
        self.lastTransaction = transaction
        self.lastResponse = []
        self.budgetToPeer = budget
        self.budgetToClient = budget
        self.budgetUpdated = nowMillis
    }

    func hasPermission(for ip: IPAddress, nowMillis: Int64) -> Bool {
        guard let expiry = permissions[ip] else { return false }
        return expiry > nowMillis
    }

    /// The channel bound to `peer`, if it is still alive.
    func channel(for peer: TransportAddress, nowMillis: Int64) -> UInt16? {
        guard let number = channelByPeer[peer], let binding = channels[number], binding.expiresAt > nowMillis else {
            return nil
        }
        return number
    }

    /// The peer of a live channel.
    func peer(onChannel number: UInt16, nowMillis: Int64) -> TransportAddress? {
        guard let binding = channels[number], binding.expiresAt > nowMillis else { return nil }
        return binding.peer
    }

    /// Removes expired permissions and channels. A channel's number and peer stay reserved
    /// for 5 minutes after it expires (RFC 8656 §12), so they go only after that.
    func expireBindings(nowMillis: Int64) {
        permissions = permissions.filter { $0.value > nowMillis }
        for (number, binding) in channels where binding.expiresAt + 300_000 <= nowMillis {
            channels[number] = nil
            channelByPeer[binding.peer] = nil
        }
    }

    /// Charges `bytes` against the cap for one direction; false when over it (drop).
    func spend(_ bytes: Int, toPeer: Bool, limit: Int, nowMillis: Int64) -> Bool {
        guard limit > 0 else { return true }
        let elapsed = Double(max(0, nowMillis - budgetUpdated)) / 1000
        budgetUpdated = nowMillis
        let cap = Double(limit)
        budgetToPeer = min(cap, budgetToPeer + elapsed * cap)
        budgetToClient = min(cap, budgetToClient + elapsed * cap)
        if toPeer {
            guard budgetToPeer >= Double(bytes) else { return false }
            budgetToPeer -= Double(bytes)
        } else {
            guard budgetToClient >= Double(bytes) else { return false }
            budgetToClient -= Double(bytes)
        }
        return true
    }
}
