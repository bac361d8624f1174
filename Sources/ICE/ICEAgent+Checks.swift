import Wire

// MARK: - The agent's tables

extension ICEAgent {
    struct Pair: Sendable {
        let id: Int
        let base: ICEBase
        /// The base's own candidate (host or relay): its priority ranks the pair.
        var local: ICECandidate
        var remote: ICECandidate
        var priority: UInt64
        var state: ICEPairState = .waiting
        /// The local candidate the peer saw us as (from XOR-MAPPED-ADDRESS).
        var validLocal: ICECandidate?
        var succeededAt: ICETime?
        /// The transaction whose answer decides the pair (older ones may still answer).
        var transaction: TransactionID?
        /// Controlling side: checks on this pair carry USE-CANDIDATE.
        var nominating = false
        var nominated = false
        /// Order of nomination: the controlled side follows the latest.
        var nominationOrder = 0
        /// Controlled side: USE-CANDIDATE arrived before our own check succeeded.
        var useCandidateReceived = false

        var remoteAddress: TransportAddress { remote.transportAddress ?? TransportAddress(ip: .v4(0), port: 0) }

        var snapshot: ICECandidatePair {
            ICECandidatePair(local: validLocal ?? local, remote: remote, base: base, priority: priority,
                             state: state, nominated: nominated)
        }
    }

    struct Transaction: Sendable {
        enum Purpose: Sendable {
            case check(pairID: Int, nominating: Bool)
            case consent(pairID: Int)
            case server(index: Int)
        }

        var purpose: Purpose
        var id: TransactionID
        var bytes: [UInt8]
        /// The short-term key the request was signed with; its response must carry the same.
        var key: [UInt8]?
        var base: ICEBase
        var destination: TransportAddress
        var sentAt: ICETime
        /// Next retransmission, or the timeout when no retransmission is left.
        var nextSend: ICETime
        var rto: Duration
        var retransmissionsLeft: Int
        /// The role the request claimed (for a 487 answer).
        var role: ICERole
        /// Creation order, so that equal deadlines run in a fixed order.
        var sequence: Int
        /// The local candidate's prflx priority sent in PRIORITY.
        var priority: UInt32 = 0
    }

    struct Server: Sendable {
        var address: TransportAddress
        var base: ICEBase
        var done: Bool
    }

    /// The pair in use, with the credentials of its generation (kept across a restart).
    struct Selection: Sendable {
        var pairID: Int
        var pair: ICECandidatePair
        var localCredentials: ICECredentials
        var remoteCredentials: ICECredentials
        var lastAlive: ICETime
        var lastTraffic: ICETime?
        /// The first consent request sent since the last response.
        var outstandingSince: ICETime?
        var nextConsent: ICETime
        /// PRIORITY in consent requests: the base candidate's peer-reflexive priority.
        var priority: UInt32

        var base: ICEBase { pair.base }
        var remoteAddress: TransportAddress { pair.remoteAddress }
    }
}

// MARK: - Candidates and pairs

extension ICEAgent {
    /// RFC 8445 §5.1.1.3: same type, base IP, server and transport share a foundation.
    mutating func foundation(type: ICECandidateType, baseIP: String, server: String) -> String {
        let key = "\(type.rawValue) \(baseIP) \(server)"
        if let known = foundations[key] { return known }
        let value = "\(foundations.count + 1)"
        foundations[key] = value
        return value
    }

    func pairPriority(local: ICECandidate, remote: ICECandidate) -> UInt64 {
        role == .controlling
            ? ICECandidatePair.priority(controlling: local.priority, controlled: remote.priority)
            : ICECandidatePair.priority(controlling: remote.priority, controlled: local.priority)
    }

    /// Pairs a base's candidate with a remote one: same family only, one pair per
    /// (base, remote address) — server-reflexive candidates pair through their base (§6.1.2.4).
    @discardableResult
    mutating func formPair(local: ICECandidate, remote: ICECandidate) -> Int? {
        guard let base = local.base, let localAddress = local.transportAddress,
              let remoteAddress = remote.transportAddress, localAddress.ip.isIPv4 == remoteAddress.ip.isIPv4
        else { return nil }
        if let existing = pairs.firstIndex(where: { $0.base == base && $0.remoteAddress == remoteAddress }) {
            return existing
        }
        guard pairs.count < configuration.maxPairs else {
            counters.pairsOverLimit += 1
            return nil
        }
        pairs.append(Pair(id: nextPairID, base: base, local: local, remote: remote,
                          priority: pairPriority(local: local, remote: remote)))
        nextPairID += 1
        return pairs.count - 1
    }

    mutating func switchRole(to newRole: ICERole) {
        guard newRole != role else { return }
        role = newRole
        counters.roleSwitches += 1
        for index in pairs.indices {
            pairs[index].priority = pairPriority(local: pairs[index].local, remote: pairs[index].remote)
            if newRole == .controlled { pairs[index].nominating = false }
        }
    }

    func pairIndex(id: Int) -> Int? { pairs.firstIndex { $0.id == id } }

    mutating func newTransactionID() -> TransactionID {
        TransactionID(high: UInt32(truncatingIfNeeded: random.next()), low: random.next())
    }

    mutating func addTransaction(_ transaction: Transaction) {
        var transaction = transaction
        transaction.sequence = nextSequence
        nextSequence += 1
        transactions[transaction.id] = transaction
    }

    /// PRIORITY for a check from `local`: the priority it would have as peer-reflexive (§7.1.1).
    static func prflxPriority(of local: ICECandidate) -> UInt32 {
        ICECandidateType.prflx.typePreference << 24 | local.priority & 0x00FF_FFFF
    }
}

// MARK: - Sending checks

extension ICEAgent {
    /// The next check to send: the triggered queue first, then the highest-priority Waiting
    /// pair above any nominated one. Does not change anything (so `nextDeadline` can ask).
    func peekNextCheck() -> Int? {
        guard remoteCredentials != nil else { return nil }
        for id in triggered {
            guard let index = pairIndex(id: id) else { continue }
            let pair = pairs[index]
            if pair.state == .succeeded && !(pair.nominating && !pair.nominated) { continue }
            return index
        }
        let floor = pairs.filter { $0.nominated && $0.state == .succeeded }.map(\.priority).max() ?? 0
        var best: Int?
        for index in pairs.indices where pairs[index].state == .waiting && pairs[index].priority > floor {
            if best == nil || pairs[index].priority > pairs[best!].priority { best = index }
        }
        return best
    }

    mutating func paceChecks(now: ICETime) {
        if let lastCheckAt, now < lastCheckAt + configuration.ta { return }
        guard let index = peekNextCheck() else { return }
        let id = pairs[index].id
        // Entries before the chosen one were stale; the chosen one is taken. A pair from the
        // ordinary list means every triggered entry was stale.
        if let position = triggered.firstIndex(of: id) {
            triggered.removeFirst(position + 1)
        } else {
            triggered = []
        }
        sendCheck(pairIndex: index, now: now)
        lastCheckAt = now
    }

    mutating func sendCheck(pairIndex index: Int, now: ICETime) {
        guard let remoteCredentials else { return }
        let pair = pairs[index]
        let nominating = role == .controlling && pair.nominating
        let id = newTransactionID()
        let priority = Self.prflxPriority(of: pair.local)
        let key = STUNCredentials.shortTermKey(password: remoteCredentials.password)
        let bytes = bindingRequest(id: id, username: "\(remoteCredentials.ufrag):\(localCredentials.ufrag)",
                                   priority: priority, useCandidate: nominating, key: key)
        // An older transaction of this pair may still answer, but is not retransmitted.
        if let previous = pair.transaction, var old = transactions[previous] {
            old.retransmissionsLeft = 0
            transactions[previous] = old
        }
        var transaction = Transaction(
            purpose: .check(pairID: pair.id, nominating: nominating), id: id, bytes: bytes, key: key, base: pair.base,
            destination: pair.remoteAddress, sentAt: now, nextSend: now + configuration.initialRTO,
            rto: configuration.initialRTO, retransmissionsLeft: configuration.checkRetransmissions, role: role,
            sequence: 0)
        transaction.priority = priority
        addTransaction(transaction)
        pairs[index].transaction = id
        if pairs[index].state != .succeeded { pairs[index].state = .inProgress }
        actions.append(.send(bytes: bytes, base: pair.base, to: pair.remoteAddress))
    }

    func bindingRequest(id: TransactionID, username: String, priority: UInt32, useCandidate: Bool,
                        key: [UInt8]) -> [UInt8] {
        var request = STUNMessage(.binding, .request, transactionID: id)
        request.attributes.append(.text(.username, username))
        request.attributes.append(.uint32(.priority, priority))
        if role == .controlling {
            request.attributes.append(.uint64(.iceControlling, tieBreaker))
        } else {
            request.attributes.append(.uint64(.iceControlled, tieBreaker))
        }
        if useCandidate { request.attributes.append(STUNAttribute(type: .useCandidate, value: [])) }
        return request.encoded(integrityKey: key, fingerprint: true)
    }

    /// Retransmissions and timeouts, earliest first (creation order breaks ties).
    mutating func runTransactions(now: ICETime) {
        let due = transactions.values.filter { $0.nextSend <= now }
            .sorted { ($0.nextSend, $0.sequence) < ($1.nextSend, $1.sequence) }
        for transaction in due {
            guard var current = transactions[transaction.id] else { continue }
            if current.retransmissionsLeft > 0 {
                current.retransmissionsLeft -= 1
                current.rto = current.rto * 2
                current.nextSend = now + current.rto
                transactions[current.id] = current
                actions.append(.send(bytes: current.bytes, base: current.base, to: current.destination))
                continue
            }
            transactions[current.id] = nil
            switch current.purpose {
            case .check(let pairID, _):
                guard let index = pairIndex(id: pairID), pairs[index].transaction == current.id else { continue }
                pairs[index].transaction = nil
                pairs[index].state = .failed
                pairs[index].nominating = false
                if selection?.pairID == pairID { reselect(now: now) }
            case .consent:
                break  // Liveness is judged from times, not from one lost request.
            case .server(let index):
                finishServer(index)
            }
        }
    }
}

// MARK: - Answers to our requests

extension ICEAgent {
    mutating func handleResponse(_ message: STUNMessage, from: TransportAddress, base: ICEBase, now: ICETime) {
        guard message.type.method == .binding, let transaction = transactions[message.transactionID] else {
            counters.unmatchedResponses += 1
            return
        }
        if case .server(let index) = transaction.purpose {
            handleServerResponse(message, transaction: transaction, index: index, from: from, base: base)
            return
        }
        // Checks and consent are answered with the same short-term key they were sent with.
        guard let key = transaction.key, message.verifyIntegrity(key: key) else {
            if message.type.messageClass == .errorResponse && !message.hasIntegrity {
                counters.unauthenticatedErrors += 1
            } else {
                counters.badIntegrity += 1
            }
            return
        }
        transactions[transaction.id] = nil
        let symmetric = from == transaction.destination && base == transaction.base
        switch transaction.purpose {
        case .consent(let pairID):
            guard message.type.messageClass == .successResponse, symmetric,
                  var current = selection, current.pairID == pairID else { return }
            current.lastAlive = now
            // The next request one interval after the first one that went unanswered.
            current.nextConsent = max((current.outstandingSince ?? now) + consentInterval(), now)
            current.outstandingSince = nil
            selection = current
            if state == .disconnected { setState(.connected) }
        case .check(let pairID, let nominating):
            guard let index = pairIndex(id: pairID) else { return }
            if message.type.messageClass == .errorResponse {
                if (try? message.errorCode())?.code == STUNErrorCode.roleConflict.code {
                    // §7.2.5.1: take the other role than the one the request claimed, retry.
                    if role == transaction.role { switchRole(to: transaction.role.other) }
                    if pairs[index].state != .succeeded { pairs[index].state = .waiting }
                    pairs[index].transaction = nil
                    if !triggered.contains(pairID) { triggered.append(pairID) }
                } else if pairs[index].transaction == transaction.id {
                    pairs[index].state = .failed
                    pairs[index].transaction = nil
                    pairs[index].nominating = false
                }
                return
            }
            // §7.2.5.2.1: a response from elsewhere than we sent to fails the pair.
            guard symmetric, let mapped = (try? message.xorAddress(.xorMappedAddress)) ?? nil else {
                if pairs[index].transaction == transaction.id {
                    pairs[index].state = .failed
                    pairs[index].transaction = nil
                }
                return
            }
            checkSucceeded(index: index, mapped: mapped, transaction: transaction, nominating: nominating, now: now)
        case .server:
            break
        }
    }

    mutating func checkSucceeded(index: Int, mapped: TransportAddress, transaction: Transaction, nominating: Bool,
                                 now: ICETime) {
        let base = pairs[index].base
        // §7.2.5.3.1: the mapped address is the valid pair's local candidate; a new one is
        // peer-reflexive (not signalled).
        var valid = localCandidates.first { $0.transportAddress == mapped && $0.base == base }
        if valid == nil {
            var prflx = ICECandidate(priority: transaction.priority, address: .ip(mapped.ip), port: mapped.port,
                                     type: .prflx, relatedAddress: pairs[index].local.address,
                                     relatedPort: pairs[index].local.port, base: base)
            prflx.foundation = foundation(type: .prflx, baseIP: "\(pairs[index].local.address)", server: "")
            if localCandidates.count < configuration.maxLocalCandidates { localCandidates.append(prflx) }
            valid = prflx
        }
        pairs[index].validLocal = valid
        pairs[index].state = .succeeded
        if pairs[index].transaction == transaction.id { pairs[index].transaction = nil }
        if pairs[index].succeededAt == nil { pairs[index].succeededAt = now }
        generationSucceeded = true
        if nominating && role == .controlling {
            markNominated(index)
        } else if role == .controlled && pairs[index].useCandidateReceived {
            markNominated(index)
        }
        reselect(now: now)
    }

    mutating func markNominated(_ index: Int) {
        pairs[index].nominated = true
        pairs[index].nominationOrder = nextNomination
        nextNomination += 1
    }

    mutating func handleServerResponse(_ message: STUNMessage, transaction: Transaction, index: Int,
                                       from: TransportAddress, base: ICEBase) {
        guard from == transaction.destination, base == transaction.base, servers.indices.contains(index) else {
            counters.unmatchedResponses += 1
            return
        }
        transactions[transaction.id] = nil
        defer { finishServer(index) }
        guard message.type.messageClass == .successResponse,
              let mapped = ((try? message.xorAddress(.xorMappedAddress)) ?? nil) ?? ((try? message.address(.mappedAddress)) ?? nil),
              let host = localCandidates.first(where: { $0.base == base && $0.type == .host }),
              let hostAddress = host.transportAddress
        else { return }
        // §5.1.3: a srflx candidate equal to its base (no NAT) or to one we have is redundant.
        guard mapped != hostAddress, !localCandidates.contains(where: { $0.transportAddress == mapped }) else { return }
        let srflxFoundation = foundation(type: .srflx, baseIP: "\(hostAddress.ip)", server: "\(transaction.destination.ip)")
        // A new mapping from the same base and server (asked again for a restart: the NAT
        // changed) replaces the old one, which no longer leads here.
        localCandidates.removeAll { $0.type == .srflx && $0.base == base && $0.foundation == srflxFoundation }
        guard localCandidates.count < configuration.maxLocalCandidates else { return }
        var srflx = ICECandidate(
            priority: ICECandidate.priority(type: .srflx, localPreference: UInt16(host.priority >> 8 & 0xFFFF)),
            address: .ip(mapped.ip), port: mapped.port, type: .srflx, relatedAddress: host.address,
            relatedPort: host.port, base: base)
        srflx.foundation = srflxFoundation
        localCandidates.append(srflx)
        actions.append(.localCandidate(srflx))
    }

    mutating func finishServer(_ index: Int) {
        guard servers.indices.contains(index), !servers[index].done else { return }
        servers[index].done = true
        if servers.allSatisfy(\.done) { actions.append(.gatheringComplete) }
    }
}

// MARK: - Requests from the peer

extension ICEAgent {
    mutating func handleRequest(_ request: STUNMessage, from: TransportAddress, base: ICEBase, now: ICETime) {
        // RFC 8489 §9.1.3: no USERNAME or MESSAGE-INTEGRITY → 400; a USERNAME that is not
        // ours or a MESSAGE-INTEGRITY that does not verify → 401. Neither changes anything.
        guard let username = (try? request.text(.username)) ?? nil, request.hasIntegrity else {
            counters.rejectedRequests += 1
            reject(request, .badRequest, from: from, base: base)
            return
        }
        var credentials: ICECredentials
        var current = true
        if username.hasPrefix(localCredentials.ufrag + ":") {
            credentials = localCredentials
        } else if let selection, selection.localCredentials != localCredentials,
                  username.hasPrefix(selection.localCredentials.ufrag + ":") {
            credentials = selection.localCredentials  // the previous generation, still in use
            current = false
        } else {
            counters.rejectedRequests += 1
            reject(request, .unauthorized, from: from, base: base)
            return
        }
        let key = STUNCredentials.shortTermKey(password: credentials.password)
        guard request.verifyIntegrity(key: key) else {
            counters.badIntegrity += 1
            reject(request, .unauthorized, from: from, base: base)
            return
        }
        guard let priority = (try? request.uint32(.priority)) ?? nil, priority > 0 else {
            counters.rejectedRequests += 1
            respond(STUNMessage(.binding, .errorResponse, transactionID: request.transactionID,
                                attributes: [.errorCode(.badRequest)]), key: key, from: from, base: base)
            return
        }
        guard current else {
            // Consent from the peer on the pair still in use during a restart.
            respond(.bindingSuccess(to: request, from: from), key: key, from: from, base: base)
            return
        }
        // §7.3.1.1 role conflicts.
        if role == .controlling, let theirs = (try? request.uint64(.iceControlling)) ?? nil {
            if tieBreaker >= theirs {
                counters.roleConflictsAnswered += 1
                respond(STUNMessage(.binding, .errorResponse, transactionID: request.transactionID,
                                    attributes: [.errorCode(.roleConflict)]), key: key, from: from, base: base)
                return
            }
            switchRole(to: .controlled)
        } else if role == .controlled, let theirs = (try? request.uint64(.iceControlled)) ?? nil {
            if tieBreaker >= theirs {
                switchRole(to: .controlling)
            } else {
                counters.roleConflictsAnswered += 1
                respond(STUNMessage(.binding, .errorResponse, transactionID: request.transactionID,
                                    attributes: [.errorCode(.roleConflict)]), key: key, from: from, base: base)
                return
            }
        }
        respond(.bindingSuccess(to: request, from: from), key: key, from: from, base: base)
        startChecking(now: now)

        // §7.3.1.3: an unknown source is a peer-reflexive remote candidate.
        guard let local = localCandidates.first(where: { $0.base == base && ($0.type == .host || $0.type == .relay) })
        else {
            counters.ignoredRequests += 1
            return
        }
        if !remoteCandidates.contains(where: { $0.transportAddress == from }) {
            guard remoteCandidates.count < configuration.maxRemoteCandidates else {
                counters.remoteCandidatesOverLimit += 1
                return
            }
            let remote = ICECandidate(foundation: "prflx\(nextRemoteFoundation)", priority: priority,
                                      address: .ip(from.ip), port: from.port, type: .prflx)
            nextRemoteFoundation += 1
            remoteCandidates.append(remote)
        }
        guard let remote = remoteCandidates.first(where: { $0.transportAddress == from }),
              let index = formPair(local: local, remote: remote) else { return }

        // §7.3.1.4 triggered check; §7.3.1.5 nomination by the controlling peer.
        let useCandidate = request.contains(.useCandidate) && role == .controlled
        switch pairs[index].state {
        case .succeeded:
            if useCandidate && !(pairs[index].nominated && isLatestNomination(index)) {
                markNominated(index)
                reselect(now: now)
            }
        case .waiting, .inProgress, .failed:
            if useCandidate { pairs[index].useCandidateReceived = true }
            pairs[index].state = .waiting
            if !triggered.contains(pairs[index].id) { triggered.append(pairs[index].id) }
        }
    }

    func isLatestNomination(_ index: Int) -> Bool {
        pairs[index].nominationOrder == nextNomination - 1
    }

    mutating func respond(_ message: STUNMessage, key: [UInt8], from: TransportAddress, base: ICEBase) {
        actions.append(.send(bytes: message.encoded(integrityKey: key, fingerprint: true), base: base, to: from))
    }

    mutating func reject(_ request: STUNMessage, _ error: STUNErrorCode, from: TransportAddress, base: ICEBase) {
        let response = STUNMessage(.binding, .errorResponse, transactionID: request.transactionID,
                                   attributes: [.errorCode(error)])
        actions.append(.send(bytes: response.encoded(fingerprint: true), base: base, to: from))
    }
}

// MARK: - Nomination, selection, consent

extension ICEAgent {
    /// The best succeeded pair of this generation.
    var bestSucceeded: Int? {
        var best: Int?
        for index in pairs.indices where pairs[index].state == .succeeded {
            if best == nil || pairs[index].priority > pairs[best!].priority { best = index }
        }
        return best
    }

    func higherPending(than priority: UInt64) -> Bool {
        pairs.contains { ($0.state == .waiting || $0.state == .inProgress) && $0.priority > priority }
    }

    /// When the controlling agent will nominate the best succeeded pair though better ones
    /// are still pending.
    var nominationDeadline: ICETime? {
        guard role == .controlling, let best = bestSucceeded, !pairs[best].nominating, !pairs[best].nominated,
              let succeededAt = pairs[best].succeededAt else { return nil }
        return succeededAt + configuration.nominationWait
    }

    /// Regular nomination (§8.1.1): the best succeeded pair, once nothing better is pending or
    /// `nominationWait` after it succeeded. A better pair that succeeds later is nominated too
    /// (the relay → direct upgrade).
    mutating func nominate(now: ICETime) {
        guard role == .controlling, let best = bestSucceeded, !pairs[best].nominating, !pairs[best].nominated,
              let succeededAt = pairs[best].succeededAt else { return }
        guard !higherPending(than: pairs[best].priority) || now >= succeededAt + configuration.nominationWait else {
            return
        }
        pairs[best].nominating = true
        triggered.removeAll { $0 == pairs[best].id }
        triggered.insert(pairs[best].id, at: 0)
    }

    /// The controlling side uses its best succeeded pair; the controlled side the latest
    /// nominated one, or its best succeeded one until a nomination arrives.
    mutating func reselect(now: ICETime) {
        guard state != .failed, state != .closed else { return }
        var chosen: Int?
        if role == .controlled {
            for index in pairs.indices where pairs[index].nominated && pairs[index].state == .succeeded {
                if chosen == nil || pairs[index].nominationOrder > pairs[chosen!].nominationOrder { chosen = index }
            }
        }
        if chosen == nil { chosen = bestSucceeded }
        guard let chosen else { return }
        let pair = pairs[chosen]
        if let selection, selection.pairID == pair.id { return }
        guard let remoteCredentials else { return }
        selection = Selection(pairID: pair.id, pair: pair.snapshot, localCredentials: localCredentials,
                              remoteCredentials: remoteCredentials, lastAlive: now, lastTraffic: nil,
                              outstandingSince: nil, nextConsent: now + consentInterval(),
                              priority: Self.prflxPriority(of: pair.local))
        actions.append(.selectedPair(pair.snapshot))
        setState(.connected)
    }

    mutating func consentInterval() -> Duration {
        let low = configuration.consentInterval.lowerBound, high = configuration.consentInterval.upperBound
        let span = ICETime(high - low).milliseconds
        guard span > 0 else { return low }
        return low + .milliseconds(Int64(random.next() % UInt64(span + 1)))
    }

    func disconnectDeadline(_ selection: Selection) -> ICETime? {
        guard let outstandingSince = selection.outstandingSince else { return nil }
        let alive = max(selection.lastAlive, selection.lastTraffic ?? selection.lastAlive)
        return max(alive + configuration.disconnectedAfter, outstandingSince + configuration.consentRetryInterval)
    }

    /// RFC 7675: a Binding request on the selected pair every 4–6 s (every second while they go
    /// unanswered); no answer for `disconnectedAfter` → disconnected, for `consentTimeout` → failed.
    mutating func runConsent(now: ICETime) {
        guard var current = selection else { return }
        if now >= current.lastAlive + configuration.consentTimeout {
            fail(.consentExpired)
            return
        }
        if now >= current.nextConsent {
            let id = newTransactionID()
            let key = STUNCredentials.shortTermKey(password: current.remoteCredentials.password)
            let bytes = bindingRequest(
                id: id, username: "\(current.remoteCredentials.ufrag):\(current.localCredentials.ufrag)",
                priority: current.priority, useCandidate: false, key: key)
            addTransaction(Transaction(
                purpose: .consent(pairID: current.pairID), id: id, bytes: bytes, key: key, base: current.base,
                destination: current.remoteAddress, sentAt: now, nextSend: now + configuration.consentTimeout,
                rto: configuration.consentTimeout, retransmissionsLeft: 0, role: role, sequence: 0))
            actions.append(.send(bytes: bytes, base: current.base, to: current.remoteAddress))
            // Until an answer comes (which reschedules), ask again every retry interval.
            if current.outstandingSince == nil { current.outstandingSince = now }
            current.nextConsent = now + configuration.consentRetryInterval
        }
        selection = current
        if state == .connected, let deadline = disconnectDeadline(current), now >= deadline {
            setState(.disconnected)
        }
    }
}
