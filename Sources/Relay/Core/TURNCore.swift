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

    private(set) var allocations: [FiveTuple: Allocation] = [:]
    private var allocationsPerUser: [String: Int] = [:]
    private var pending: [FiveTuple: TransactionID] = [:]
    private var limiter: RateLimiter
    private var nextID = 1

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

    private struct Failure: Error {
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

    // MARK: Allocate (RFC 8656 §7)

    private func allocate(
        _ request: STUNMessage, from fiveTuple: FiveTuple, credentials: (username: String, key: [UInt8]),
        time: RelayTime
    ) throws -> Outcome {
        if let existing = allocations[fiveTuple] {
            if existing.lastTransaction == request.transactionID && !existing.lastResponse.isEmpty {
                return .respond(existing.lastResponse)  // a retransmission
            }
            throw Failure(.allocationMismatch)
        }
        if let waiting = pending[fiveTuple] {
            if waiting == request.transactionID { return .none }  // still binding; the retry gets the answer
            throw Failure(.allocationMismatch)
        }
        guard acceptingAllocations else { throw Failure(.insufficientCapacity) }

        guard let transport = try request.requestedTransport() else {
            throw Failure(STUNErrorCode(400, "Bad Request: REQUESTED-TRANSPORT missing"))
        }
        guard transport == TransportProtocolNumber.udp.rawValue else { throw Failure(.unsupportedTransportProtocol) }

        let evenPort = try request.evenPort()
        let token = try request.reservationToken()
        let requestedFamily = try request.addressFamily(.requestedAddressFamily)
        let additionalFamily = try request.addressFamily(.additionalAddressFamily)
        if token != nil && (evenPort != nil || requestedFamily != nil || additionalFamily != nil) {
            throw Failure(STUNErrorCode(400, "Bad Request: RESERVATION-TOKEN with EVEN-PORT or an address family"))
        }
        if requestedFamily != nil && additionalFamily != nil {
            throw Failure(STUNErrorCode(400, "Bad Request: REQUESTED- and ADDITIONAL-ADDRESS-FAMILY together"))
        }
        if let additionalFamily, additionalFamily != .ipv6 {
            throw Failure(STUNErrorCode(400, "Bad Request: ADDITIONAL-ADDRESS-FAMILY must be IPv6"))
        }

        // Without REQUESTED-ADDRESS-FAMILY the RFC's default is IPv4; a server that relays on
        // IPv6 only gives IPv6 rather than refusing (coturn's uclient -x relies on this).
        let defaultFamily: AddressFamily = configuration.relayIPv4 != nil ? .ipv4 : .ipv6
        var families: [AddressFamily] = [requestedFamily ?? defaultFamily]
        var additionalRefused = false
        if additionalFamily == .ipv6 {
            if configuration.relayIPv6 != nil { families.append(.ipv6) } else { additionalRefused = true }
        }
        for family in families {
            let available = family == .ipv4 ? configuration.relayIPv4 : configuration.relayIPv6
            if available == nil { throw Failure(.addressFamilyNotSupported) }
        }

        if configuration.userQuota > 0, allocationsPerUser[credentials.username, default: 0] >= configuration.userQuota {
            throw Failure(.allocationQuotaReached)
        }
        if allocations.count + pending.count >= configuration.totalQuota { throw Failure(.insufficientCapacity) }

        pending[fiveTuple] = request.transactionID
        return .allocate(AllocationPlan(
            request: request, fiveTuple: fiveTuple, username: credentials.username, key: credentials.key,
            families: families, additionalFamilyRefused: additionalRefused, evenPort: evenPort != nil,
            reserveNext: evenPort == true, reservationToken: token,
            lifetime: try grantedLifetime(request)))
    }

    private func grantedLifetime(_ request: STUNMessage) throws -> UInt32 {
        guard let requested = try request.lifetime() else { return configuration.defaultLifetime }
        return min(max(requested, configuration.defaultLifetime), configuration.maximumLifetime)
    }

    /// The server bound the relayed socket(s): the allocation exists from now on.
    func completeAllocation(_ plan: AllocationPlan, relayed: [TransportAddress], reservationToken: UInt64?,
                            time: RelayTime) -> (Allocation, [UInt8]) {
        pending[plan.fiveTuple] = nil
        let allocation = Allocation(
            id: nextID, fiveTuple: plan.fiveTuple, username: plan.username, key: plan.key, relayed: relayed,
            nowMillis: time.millis, nowUnix: time.unix, lifetime: plan.lifetime,
            transaction: plan.request.transactionID, budget: Double(configuration.bandwidthLimit))
        nextID += 1
        var attributes: [STUNAttribute] = relayed.map {
            .xorAddress(.xorRelayedAddress, $0, transactionID: plan.request.transactionID)
        }
        attributes.append(.lifetime(plan.lifetime))
        if let reservationToken { attributes.append(.uint64(.reservationToken, reservationToken)) }
        if plan.additionalFamilyRefused {
            attributes.append(.addressErrorCode(family: .ipv6, .addressFamilyNotSupported))
        }
        attributes.append(.xorAddress(.xorMappedAddress, plan.fiveTuple.client, transactionID: plan.request.transactionID))
        let response = success(plan.request, attributes, key: plan.key)
        allocation.lastResponse = response
        allocations[plan.fiveTuple] = allocation
        allocationsPerUser[plan.username, default: 0] += 1
        return (allocation, response)
    }

    /// The server could not bind a relayed socket.
    func failAllocation(_ plan: AllocationPlan, _ code: STUNErrorCode) -> [UInt8] {
        pending[plan.fiveTuple] = nil
        return error(plan.request, code, key: plan.key)
    }

    // MARK: Refresh (RFC 8656 §8)

    private func refresh(
        _ request: STUNMessage, from fiveTuple: FiveTuple, credentials: (username: String, key: [UInt8]),
        time: RelayTime
    ) throws -> Outcome {
        guard let allocation = allocations[fiveTuple] else { throw Failure(.allocationMismatch) }
        guard allocation.username == credentials.username else { throw Failure(.wrongCredentials) }
        if let family = try request.addressFamily(.requestedAddressFamily),
           !allocation.relayed.contains(where: { AddressFamily(of: $0.ip) == family }) {
            throw Failure(.peerAddressFamilyMismatch)
        }
        let requested = try request.lifetime()
        if requested == 0 {
            // Ended now (RFC 8656 §7.3): nothing more is relayed, and an Allocate from the same
            // 5-tuple starts a new one. A retransmission finds none and gets 437, which the
            // RFC tells the client to take as success.
            let response = success(request, [.lifetime(0)], key: credentials.key)
            remove(fiveTuple)
            return .respondAndEnd(response, allocation, .refreshZero)
        }
        let lifetime = requested.map { min(max($0, configuration.defaultLifetime), configuration.maximumLifetime) }
            ?? configuration.defaultLifetime
        allocation.expiresAt = time.millis + Int64(lifetime) * 1000
        allocation.expiresAtUnix = time.unix + Int64(lifetime)
        refreshed.insert(allocation.id)
        return .respond(success(request, [.lifetime(lifetime)], key: credentials.key))
    }

    /// Allocations whose lifetime changed since the server last looked (for the live table).
    var refreshed: Set<Int> = []

    // MARK: CreatePermission (RFC 8656 §10) and ChannelBind (§11)

    private func owned(_ fiveTuple: FiveTuple, _ credentials: (username: String, key: [UInt8])) throws -> Allocation {
        guard let allocation = allocations[fiveTuple] else { throw Failure(.allocationMismatch) }
        guard allocation.username == credentials.username else { throw Failure(.wrongCredentials) }
        return allocation
    }

    private func checkPeer(_ peer: TransportAddress, for allocation: Allocation) throws {
        guard allocation.relayed.contains(where: { $0.ip.isIPv4 == peer.ip.isIPv4 }) else {
            throw Failure(.peerAddressFamilyMismatch)
        }
        guard configuration.filter.permits(peer.ip) else {
            counters.filterDrops += 1
            throw Failure(STUNErrorCode(403, "Forbidden IP"))
        }
    }

    private func createPermission(
        _ request: STUNMessage, from fiveTuple: FiveTuple, credentials: (username: String, key: [UInt8]),
        time: RelayTime
    ) throws -> Outcome {
        let allocation = try owned(fiveTuple, credentials)
        let peers = try request.xorAddresses(.xorPeerAddress)
        guard !peers.isEmpty else { throw Failure(STUNErrorCode(400, "Bad Request: XOR-PEER-ADDRESS missing")) }
        for peer in peers { try checkPeer(peer, for: allocation) }  // all or nothing
        let expiry = time.millis + Int64(configuration.permissionLifetime) * 1000
        for peer in peers { allocation.permissions[peer.ip] = expiry }
        return .respond(success(request, [], key: credentials.key))
    }

    private func channelBind(
        _ request: STUNMessage, from fiveTuple: FiveTuple, credentials: (username: String, key: [UInt8]),
        time: RelayTime
    ) throws -> Outcome {
        let allocation = try owned(fiveTuple, credentials)
        guard let number = try request.channelNumber(), Self.channelRange.contains(number) else {
            throw Failure(STUNErrorCode(400, "Bad Request: CHANNEL-NUMBER missing or outside 0x4000-0x7FFF"))
        }
        guard let peer = try request.xorAddress(.xorPeerAddress) else {
            throw Failure(STUNErrorCode(400, "Bad Request: XOR-PEER-ADDRESS missing"))
        }
        try checkPeer(peer, for: allocation)
        guard configuration.filter.permits(peer) else {
            counters.ownAddressDrops += 1
            throw Failure(STUNErrorCode(403, "Forbidden IP"))
        }
        // A number is bound to one peer and a peer to one number, also while the binding
        // waits out its 5 minutes after expiring (RFC 8656 §11.2).
        if let existing = allocation.channels[number], existing.peer != peer {
            throw Failure(STUNErrorCode(400, "Bad Request: channel bound to another peer"))
        }
        if let other = allocation.channelByPeer[peer], other != number {
            throw Failure(STUNErrorCode(400, "Bad Request: peer bound to another channel"))
        }
        let now = time.millis
        allocation.channels[number] = .init(peer: peer, expiresAt: now + Int64(configuration.channelLifetime) * 1000)
        allocation.channelByPeer[peer] = number
        allocation.permissions[peer.ip] = now + Int64(configuration.permissionLifetime) * 1000
        return .respond(success(request, [], key: credentials.key))
    }

    // MARK: Send indication (RFC 8656 §10.2)

    private func handleSend(_ indication: STUNMessage, from fiveTuple: FiveTuple, time: RelayTime) -> Outcome {
        guard let allocation = allocations[fiveTuple] else { return .none }
        guard let peer = try? indication.xorAddress(.xorPeerAddress), let data = indication[.data] else {
            counters.malformed += 1
            return .none
        }
        guard let index = allocation.relayed.firstIndex(where: { $0.ip.isIPv4 == peer.ip.isIPv4 }) else {
            allocation.dropped += 1
            return .none
        }
        guard configuration.filter.permits(peer.ip) else {
            counters.filterDrops += 1
            return .none
        }
        guard configuration.filter.permits(peer) else {
            counters.ownAddressDrops += 1
            return .none
        }
        guard allocation.hasPermission(for: peer.ip, nowMillis: time.millis) else {
            counters.noPermissionDrops += 1
            return .none
        }
        guard allocation.spend(data.count, toPeer: true, limit: configuration.bandwidthLimit, nowMillis: time.millis) else {
            counters.bandwidthDrops += 1
            return .none
        }
        allocation.packetsToPeer += 1
        allocation.bytesToPeer += data.count
        counters.packetsToPeer += 1
        counters.bytesToPeer += data.count
        return .sendToPeer(allocation, relayIndex: index, peer: peer, payload: data)
    }

    // MARK: - The data path

    /// A ChannelData message from a client: where it goes, or nil to drop it.
    func clientChannelData(channel: UInt16, length: Int, from fiveTuple: FiveTuple, nowMillis: Int64)
        -> (allocation: Allocation, relayIndex: Int, peer: TransportAddress)?
    {
        guard let allocation = allocations[fiveTuple],
              let peer = allocation.peer(onChannel: channel, nowMillis: nowMillis) else { return nil }
        guard allocation.hasPermission(for: peer.ip, nowMillis: nowMillis) else {
            counters.noPermissionDrops += 1
            return nil
        }
        guard let index = allocation.relayed.firstIndex(where: { $0.ip.isIPv4 == peer.ip.isIPv4 }) else { return nil }
        guard allocation.spend(length, toPeer: true, limit: configuration.bandwidthLimit, nowMillis: nowMillis) else {
            counters.bandwidthDrops += 1
            return nil
        }
        countRelayed(length, toPeer: true, on: allocation)
        return (allocation, index, peer)
    }

    /// One relayed datagram, in the allocation's usage and the relay's counters.
    private func countRelayed(_ length: Int, toPeer: Bool, on allocation: Allocation) {
        if toPeer {
            allocation.packetsToPeer += 1
            allocation.bytesToPeer += length
            counters.packetsToPeer += 1
            counters.bytesToPeer += length
        } else {
            allocation.packetsToClient += 1
            allocation.bytesToClient += length
            counters.packetsToClient += 1
            counters.bytesToClient += length
        }
    }

    enum PeerDelivery {
        case channel(UInt16)
        case dataIndication
    }

    /// A datagram from a peer to a relayed address: how to pass it to the client, or nil to
    /// drop it (no permission for the peer, allocation gone, over the cap).
    func peerData(to allocation: Allocation, from peer: TransportAddress, length: Int, nowMillis: Int64) -> PeerDelivery? {
        guard allocations[allocation.fiveTuple] === allocation,
              allocation.hasPermission(for: peer.ip, nowMillis: nowMillis) else {
            counters.noPermissionDrops += 1
            return nil
        }
        guard allocation.spend(length, toPeer: false, limit: configuration.bandwidthLimit, nowMillis: nowMillis) else {
            counters.bandwidthDrops += 1
            return nil
        }
        countRelayed(length, toPeer: false, on: allocation)
        if let number = allocation.channel(for: peer, nowMillis: nowMillis) { return .channel(number) }
        return .dataIndication
    }

    // MARK: - Ending allocations

    /// Removes allocations whose lifetime ran out and prunes
    /// permissions and channels; returns what ended so the server can close sockets and
    /// record usage.
    func expire(time: RelayTime) -> [(Allocation, EndReason)] {
        var ended: [(Allocation, EndReason)] = []
        for (fiveTuple, allocation) in allocations {
            if allocation.expiresAt <= time.millis {
                remove(fiveTuple)
                ended.append((allocation, .expired))
            } else {
                allocation.expireBindings(nowMillis: time.millis)
            }
        }
        limiter.prune(nowMillis: time.millis)
        return ended
    }

    /// Ends the allocation of a client whose TCP/TLS connection closed (RFC 8656 §3.1).
    func disconnect(_ fiveTuple: FiveTuple) -> (Allocation, EndReason)? {
        pending[fiveTuple] = nil
        guard let allocation = allocations[fiveTuple] else { return nil }
        remove(fiveTuple)
        return (allocation, .disconnected)
    }

    /// Ends every allocation (shutdown after draining).
    func removeAll() -> [Allocation] {
        let all = Array(allocations.values)
        for fiveTuple in allocations.keys { remove(fiveTuple) }
        return all
    }

    private func remove(_ fiveTuple: FiveTuple) {
        guard let allocation = allocations.removeValue(forKey: fiveTuple) else { return }
        let count = allocationsPerUser[allocation.username, default: 1] - 1
        allocationsPerUser[allocation.username] = count > 0 ? count : nil
        refreshed.remove(allocation.id)
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
