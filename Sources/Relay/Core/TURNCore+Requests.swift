import NIOCore
import Wire

/// The TURN requests after authentication: Allocate, Refresh, CreatePermission, ChannelBind,
/// and the Send indication (RFC 8656 §7-§11).
extension TURNCore {
    // MARK: Allocate (RFC 8656 §7)

    func allocate(
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

    func refresh(
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

    func createPermission(
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

    func channelBind(
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

    func handleSend(_ indication: STUNMessage, from fiveTuple: FiveTuple, time: RelayTime) -> Outcome {
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
}
