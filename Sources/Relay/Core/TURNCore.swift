import NIOCore
import Wire

/// RelayTime is "now" for the relay's decisions: a monotonic clock for lifetimes and the
/// wall clock for nonces, REST credential expiry and usage rows. Tests make their own.
package struct RelayTime: Sendable {
    package var millis: Int64
    package var unix: Int64

    package init(millis: Int64, unix: Int64) {
        self.millis = millis
        self.unix = unix
    }
}

/// AllocationPlan is a validated, authenticated Allocate request waiting for its relayed
/// socket(s) to be bound by the server.
struct AllocationPlan {
    var request: STUNMessage
    var fiveTuple: FiveTuple
    var username: String
    var key: [UInt8]
    /// One family, or IPv4 then IPv6 for a dual allocation.
    var families: [AddressFamily]
    /// ADDITIONAL-ADDRESS-FAMILY asked for IPv6 but this server has no IPv6 relay address:
    /// the allocation goes ahead with IPv4 and says so (RFC 8656 §7.2, ADDRESS-ERROR-CODE).
    var additionalFamilyRefused: Bool
    var evenPort: Bool
    var reserveNext: Bool
    var reservationToken: UInt64?
    var lifetime: UInt32
}

/// TURNCore is the relay's decision-making: authentication, allocations, permissions and
/// channels (RFC 8656). It does no I/O; the server feeds it messages with a time and carries
/// out what it returns. It belongs to the one event loop that owns the relay's sockets.
final class TURNCore {
    enum Outcome {
        case none
        case respond([UInt8])
        case allocate(AllocationPlan)
        case sendToPeer(Allocation, relayIndex: Int, peer: TransportAddress, payload: [UInt8])
        /// Answer, then release what the allocation held: it has already left the core.
        case respondAndEnd([UInt8], Allocation, EndReason)
    }

    /// Why an allocation ended, as written to `relay_usage.end_reason`.
    enum EndReason: String {
        case expired
        case refreshZero = "refresh-0"
        case disconnected
        case shutdown
    }

    struct Counters {
        var authChallenges = 0
        var authFailures = 0
        var authThrottled = 0
        var filterDrops = 0
        /// ChannelBind / Send to one of the server's own addresses outside its relay ports.
        var ownAddressDrops = 0
        var malformed = 0
        var noPermissionDrops = 0
        var bandwidthDrops = 0
        var packetsToPeer = 0
        var bytesToPeer = 0
        var packetsToClient = 0
        var bytesToClient = 0
        /// Datagrams the kernel refused (firewall, no route, full send buffer): dropped, counted.
        var sendErrors = 0
        /// Messages whose FINGERPRINT does not match (RFC 8489 §14.7): dropped unanswered.
        var badFingerprints = 0
    }

    let configuration: RelayConfiguration
    let nonces: NonceIssuer
    /// Static users' long-term keys, refreshed from the Store off the packet path.
    var staticUsers: [String: [UInt8]] = [:]
    var acceptingAllocations = true
    var counters = Counters()
    /// Set when the message last handled was a request that passed MESSAGE-INTEGRITY: a
    /// TCP/TLS connection that sent one has proved it is a client (`ConnectionPolicy`).
    private(set) var lastAuthenticated: FiveTuple?

    var allocations: [FiveTuple: Allocation] = [:]
    /// Allocations whose lifetime changed since the server last looked (for the live table).
    var refreshed: Set<Int> = []
    var allocationsPerUser: [String: Int] = [:]
    var pending: [FiveTuple: TransactionID] = [:]
    var limiter: RateLimiter
    var nextID = 1

    init(configuration: RelayConfiguration, nonces: NonceIssuer? = nil) {
        self.configuration = configuration
        self.nonces = nonces ?? NonceIssuer(lifetime: configuration.nonceLifetime)
        self.limiter = RateLimiter(burst: configuration.authFailureBurst,
                                   perSecond: configuration.authFailuresPerSecond)
    }

    var allocationCount: Int { allocations.count }

    func allocation(for fiveTuple: FiveTuple) -> Allocation? { allocations[fiveTuple] }

    // MARK: - STUN messages from clients

    func handle(_ message: STUNMessage, from fiveTuple: FiveTuple, time: RelayTime) -> Outcome {
        lastAuthenticated = nil
        // A FINGERPRINT that does not match means the bytes are not STUN or were damaged:
        // RFC 8489 §14.7 has them dropped as if never received, so no answer either.
        guard message.fingerprintIsValid != false else {
            counters.badFingerprints += 1
            return .none
        }
        switch message.type.messageClass {
        case .request:
            return handleRequest(message, from: fiveTuple, time: time)
        case .indication:
            if message.type.method == .send { return handleSend(message, from: fiveTuple, time: time) }
            return .none
        case .successResponse, .errorResponse:
            return .none
        }
    }

    private func handleRequest(_ request: STUNMessage, from fiveTuple: FiveTuple, time: RelayTime) -> Outcome {
        let method = request.type.method
        if method == .binding {
            return .respond(success(request, [
                .xorAddress(.xorMappedAddress, fiveTuple.client, transactionID: request.transactionID),
            ], key: nil))
        }
        guard [.allocate, .refresh, .createPermission, .channelBind].contains(method) else {
            return .respond(error(request, .badRequest, key: nil))
        }

        let credentials: (username: String, key: [UInt8])
        switch authenticate(request, from: fiveTuple, time: time) {
        case .accepted(let username, let key): credentials = (username, key)
        case .rejected(let response): return .respond(response)
        }

        let unknown = request.unknownComprehensionRequired(known: Self.knownAttributes)
        if !unknown.isEmpty {
            return .respond(error(request, .unknownAttribute, [.unknownAttributes(unknown)], key: credentials.key))
        }

        do {
            switch method {
            case .allocate:
                return try allocate(request, from: fiveTuple, credentials: credentials, time: time)
            case .refresh:
                return try refresh(request, from: fiveTuple, credentials: credentials, time: time)
            case .createPermission:
                return try createPermission(request, from: fiveTuple, credentials: credentials, time: time)
            default:
                return try channelBind(request, from: fiveTuple, credentials: credentials, time: time)
            }
        } catch let failure as Failure {
            return .respond(error(request, failure.code, failure.attributes, key: credentials.key))
        } catch {
            counters.malformed += 1
            return .respond(self.error(request, STUNErrorCode(400, "Bad Request: \(error)"), key: credentials.key))
        }
    }

    struct Failure: Error {
        var code: STUNErrorCode
        var attributes: [STUNAttribute] = []
        init(_ code: STUNErrorCode, _ attributes: [STUNAttribute] = []) {
            self.code = code
            self.attributes = attributes
        }
    }

    // MARK: Authentication (RFC 8489 §9.2, long-term credentials)

    private enum AuthResult {
        case accepted(username: String, key: [UInt8])
        case rejected([UInt8])
    }

    private func authenticate(_ request: STUNMessage, from fiveTuple: FiveTuple, time: RelayTime) -> AuthResult {
        let clientIP = fiveTuple.client.ip
        guard request.hasIntegrity || request.hasIntegritySHA256 else {
            counters.authChallenges += 1
            return .rejected(challenge(request, .unauthorized, clientIP: clientIP, time: time))
        }
        guard limiter.allows(clientIP, nowMillis: time.millis) else {
            // Too many failures from this source: refuse without checking the password, so
            // guessing learns nothing, but answer (as 401) so honest clients fail fast.
            counters.authThrottled += 1
            return .rejected(challenge(request, .unauthorized, clientIP: clientIP, time: time))
        }
        guard let username = try? request.text(.username), let realm = try? request.text(.realm),
              let nonce = try? request.text(.nonce) else {
            counters.malformed += 1
            return .rejected(error(request, .badRequest, key: nil))
        }
        switch nonces.check(nonce, for: clientIP, now: time.unix) {
        case .valid: break
        case .stale, .invalid:
            return .rejected(challenge(request, .staleNonce, clientIP: clientIP, time: time))
        }
        guard realm == configuration.realm, let key = longTermKey(for: username, time: time) else {
            return failAuthentication(request, clientIP: clientIP, time: time)
        }
        let valid = request.hasIntegrity
            ? request.verifyIntegrity(key: key)
            : request.verifyIntegritySHA256(key: key)
        guard valid else { return failAuthentication(request, clientIP: clientIP, time: time) }
        lastAuthenticated = fiveTuple
        return .accepted(username: username, key: key)
    }

    private func failAuthentication(_ request: STUNMessage, clientIP: IPAddress, time: RelayTime) -> AuthResult {
        counters.authFailures += 1
        limiter.recordFailure(clientIP, nowMillis: time.millis)
        return .rejected(challenge(request, .unauthorized, clientIP: clientIP, time: time))
    }

    /// The long-term key for `username`: a TURN REST username (`expiry:name`, not yet
    /// expired) when a secret is set, else a static user.
    func longTermKey(for username: String, time: RelayTime) -> [UInt8]? {
        if let secret = configuration.restSecret, let expiry = TURNRESTCredential.expiry(of: username) {
            guard expiry > time.unix else { return nil }
            let password = TURNRESTCredential.password(secret: secret, username: username)
            return STUNCredentials.longTermKey(username: username, realm: configuration.realm, password: password)
        }
        return staticUsers[username]
    }

    private func challenge(_ request: STUNMessage, _ code: STUNErrorCode, clientIP: IPAddress, time: RelayTime) -> [UInt8] {
        error(request, code, [
            .text(.realm, configuration.realm),
            .text(.nonce, nonces.make(for: clientIP, now: time.unix)),
        ], key: nil)
    }

    // MARK: - Responses

    /// RFC 8656 narrowed channels to 0x4000–0x4FFF; RFC 5766 clients (coturn's uclient
    /// among them) still pick up to 0x7FFF, and the TURN port carries nothing those collide with.
    static let channelRange = ChannelData.rfc5766ChannelRange

    static let knownAttributes: Set<STUNAttributeType> = [
        .mappedAddress, .username, .messageIntegrity, .errorCode, .unknownAttributes, .realm, .nonce,
        .messageIntegritySHA256, .passwordAlgorithm, .userhash, .xorMappedAddress, .channelNumber, .lifetime,
        .xorPeerAddress, .data, .xorRelayedAddress, .requestedAddressFamily, .evenPort, .requestedTransport,
        .dontFragment, .reservationToken, .priority, .useCandidate,
    ]

    func success(_ request: STUNMessage, _ attributes: [STUNAttribute], key: [UInt8]?) -> [UInt8] {
        response(request, .successResponse, attributes, key: key)
    }

    func error(_ request: STUNMessage, _ code: STUNErrorCode, _ attributes: [STUNAttribute] = [], key: [UInt8]?) -> [UInt8] {
        response(request, .errorResponse, [.errorCode(code)] + attributes, key: key)
    }

    private func response(_ request: STUNMessage, _ messageClass: STUNClass, _ attributes: [STUNAttribute],
                          key: [UInt8]?) -> [UInt8] {
        let message = STUNMessage(request.type.method, messageClass, transactionID: request.transactionID,
                                  attributes: attributes + [.text(.software, configuration.software)])
        return message.encoded(integrityKey: key, fingerprint: request.contains(.fingerprint))
    }

    /// A Data indication carrying `payload` from `peer` (RFC 8656 §10.3).
    static func dataIndication(from peer: TransportAddress, payload: ByteBuffer) -> [UInt8] {
        let id = TransactionID.random()
        return STUNMessage(.data, .indication, transactionID: id, attributes: [
            .xorAddress(.xorPeerAddress, peer, transactionID: id),
            STUNAttribute(type: .data, value: Array(payload.readableBytesView)),
        ]).encoded()
    }
}
