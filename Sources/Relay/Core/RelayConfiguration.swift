import Wire

/// RelayConfiguration is everything the TURN server is told at start-up.
public struct RelayConfiguration: Sendable {
    public struct Listener: Sendable, Hashable {
        public var host: String
        public var port: Int
        public init(host: String, port: Int) {
            self.host = host
            self.port = port
        }
    }

    /// UDP and TCP listeners (each address gets both), RFC 8656 §3.1.
    public var listeners: [Listener] = [Listener(host: "127.0.0.1", port: 3478)]
    /// TLS listeners; used only when `tlsCertificatePath` and `tlsKeyPath` are set.
    public var tlsListeners: [Listener] = [Listener(host: "127.0.0.1", port: 5349)]
    public var tlsCertificatePath: String?
    public var tlsKeyPath: String?

    /// Addresses relayed sockets bind to: at most one IPv4 and one IPv6.
    public var relayIPs: [IPAddress] = [.v4(0x7F00_0001)]
    public var relayPorts: ClosedRange<UInt16> = 49152...65535

    public var realm = "switchboard"
    /// Shared secret of the TURN REST scheme; nil turns REST credentials off.
    public var restSecret: String?
    public var software = "switchboard"

    /// Seconds. RFC 8656: allocations 600 by default, permissions 300, channels 600.
    public var defaultLifetime: UInt32 = 600
    public var maximumLifetime: UInt32 = 3600
    public var permissionLifetime: UInt32 = 300
    public var channelLifetime: UInt32 = 600
    public var nonceLifetime: Int64 = 600
    /// How long a reserved (EVEN-PORT R-bit) port is held for its RESERVATION-TOKEN.
    public var reservationLifetime: UInt32 = 30

    /// Allocations one username may hold at once (486 beyond); 0 means no limit.
    public var userQuota = 0
    /// Allocations the server holds at once (508 beyond).
    public var totalQuota = 50_000
    /// Bytes per second one allocation may relay in each direction; 0 means no cap.
    public var bandwidthLimit = 0

    public var filter = PeerAddressFilter()

    /// Failed authentications a source IP may make in a burst, and refilled per second.
    public var authFailureBurst = 20
    public var authFailuresPerSecond = 1.0

    /// On SIGTERM: no new allocations; existing ones may go on this long.
    public var drainSeconds = 10

    public init() {}

    public var relayIPv4: IPAddress? { relayIPs.first { $0.isIPv4 } }
    public var relayIPv6: IPAddress? { relayIPs.first { !$0.isIPv4 } }
}
