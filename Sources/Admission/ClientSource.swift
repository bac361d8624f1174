import Wire

/// ClientSource is what a per-client limit applies to (failed logins, WHEP offers, pending
/// viewers, connections). An IPv6 client is its /64, the usual allocation of one
/// subscriber, who could otherwise walk through 2^64 addresses; an IPv4-mapped IPv6 address
/// (how a dual-stack socket shows IPv4 clients) is the IPv4 one.
package enum ClientSource: Hashable, Sendable, CustomStringConvertible {
    case v4(UInt32)
    case v6Prefix(UInt64)
    /// No address (in-process tests) or one that does not parse: all such share one bucket.
    case unknown

    package init(_ address: String) {
        self.init(IPAddress(address))
    }

    package init(_ address: IPAddress?) {
        switch address {
        case .v4(let value): self = .v4(value)
        case .v6(let value) where value >> 32 == 0xFFFF: self = .v4(UInt32(truncatingIfNeeded: value))
        case .v6(let value): self = .v6Prefix(UInt64(truncatingIfNeeded: value >> 64))
        case nil: self = .unknown
        }
    }

    package var description: String {
        switch self {
        case .v4(let value): "\(IPAddress.v4(value))"
        case .v6Prefix(let prefix): "\(IPAddress.v6(UInt128(prefix) << 64))/64"
        case .unknown: "unknown"
        }
    }
}
