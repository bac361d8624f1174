import Wire

/// PeerAddressFilter decides which peer addresses a TURN client may reach (CreatePermission,
/// ChannelBind, Send). Deny by default: every address that leads back into this host or its
/// private networks, and every IPv6 encoding of an IPv4 address that does.
///
/// Rules, in order: an address in a `denied` range is refused; one in an `allowed` range is
/// accepted; an IPv6 address that embeds an IPv4 address (mapped, compatible, 6to4, Teredo,
/// NAT64, SIIT) is judged as that IPv4 address; otherwise the default deny list applies.
///
/// The server's own addresses (relay IPs, listeners) are public ones in production, so the
/// lists above let them through: on those, only the relay's own port range may be reached
/// (`permits(_: TransportAddress)`), which is what two relay-only peers of this server need.
/// Its HTTP, TURN, media and ingest ports, and anything else on them, are refused unless an
/// `allowed` range names the address.
package struct PeerAddressFilter: Sendable {
    package var allowed: [CIDR]
    package var denied: [CIDR]
    /// This server's addresses, and the ports on them a peer may be (its relayed sockets).
    package var own: Set<IPAddress> = []
    package var ownOpenPorts: ClosedRange<UInt16> = 49152...65535

    package init(allowed: [CIDR] = [], denied: [CIDR] = []) {
        self.allowed = allowed
        self.denied = denied
    }

    /// Whether a client may send to `peer` (ChannelBind, Send): `permits(peer.ip)`, and on
    /// one of this server's own addresses (or an IPv6 encoding of one) only a relay port.
    package func permits(_ peer: TransportAddress) -> Bool {
        guard permits(peer.ip) else { return false }
        if allowed.contains(where: { $0.contains(peer.ip) }) { return true }
        var addresses = [peer.ip]
        if case .v6(let value) = peer.ip, let embedded = Self.embeddedIPv4(value) {
            addresses += embedded.map(IPAddress.v4)
        }
        guard addresses.contains(where: own.contains) else { return true }
        return ownOpenPorts.contains(peer.port)
    }

    /// Unspecified, loopback, RFC 1918, CGNAT, link-local (with 169.254.169.254), IETF
    /// protocol assignments (192.0.0.192 and friends), multicast, reserved and broadcast.
    package static let defaultDeniedIPv4: [CIDR] = [
        "0.0.0.0/8", "10.0.0.0/8", "100.64.0.0/10", "127.0.0.0/8", "169.254.0.0/16", "172.16.0.0/12",
        "192.0.0.0/24", "192.168.0.0/16", "224.0.0.0/4", "240.0.0.0/4",
    ].map { CIDR($0)! }

    /// Unspecified, loopback, unique-local (fd00:ec2::254 among them), link-local,
    /// site-local and multicast.
    package static let defaultDeniedIPv6: [CIDR] = [
        "::/128", "::1/128", "fc00::/7", "fe80::/10", "fec0::/10", "ff00::/8",
    ].map { CIDR($0)! }

    package func permits(_ address: IPAddress) -> Bool {
        if denied.contains(where: { $0.contains(address) }) { return false }
        if allowed.contains(where: { $0.contains(address) }) { return true }
        switch address {
        case .v4:
            return !Self.defaultDeniedIPv4.contains { $0.contains(address) }
        case .v6(let value):
            if let embedded = Self.embeddedIPv4(value) {
                return embedded.allSatisfy { permits(.v4($0)) }
            }
            return !Self.defaultDeniedIPv6.contains { $0.contains(address) }
        }
    }

    /// The IPv4 addresses an IPv6 address stands for, if it is one of the encodings that
    /// carry one: IPv4-mapped ::ffff:0:0/96, IPv4-compatible ::/96, SIIT ::ffff:0:0:0/96,
    /// NAT64 64:ff9b::/96 and 64:ff9b:1::/48, 6to4 2002::/16 and Teredo 2001::/32 (server
    /// and, de-obfuscated, client).
    static func embeddedIPv4(_ value: UInt128) -> [UInt32]? {
        let low32 = UInt32(truncatingIfNeeded: value)
        let high96 = value >> 32
        switch true {
        case high96 == 0x0000_0000_0000_0000_0000_FFFF: return [low32]        // ::ffff:a.b.c.d
        case high96 == 0 && value > 1: return [low32]                         // ::a.b.c.d (not :: or ::1)
        case high96 == 0xFFFF_0000: return [low32]                            // ::ffff:0:a.b.c.d
        case high96 == 0x0064_FF9B_0000_0000_0000_0000: return [low32]        // 64:ff9b::/96
        case value >> 80 == 0x0064_FF9B_0001: return [low32]                  // 64:ff9b:1::/48
        case value >> 112 == 0x2002: return [UInt32(truncatingIfNeeded: value >> 80)]  // 2002:AABB:CCDD::
        case value >> 96 == 0x2001_0000:                                      // Teredo
            return [UInt32(truncatingIfNeeded: value >> 64), ~low32]
        default: return nil
        }
    }
}
