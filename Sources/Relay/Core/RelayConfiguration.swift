import Wire

/// RelayConfiguration is everything the TURN server is told at start-up.
package struct RelayConfiguration: Sendable {
    package struct Listener: Sendable, Hashable {
        package var host: String
        package var port: Int
        package init(host: String, port: Int) {
            self.host = host
            self.port = port
        }
    }

    /// UDP and TCP listeners (each address gets both), RFC 8656 §3.1.
    package var listeners: [Listener] = [Listener(host: "127.0.0.1", port: 3478)]
    /// TLS listeners; used only when `tlsCertificatePath` and `tlsKeyPath` are set.
    package var tlsListeners: [Listener] = [Listener(host: "127.0.0.1", port: 5349)]
    package var tlsCertificatePath: String?
    package var tlsKeyPath: String?

    /// Addresses relayed sockets bind to: at most one IPv4 and one IPv6.
    package var relayIPs: [IPAddress] = [.v4(0x7F00_0001)]
    package var relayPorts: ClosedRange<UInt16> = 49152...65535

    package var realm = "switchboard"
    /// Shared secret of the TURN REST scheme; nil turns REST credentials off.
    package var restSecret: String?
    package var software = "switchboard"

    /// Seconds. RFC 8656: allocations 600 by default, permissions 300, channels 600.
    package var defaultLifetime: UInt32 = 600
    package var maximumLifetime: UInt32 = 3600
    package var permissionLifetime: UInt32 = 300
    package var channelLifetime: UInt32 = 600
    package var nonceLifetime: Int64 = 600
    /// How long a reserved (EVEN-PORT R-bit) port is held for its RESERVATION-TOKEN.
    package var reservationLifetime: UInt32 = 30

    /// Allocations one username may hold at once (486 beyond); 0 means no limit.
    package var userQuota = 0
    /// Allocations the server holds at once (508 beyond).
    package var totalQuota = 50_000
    /// Bytes per second one allocation may relay in each direction; 0 means no cap.
    package var bandwidthLimit = 0

    package var filter = PeerAddressFilter()

    /// Failed authentications a source IP may make in a burst, and refilled per second.
    package var authFailureBurst = 20
    package var authFailuresPerSecond = 1.0

    /// TCP/TLS connections: milliseconds from accept to the first request that passes
    /// MESSAGE-INTEGRITY (a TLS handshake included), and that an authenticated connection
    /// may go without an allocation; then it is closed (see `ConnectionPolicy`).
    package var connectionAuthTimeout: Int64 = 5_000
    package var connectionIdleTimeout: Int64 = 30_000
    /// TCP/TLS connections per source (IPv4 address or IPv6 /64) and in all, refused at accept
    /// beyond; 0 means no limit.
    package var connectionsPerSource = 128
    package var connectionsTotal = 10_000

    /// On SIGTERM: no new allocations; existing ones may go on this long.
    package var drainSeconds = 10

    package init() {}

    package var relayIPv4: IPAddress? { relayIPs.first { $0.isIPv4 } }
    package var relayIPv6: IPAddress? { relayIPs.first { !$0.isIPv4 } }
}
