import Wire

/// ICEAgent is a full ICE agent (RFC 8445) for one component of one data stream, with trickle
/// (RFC 8838), consent freshness (RFC 7675) and restart, as a value that does no I/O.
///
/// The shape is libjuice's: one table of STUN transactions (checks, consent requests, STUN
/// server requests), and one `advance(now:)` that sends, retransmits and times out all of
/// them. The caller feeds it every STUN message that arrives on a base, calls `advance` at
/// `nextDeadline`, and carries out `takeActions()` after every call. It belongs to the one
/// event loop that owns the sockets.
package struct ICEAgent: Sendable {
    package internal(set) var role: ICERole
    package internal(set) var tieBreaker: UInt64
    package internal(set) var localCredentials: ICECredentials
    package internal(set) var remoteCredentials: ICECredentials?
    package let configuration: ICEConfiguration
    package internal(set) var state: ICEState = .new
    package internal(set) var failureReason: ICEFailureReason?
    package internal(set) var counters = ICECounters()
    /// Local candidates: what the caller added, server-reflexive and peer-reflexive ones found.
    package internal(set) var localCandidates: [ICECandidate] = []
    /// Remote candidates of the current generation, signalled and peer-reflexive.
    package internal(set) var remoteCandidates: [ICECandidate] = []
    /// Whether the remote side said end-of-candidates (this generation).
    package var remoteCandidatesComplete: Bool { endOfCandidatesAt != nil }

    var pairs: [Pair] = []
    var triggered: [Int] = []
    var transactions: [TransactionID: Transaction] = [:]
    var servers: [Server] = []
    var actions: [ICEAction] = []
    var random: any RandomNumberGenerator & Sendable
    var nextPairID = 1
    var nextSequence = 0
    var nextNomination = 1
    var nextRemoteFoundation = 1
    var foundations: [String: String] = [:]
    var generation = 0
    var lastCheckAt: ICETime?
    var checkingStartedAt: ICETime?
    var endOfCandidatesAt: ICETime?
    var generationSucceeded = false
    var checkingExpired = false
    var selection: Selection?

    /// - Parameters:
    ///   - tieBreaker: a random 64-bit number (RFC 8445 §16.1), kept for the agent's life.
    ///   - random: draws transaction IDs and consent intervals; tests inject a seeded one.
    package init(
        role: ICERole, local: ICECredentials, tieBreaker: UInt64, configuration: ICEConfiguration = ICEConfiguration(),
        random: any RandomNumberGenerator & Sendable = SystemRandomNumberGenerator(), now: ICETime
    ) {
        self.role = role
        self.localCredentials = local
        self.tieBreaker = tieBreaker
        self.configuration = configuration
        self.random = random
    }

    // MARK: - Inputs

    /// Adds a host or relayed candidate the caller gathered (its `base` set). The agent gives it
    /// its foundation, emits it as `.localCandidate` and pairs it. Returns what it stored, or nil
    /// when refused (counted).
    @discardableResult
    package mutating func addLocalCandidate(_ candidate: ICECandidate, now: ICETime) -> ICECandidate? {
        guard state != .closed, let base = candidate.base, candidate.transport == .udp,
              let address = candidate.transportAddress,
              localCandidates.count < configuration.maxLocalCandidates,
              !localCandidates.contains(where: { $0.transportAddress == address && $0.base == base })
        else {
            counters.localCandidatesRefused += 1
            return nil
        }
        var local = candidate
        local.component = 1
        let baseIP = local.type == .srflx || local.type == .prflx ? local.relatedAddress?.description ?? "" : "\(address.ip)"
        local.foundation = foundation(type: local.type, baseIP: baseIP, server: "")
        localCandidates.append(local)
        actions.append(.localCandidate(local))
        if local.type == .host || local.type == .relay {
            for remote in remoteCandidates { formPair(local: local, remote: remote) }
        }
        update(now: now)
        return local
    }

    /// Starts server-reflexive gathering through a STUN server from `base` (a host base):
    /// Binding requests with retransmissions; the mapped address becomes a srflx candidate.
    package mutating func addServerReflexiveServer(_ server: TransportAddress, base: ICEBase, now: ICETime) {
        guard state != .closed, servers.count < configuration.maxServers else { return }
        let index = servers.count
        servers.append(Server(address: server, base: base, done: false))
        let id = newTransactionID()
        let request = STUNMessage(.binding, .request, transactionID: id)
        let bytes = request.encoded(fingerprint: true)
        addTransaction(Transaction(
            purpose: .server(index: index), id: id, bytes: bytes, key: nil, base: base, destination: server,
            sentAt: now, nextSend: now + configuration.initialRTO, rto: configuration.initialRTO,
            retransmissionsLeft: configuration.serverRetransmissions, role: role, sequence: 0))
        actions.append(.send(bytes: bytes, base: base, to: server))
        update(now: now)
    }

    /// Asks every STUN server again from its base (for an ICE restart after the network or
    /// a NAT changed: call it before `restart`). A mapping that changed replaces the old
    /// server-reflexive candidate of that base and server; `.gatheringComplete` follows once
    /// every server answered or gave up.
    package mutating func regatherServerReflexive(now: ICETime) {
        guard state != .closed else { return }
        // Answers to the earlier round, late, are not taken for this one.
        transactions = transactions.filter { _, transaction in
            if case .server = transaction.purpose { return false }
            return true
        }
        for index in servers.indices {
            servers[index].done = false
            let id = newTransactionID()
            let bytes = STUNMessage(.binding, .request, transactionID: id).encoded(fingerprint: true)
            addTransaction(Transaction(
                purpose: .server(index: index), id: id, bytes: bytes, key: nil, base: servers[index].base,
                destination: servers[index].address, sentAt: now, nextSend: now + configuration.initialRTO,
                rto: configuration.initialRTO, retransmissionsLeft: configuration.serverRetransmissions, role: role,
                sequence: 0))
            actions.append(.send(bytes: bytes, base: servers[index].base, to: servers[index].address))
        }
        update(now: now)
    }

    /// Forgets the local candidates gathered on `base` (a relay allocation given up, before a
    /// `restart`, so that the new generation neither offers nor pairs them) and the pairs of
    /// this generation on it. The selected pair, if it is on `base`, stays until a new one is
    /// selected.
    package mutating func removeLocalCandidates(base: ICEBase) {
        localCandidates.removeAll { $0.base == base }
        let removed = Set(pairs.filter { $0.base == base && $0.id != selection?.pairID }.map(\.id))
        pairs.removeAll { removed.contains($0.id) }
        triggered.removeAll { removed.contains($0) }
        transactions = transactions.filter { _, transaction in
            if case .check(let pairID, _) = transaction.purpose { return !removed.contains(pairID) }
            return true
        }
    }

    /// The remote ufrag and password (from the offer or answer).
    package mutating func setRemoteCredentials(_ credentials: ICECredentials, now: ICETime) {
        guard state != .closed else { return }
        remoteCredentials = credentials
        startChecking(now: now)
        // Candidates that came with another generation's ufrag were dropped on arrival.
        update(now: now)
    }

    /// A trickled or signalled remote candidate. mDNS and TCP candidates are accepted and
    /// counted, not paired; so are candidates beyond `maxRemoteCandidates`.
    package mutating func addRemoteCandidate(_ candidate: ICECandidate, now: ICETime) {
        guard state != .closed else { return }
        startChecking(now: now)
        defer { update(now: now) }
        if let ufrag = candidate.extensionValue("ufrag"), let remoteCredentials, ufrag != remoteCredentials.ufrag {
            counters.remoteCandidatesUnusable += 1  // an earlier generation's candidate
            return
        }
        if candidate.isMDNS {
            counters.remoteMDNSCandidates += 1
            return
        }
        guard candidate.transport == .udp, candidate.component == 1, let address = candidate.transportAddress,
              address.port != 0 else {
            counters.remoteCandidatesUnusable += 1
            return
        }
        var remote = candidate
        remote.base = nil
        if let index = remoteCandidates.firstIndex(where: { $0.transportAddress == address }) {
            // A peer-reflexive candidate learnt from a check, now signalled: take its real type
            // and priority (RFC 8445 §7.3.1.3 leaves the prflx one; using the signalled one
            // reports the path truthfully).
            if remoteCandidates[index].type == .prflx && remote.type != .prflx {
                remoteCandidates[index] = remote
                for pairIndex in pairs.indices where pairs[pairIndex].remoteAddress == address {
                    pairs[pairIndex].remote = remote
                    pairs[pairIndex].priority = pairPriority(local: pairs[pairIndex].local, remote: remote)
                }
            }
            return
        }
        guard remoteCandidates.count < configuration.maxRemoteCandidates else {
            counters.remoteCandidatesOverLimit += 1
            return
        }
        remoteCandidates.append(remote)
        for local in localCandidates where local.type == .host || local.type == .relay {
            formPair(local: local, remote: remote)
        }
    }

    /// The remote side has sent all its candidates (RFC 8838 end-of-candidates).
    package mutating func endOfRemoteCandidates(now: ICETime) {
        guard state != .closed else { return }
        startChecking(now: now)
        if endOfCandidatesAt == nil { endOfCandidatesAt = now }
        update(now: now)
    }

    /// Every STUN message that arrived on `base` from `from` (after RFC 7983 demultiplexing).
    package mutating func receive(_ message: STUNMessage, from: TransportAddress, base: ICEBase, now: ICETime) {
        guard state != .closed else { return }
        defer { update(now: now) }
        // A wrong FINGERPRINT means damaged or foreign bytes: dropped as never received.
        guard message.fingerprintIsValid != false else {
            counters.badFingerprints += 1
            return
        }
        switch message.type.messageClass {
        case .request:
            guard message.type.method == .binding else {
                counters.ignoredRequests += 1
                return
            }
            handleRequest(message, from: from, base: base, now: now)
        case .successResponse, .errorResponse:
            handleResponse(message, from: from, base: base, now: now)
        case .indication:
            break  // Binding indications are keepalives: nothing to do.
        }
    }

    /// Non-STUN bytes arrived from `from` on `base`. On the selected pair this delays
    /// `.disconnected` (consent itself needs STUN responses, RFC 7675).
    package mutating func noteTraffic(from: TransportAddress, base: ICEBase, now: ICETime) {
        guard var current = selection, current.base == base, current.remoteAddress == from else { return }
        current.lastTraffic = now
        selection = current
    }

    /// Asks the selected pair for consent now (RFC 7675 allows a request at any time), unless
    /// one is already unanswered: the caller saw the path go quiet and wants to know at once
    /// whether it still works, and the request going out also renews the NAT mappings on the
    /// way. A lost answer is asked again every `consentRetryInterval`, as for a scheduled one.
    package mutating func probeSelectedPair(now: ICETime) {
        guard var current = selection, current.outstandingSince == nil, current.nextConsent > now else { return }
        current.nextConsent = now
        selection = current
        update(now: now)
    }

    /// When the selected pair last answered a consent request (or was selected): an answer
    /// whose integrity and transaction the agent checked.
    package var selectedPairAnsweredAt: ICETime? { selection?.lastAlive }

    /// Sends, retransmits, times out; call it at `nextDeadline`.
    package mutating func advance(now: ICETime) {
        update(now: now)
    }

    /// ICE restart (RFC 8445 §9): new local credentials (and possibly a new role), new remote
    /// credentials and candidates to come; bases and local candidates stay, and are emitted
    /// again as `.localCandidate` (then `.gatheringComplete` if every STUN server is done) for
    /// the new generation's signalling. The selected pair stays in use, and keeps answering and
    /// sending consent with the old credentials, until a pair of the new generation is selected.
    package mutating func restart(local: ICECredentials, role newRole: ICERole?, now: ICETime) {
        guard state != .closed else { return }
        generation += 1
        localCredentials = local
        remoteCredentials = nil
        if let newRole, newRole != role { role = newRole }
        remoteCandidates = []
        pairs = []
        triggered = []
        transactions = transactions.filter { _, transaction in
            if case .check = transaction.purpose { return false }
            return true
        }
        lastCheckAt = nil
        checkingStartedAt = nil
        endOfCandidatesAt = nil
        generationSucceeded = false
        checkingExpired = false
        if selection == nil || state == .failed {
            selection = nil
            failureReason = nil
            setState(.new)
        }
        for candidate in localCandidates where candidate.type != .prflx { actions.append(.localCandidate(candidate)) }
        if !servers.isEmpty && servers.allSatisfy(\.done) { actions.append(.gatheringComplete) }
        update(now: now)
    }

    /// Stops everything; no more actions.
    package mutating func close() {
        transactions = [:]
        selection = nil
        setState(.closed)
    }

    /// What to do now, in order; clears the list.
    package mutating func takeActions() -> [ICEAction] {
        defer { actions = [] }
        return actions
    }

    /// The pair to send application data on, if any.
    package var selectedPair: ICECandidatePair? {
        guard let selection else { return nil }
        if let pair = pairs.first(where: { $0.id == selection.pairID }) { return pair.snapshot }
        return selection.pair
    }

    /// The current generation's check list, highest priority first.
    package var checklist: [ICECandidatePair] {
        pairs.sorted { $0.priority > $1.priority }.map(\.snapshot)
    }

    /// When `advance(now:)` must be called next; nil when nothing is scheduled.
    package var nextDeadline: ICETime? {
        var deadline: ICETime?
        func consider(_ time: ICETime?) {
            guard let time else { return }
            if deadline == nil || time < deadline! { deadline = time }
        }
        for transaction in transactions.values { consider(transaction.nextSend) }
        guard state != .closed, state != .failed else { return deadline }
        if let lastCheckAt, peekNextCheck() != nil { consider(lastCheckAt + configuration.ta) }
        consider(nominationDeadline)
        if let selection {
            consider(selection.nextConsent)
            consider(selection.lastAlive + configuration.consentTimeout)
            if state == .connected { consider(disconnectDeadline(selection)) }
        }
        consider(checkingDeadline)
        return deadline
    }

    // MARK: - The one function that moves time

    mutating func update(now: ICETime) {
        guard state != .closed else { return }
        runTransactions(now: now)
        guard state != .failed else { return }
        nominate(now: now)
        paceChecks(now: now)
        runConsent(now: now)
        if let deadline = checkingDeadline, now >= deadline {
            checkingExpired = true
            if selection != nil {
                counters.restartsTimedOut += 1
            } else {
                fail(.noPairSucceeded)
            }
        }
    }

    mutating func setState(_ new: ICEState) {
        guard state != new else { return }
        state = new
        actions.append(.state(new))
    }

    mutating func fail(_ reason: ICEFailureReason) {
        failureReason = reason
        transactions = transactions.filter { _, transaction in
            if case .server = transaction.purpose { return true }
            return false
        }
        triggered = []
        setState(.failed)
    }

    mutating func startChecking(now: ICETime) {
        if checkingStartedAt == nil { checkingStartedAt = now }
        if state == .new { setState(.checking) }
    }

    var checkingDeadline: ICETime? {
        guard let checkingStartedAt, !generationSucceeded, !checkingExpired else { return nil }
        let cap = checkingStartedAt + configuration.checkingTimeoutWithoutEndOfCandidates
        guard let endOfCandidatesAt else { return cap }
        return min(cap, endOfCandidatesAt + configuration.checkingTimeout)
    }
}
