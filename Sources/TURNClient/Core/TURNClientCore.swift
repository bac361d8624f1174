import NIOCore
import Wire

/// TURNClientCore is one TURN allocation on one server connection (RFC 8656 §7–§12), as a
/// state machine without I/O: the driver feeds it what the server sent and the owner's data,
/// always with `now` (monotonic milliseconds), and carries out the actions it returns — bytes
/// for the server and events for the owner. It asks to be woken at `nextDeadline`.
///
/// What it does: Allocate with the long-term credential (401 → REALM/NONCE → signed retry,
/// 438 → new nonce), retransmission over UDP, Refresh before expiry, CreatePermission per peer
/// IP and ChannelBind per peer (both refreshed while in use), Send indications until a
/// channel is bound and ChannelData after, data queued while a permission is pending, and
/// Refresh with LIFETIME 0 on close. Whatever comes from the server is checked — transaction,
/// method, FINGERPRINT, MESSAGE-INTEGRITY on success responses to signed requests — and bytes
/// that fail are dropped and counted. Every message it sends carries FINGERPRINT.
package struct TURNClientCore {
    package enum State: Sendable, Equatable {
        case idle, allocating, allocated, closing, closed, failed
    }

    /// Dropped input and other things worth a metric; nothing here is fatal.
    package struct Counters: Sendable, Equatable {
        /// Bytes from the server that are neither STUN nor ChannelData, or do not parse.
        package var malformed = 0
        /// Messages whose FINGERPRINT is wrong.
        package var badFingerprints = 0
        /// Responses to no request of ours (unknown transaction ID, or the wrong method).
        package var unknownTransactions = 0
        /// Responses whose MESSAGE-INTEGRITY is missing (success) or wrong.
        package var badIntegrity = 0
        /// Requests, unknown indications, data from peers we have no permission for, and
        /// ChannelData on channels we did not bind.
        package var unexpected = 0
        /// Sends dropped: not allocated, wrong family, too big, tables full, permission failed.
        package var sendDrops = 0
        /// Sends dropped because the queue for a pending permission was full.
        package var queueDrops = 0
        package var retransmissions = 0
        package var sendIndications = 0
        package var channelDataSent = 0
        package var dataReceived = 0
    }

    package let configuration: TURNClientConfiguration
    package private(set) var state: State = .idle
    package private(set) var allocation: TURNAllocation?
    package private(set) var counters = Counters()

    // The long-term credential, once the server has challenged (RFC 8489 §9.2).
    private var realm: String?
    private var nonce: String?
    private var key: [UInt8]?

    private var transactions: [TransactionID: Transaction] = [:]
    private var expiresAt: Int64 = .max
    private var refreshAt: Int64 = .max
    private var refreshing = false
    private var permissions: [IPAddress: Permission] = [:]
    private var peers: [TransportAddress: Peer] = [:]
    private var peerByChannel: [UInt16: TransportAddress] = [:]
    private var nextChannel = ChannelData.channelRange.lowerBound
    private var freeChannels: [UInt16] = []
    private var queuedBytes = 0
    private var output: [TURNClientAction] = []

    package init(configuration: TURNClientConfiguration) {
        self.configuration = configuration
    }

    // MARK: - Tables

    private struct Transaction {
        enum Purpose: Equatable {
            case allocate
            case refresh(lifetime: UInt32?)
            case createPermission(IPAddress)
            case channelBind(UInt16, TransportAddress)

            var method: STUNMethod {
                switch self {
                case .allocate: .allocate
                case .refresh: .refresh
                case .createPermission: .createPermission
                case .channelBind: .channelBind
                }
            }
        }

        var purpose: Purpose
        var bytes: ByteBuffer
        /// The key the request was signed with; nil for the first, unauthenticated Allocate.
        var key: [UInt8]?
        var transmissions = 1
        var rto: Int64
        var nextSend: Int64
        var giveUpAt: Int64
        var challenges: Int
        var staleRetries: Int
    }

    private struct Permission {
        enum Phase { case pending, active, failed }
        var phase: Phase = .pending
        var expiresAt: Int64 = .max
        var refreshAt: Int64 = .max
        var refreshing = false
        var retryAt: Int64 = .max
        var lastUsed: Int64
        var queue: [(peer: TransportAddress, data: ByteBuffer)] = []
    }

    private struct Peer {
        enum Phase { case unbound, binding, bound, failed }
        var channel: UInt16
        var phase: Phase = .unbound
        var expiresAt: Int64 = .max
        var refreshAt: Int64 = .max
        var refreshing = false
        /// When a binding last lapsed: the number stays this peer's for 5 minutes after (RFC 8656 §12).
        var lapsedAt: Int64 = .min
        var lastUsed: Int64
    }

    // MARK: - Owner's calls

    /// Starts the allocation: an Allocate request without credentials, which the server
    /// answers with a 401 challenge (RFC 8656 §7.1).
    package mutating func start(now: Int64) -> [TURNClientAction] {
        guard state == .idle else { return [] }
        state = .allocating
        startTransaction(.allocate, now: now)
        return takeOutput()
    }

    /// Data for `peer`. Before the peer's permission is installed it waits (bounded); then it
    /// goes as a Send indication, or as ChannelData once a channel is bound.
    package mutating func send(_ data: ByteBuffer, to peer: TransportAddress, now: Int64) -> [TURNClientAction] {
        sendData(data, to: peer, now: now)
        return takeOutput()
    }

    /// Ends the allocation: Refresh with LIFETIME 0; `.closed` follows its answer or timeout.
    package mutating func close(now: Int64) -> [TURNClientAction] {
        switch state {
        case .idle, .allocating:
            clearAll()
            state = .closed
            output.append(.event(.closed))
        case .allocated:
            clearAll()
            state = .closing
            startTransaction(.refresh(lifetime: 0), now: now)
        case .closing, .closed, .failed:
            break
        }
        return takeOutput()
    }

    /// The TCP/TLS connection closed (or the UDP socket failed): the allocation is gone.
    package mutating func connectionLost(now: Int64) -> [TURNClientAction] {
        switch state {
        case .closing, .idle:
            clearAll()
            state = .closed
            output.append(.event(.closed))
        case .allocating, .allocated:
            fail(.connectionClosed)
        case .closed, .failed:
            break
        }
        return takeOutput()
    }

    /// The driver's transport failed in a way the core cannot see (connect error, TLS).
    package mutating func transportFailed(_ reason: String, now: Int64) -> [TURNClientAction] {
        if state != .closed && state != .failed { fail(.transport(reason)) }
        return takeOutput()
    }

    /// The channel bound to `peer`, if one is live: a hot path may frame ChannelData itself.
    package func boundChannel(for peer: TransportAddress, now: Int64) -> UInt16? {
        guard let entry = peers[peer], entry.phase == .bound, entry.expiresAt > now,
              let permission = permissions[peer.ip], permission.phase == .active else { return nil }
        return entry.channel
    }

    // MARK: - Time

    /// When `tick` must next be called, or nil when nothing is waiting.
    package var nextDeadline: Int64? {
        var deadline = Int64.max
        for transaction in transactions.values {
            deadline = min(deadline, transaction.nextSend, transaction.giveUpAt)
        }
        if state == .allocated {
            if !refreshing { deadline = min(deadline, refreshAt) }
            deadline = min(deadline, expiresAt)
            for permission in permissions.values {
                switch permission.phase {
                case .active:
                    if !permission.refreshing { deadline = min(deadline, permission.refreshAt, permission.expiresAt) }
                case .failed: deadline = min(deadline, permission.retryAt)
                case .pending: break
                }
            }
            for peer in peers.values where peer.phase == .bound && !peer.refreshing {
                deadline = min(deadline, peer.refreshAt, peer.expiresAt)
            }
        }
        return deadline == .max ? nil : deadline
    }

    /// Retransmissions, timeouts and refreshes that are due at `now`.
    package mutating func tick(now: Int64) -> [TURNClientAction] {
        for (id, transaction) in transactions {
            guard var current = transactions[id] else { continue }  // a timeout may have cleared the table
            if current.giveUpAt <= now {
                transactions[id] = nil
                timedOut(transaction.purpose, now: now)
                continue
            }
            if current.nextSend <= now {
                output.append(.send(current.bytes))
                counters.retransmissions += 1
                current.transmissions += 1
                current.rto *= 2
                current.nextSend = current.transmissions < configuration.maxTransmissions ? now + current.rto : .max
                transactions[id] = current
            }
        }
        guard state == .allocated else { return takeOutput() }

        if expiresAt <= now {
            fail(.expired)
            return takeOutput()
        }
        if !refreshing && refreshAt <= now {
            refreshing = true
            startTransaction(.refresh(lifetime: configuration.requestedLifetime), now: now)
        }
        for ip in Array(permissions.keys) {
            guard var permission = permissions[ip] else { continue }
            switch permission.phase {
            case .active where !permission.refreshing:
                if permission.refreshAt <= now {
                    if permission.lastUsed > now - configuration.permissionRefreshInterval {
                        permission.refreshing = true
                        startTransaction(.createPermission(ip), now: now)
                    } else {
                        permission.refreshAt = .max  // unused: let it lapse
                    }
                }
                if !permission.refreshing && permission.expiresAt <= now {
                    permissions[ip] = nil
                    continue
                }
                permissions[ip] = permission
            case .failed where permission.retryAt <= now:
                permissions[ip] = nil  // the next send tries again
            default:
                break
            }
        }
        for address in Array(peers.keys) {
            guard var peer = peers[address], peer.phase == .bound, !peer.refreshing else { continue }
            if peer.refreshAt <= now {
                if peer.lastUsed > now - configuration.channelRefreshInterval {
                    peer.refreshing = true
                    peers[address] = peer
                    startTransaction(.channelBind(peer.channel, address), now: now)
                    continue
                }
                peer.refreshAt = .max
            }
            if peer.expiresAt <= now {
                peer.phase = .unbound
                peer.lapsedAt = now
            }
            peers[address] = peer
        }
        return takeOutput()
    }

    // MARK: - From the server

    /// One datagram (UDP) or one frame (TCP/TLS) from the server.
    package mutating func receive(_ bytes: ByteBuffer, now: Int64) -> [TURNClientAction] {
        guard let first = bytes.getInteger(at: bytes.readerIndex, as: UInt8.self) else {
            counters.malformed += 1
            return []
        }
        switch PacketKind(firstByte: first) {
        case .stun:
            guard let message = try? STUNMessage(datagram: bytes) else {
                counters.malformed += 1
                return []
            }
            handle(message, now: now)
        case .channelData:
            guard let frame = try? ChannelData(datagram: bytes) else {
                counters.malformed += 1
                return []
            }
            handleChannelData(frame, now: now)
        default:
            counters.malformed += 1
        }
        return takeOutput()
    }

    private mutating func handle(_ message: STUNMessage, now: Int64) {
        guard message.fingerprintIsValid != false else {
            counters.badFingerprints += 1
            return
        }
        switch message.type.messageClass {
        case .indication:
            guard message.type.method == .data else {
                counters.unexpected += 1
                return
            }
            handleDataIndication(message, now: now)
        case .successResponse, .errorResponse:
            handleResponse(message, now: now)
        case .request:
            counters.unexpected += 1
        }
    }

    private mutating func handleDataIndication(_ message: STUNMessage, now: Int64) {
        guard state == .allocated || state == .closing else {
            counters.unexpected += 1
            return
        }
        guard let peer = try? message.xorAddress(.xorPeerAddress), let data = message[.data] else {
            counters.malformed += 1
            return
        }
        // The server relays only from peers we permitted; anything else is not from it.
        guard permissions[peer.ip] != nil else {
            counters.unexpected += 1
            return
        }
        markUsed(peer, now: now)
        counters.dataReceived += 1
        output.append(.event(.data(from: peer, ByteBuffer(bytes: data))))
    }

    private mutating func handleChannelData(_ frame: ChannelData, now: Int64) {
        guard state == .allocated || state == .closing, let peer = peerByChannel[frame.channel] else {
            counters.unexpected += 1
            return
        }
        markUsed(peer, now: now)
        counters.dataReceived += 1
        output.append(.event(.data(from: peer, frame.data)))
    }

    private mutating func handleResponse(_ message: STUNMessage, now: Int64) {
        guard let transaction = transactions[message.transactionID],
              transaction.purpose.method == message.type.method else {
            counters.unknownTransactions += 1
            return
        }
        let isSuccess = message.type.messageClass == .successResponse
        // RFC 8489 §9.2.5: a response to a signed request must be signed with the same key —
        // a success always, an error when it carries MESSAGE-INTEGRITY at all (challenges
        // and some servers' errors do not). A forgery leaves the request waiting.
        if let key = transaction.key {
            if message.hasIntegrity {
                guard message.verifyIntegrity(key: key) else {
                    counters.badIntegrity += 1
                    return
                }
            } else if isSuccess {
                counters.badIntegrity += 1
                return
            }
        }
        let errorCode: STUNErrorCode?
        if isSuccess {
            errorCode = nil
        } else {
            guard let code = try? message.errorCode() else {
                counters.malformed += 1
                return
            }
            errorCode = code
        }
        transactions[message.transactionID] = nil

        guard let errorCode else {
            succeeded(transaction.purpose, message, now: now)
            return
        }
        switch errorCode.code {
        case 401 where transaction.challenges == 0:
            guard adoptChallenge(message, requireRealm: true) else {
                failed(transaction.purpose, .rejected(errorCode), now: now)
                return
            }
            startTransaction(transaction.purpose, now: now, challenges: 1, staleRetries: transaction.staleRetries)
        case 438 where transaction.staleRetries < configuration.maxStaleNonceRetries:
            guard adoptChallenge(message, requireRealm: false), key != nil else {
                failed(transaction.purpose, .rejected(errorCode), now: now)
                return
            }
            startTransaction(transaction.purpose, now: now, challenges: transaction.challenges,
                             staleRetries: transaction.staleRetries + 1)
        default:
            failed(transaction.purpose, .rejected(errorCode), now: now)
        }
    }

    /// Takes REALM and NONCE from a 401 or 438 (RFC 8489 §9.2.5); false when they are missing.
    private mutating func adoptChallenge(_ message: STUNMessage, requireRealm: Bool) -> Bool {
        guard let newNonce = try? message.text(.nonce), !newNonce.isEmpty else { return false }
        let newRealm = try? message.text(.realm)
        if requireRealm && newRealm == nil { return false }
        if let newRealm, newRealm != realm {
            realm = newRealm
            key = STUNCredentials.longTermKey(username: configuration.username, realm: newRealm,
                                              password: configuration.password)
        }
        nonce = newNonce
        return realm != nil
    }

    // MARK: - Outcomes

    private mutating func succeeded(_ purpose: Transaction.Purpose, _ message: STUNMessage, now: Int64) {
        switch purpose {
        case .allocate:
            guard state == .allocating else { return }
            guard let relayed = (try? message.xorAddresses(.xorRelayedAddress))?.first else {
                fail(.badResponse("Allocate success without XOR-RELAYED-ADDRESS"))
                return
            }
            let mapped = try? message.xorAddress(.xorMappedAddress)
            let lifetime = (try? message.lifetime()) ?? 600
            guard lifetime > 0 else {
                fail(.badResponse("Allocate success with LIFETIME 0"))
                return
            }
            state = .allocated
            allocation = TURNAllocation(relayed: relayed, mapped: mapped, lifetime: lifetime)
            setLifetime(lifetime, now: now)
            output.append(.event(.allocated(relayed: relayed, mapped: mapped, lifetime: lifetime)))

        case .refresh(let requested):
            if requested == 0 {
                finishClose()
                return
            }
            guard state == .allocated else { return }
            refreshing = false
            let lifetime = (try? message.lifetime()) ?? requested ?? 600
            guard lifetime > 0 else {
                fail(.expired)
                return
            }
            allocation?.lifetime = lifetime
            setLifetime(lifetime, now: now)

        case .createPermission(let ip):
            guard state == .allocated, var permission = permissions[ip] else { return }
            let wasPending = permission.phase == .pending
            permission.phase = .active
            permission.refreshing = false
            permission.expiresAt = now + 300_000
            permission.refreshAt = now + configuration.permissionRefreshInterval
            let queue = permission.queue
            permission.queue = []
            permissions[ip] = permission
            if wasPending {
                for (peer, data) in queue {
                    queuedBytes -= data.readableBytes
                    deliver(data, to: peer, now: now)
                }
            }

        case .channelBind(let number, let address):
            guard state == .allocated, var peer = peers[address], peer.channel == number else { return }
            let wasBinding = peer.phase == .binding
            peer.phase = .bound
            peer.refreshing = false
            peer.expiresAt = now + 600_000
            peer.refreshAt = now + configuration.channelRefreshInterval
            peers[address] = peer
            // ChannelBind installs or refreshes the IP's permission as well (RFC 8656 §11).
            if var permission = permissions[address.ip], permission.phase == .active {
                permission.expiresAt = max(permission.expiresAt, now + 300_000)
                permissions[address.ip] = permission
            }
            if wasBinding { output.append(.event(.channelBound(peer: address, channel: number))) }
        }
    }

    private mutating func failed(_ purpose: Transaction.Purpose, _ error: TURNClientError, now: Int64) {
        switch purpose {
        case .allocate:
            if state == .allocating { fail(error) }
        case .refresh(let requested):
            if requested == 0 {
                finishClose()  // 437 included: the allocation is gone either way (RFC 8656 §7.3)
            } else if state == .allocated {
                fail(error)
            }
        case .createPermission(let ip):
            guard state == .allocated, var permission = permissions[ip] else { return }
            counters.sendDrops += permission.queue.count
            for item in permission.queue { queuedBytes -= item.data.readableBytes }
            permission.queue = []
            permission.phase = .failed
            permission.refreshing = false
            permission.retryAt = now + configuration.permissionRetryDelay
            permissions[ip] = permission
            output.append(.event(.permissionFailed(ip, error)))
        case .channelBind(let number, let address):
            // Send indications still work: the peer just never gets a channel.
            guard state == .allocated, var peer = peers[address], peer.channel == number else { return }
            peer.phase = .failed
            peer.refreshing = false
            peers[address] = peer
        }
    }

    private mutating func timedOut(_ purpose: Transaction.Purpose, now: Int64) {
        failed(purpose, .timeout(purpose.method), now: now)
    }

    private mutating func setLifetime(_ lifetime: UInt32, now: Int64) {
        let millis = Int64(lifetime) * 1000
        expiresAt = now + millis
        refreshAt = millis > 2 * configuration.refreshMargin ? expiresAt - configuration.refreshMargin : now + millis / 2
    }

    private mutating func fail(_ error: TURNClientError) {
        clearAll()
        state = .failed
        output.append(.event(.failed(error)))
    }

    private mutating func finishClose() {
        guard state == .closing else { return }
        clearAll()
        state = .closed
        output.append(.event(.closed))
    }

    private mutating func clearAll() {
        transactions.removeAll()
        for permission in permissions.values { counters.sendDrops += permission.queue.count }
        permissions.removeAll()
        peers.removeAll()
        peerByChannel.removeAll()
        queuedBytes = 0
        refreshing = false
        refreshAt = .max
        expiresAt = .max
    }

    // MARK: - The data path

    private mutating func sendData(_ data: ByteBuffer, to address: TransportAddress, now: Int64) {
        guard state == .allocated, let relayed = allocation?.relayed, relayed.ip.isIPv4 == address.ip.isIPv4,
              data.readableBytes <= configuration.maxPayload else {
            counters.sendDrops += 1
            return
        }
        let existing = permissions[address.ip]
        guard existing != nil || permissions.count < configuration.maxPermissions,
              ensurePeer(address, now: now) else {
            counters.sendDrops += 1
            return
        }
        var permission: Permission
        if let existing {
            permission = existing
        } else {
            permission = Permission(lastUsed: now)
            permissions[address.ip] = permission
            startTransaction(.createPermission(address.ip), now: now)
        }
        permission.lastUsed = now
        switch permission.phase {
        case .pending:
            if permission.queue.count < configuration.queuedPacketsPerPermission,
               queuedBytes + data.readableBytes <= configuration.queuedBytesLimit {
                permission.queue.append((address, data))
                queuedBytes += data.readableBytes
            } else {
                counters.queueDrops += 1
            }
            permissions[address.ip] = permission
        case .failed:
            counters.sendDrops += 1
        case .active:
            permissions[address.ip] = permission
            deliver(data, to: address, now: now)
        }
    }

    /// Sends over an installed permission: ChannelData on a live channel, else a Send
    /// indication (and a ChannelBind for next time).
    private mutating func deliver(_ data: ByteBuffer, to address: TransportAddress, now: Int64) {
        guard var peer = peers[address] else { return }
        peer.lastUsed = now
        if peer.phase == .bound && peer.expiresAt > now {
            peers[address] = peer
            var buffer = ByteBuffer()
            buffer.reserveCapacity(ChannelData.headerLength + data.readableBytes + 3)
            ChannelData(channel: peer.channel, data: data).write(to: &buffer, padded: configuration.transport.isStream)
            counters.channelDataSent += 1
            output.append(.send(buffer))
            return
        }
        let id = TransactionID.random()
        let indication = STUNMessage(.send, .indication, transactionID: id, attributes: [
            .xorAddress(.xorPeerAddress, address, transactionID: id),
            STUNAttribute(type: .data, value: Array(data.readableBytesView)),
        ])
        counters.sendIndications += 1
        output.append(.send(ByteBuffer(bytes: indication.encoded(fingerprint: true))))
        if configuration.useChannels && peer.phase == .unbound {
            peer.phase = .binding
            peers[address] = peer
            startTransaction(.channelBind(peer.channel, address), now: now)
        } else {
            peers[address] = peer
        }
    }

    /// The peer's entry, made with a channel number if there is room (evicting one that has
    /// been quiet long enough for its number to be free again).
    private mutating func ensurePeer(_ address: TransportAddress, now: Int64) -> Bool {
        if peers[address] != nil { return true }
        if peers.count >= configuration.maxPeers {
            let quiet = peers.first { _, peer in
                (peer.phase == .unbound || peer.phase == .failed)
                    && now - max(peer.lastUsed, peer.lapsedAt) >= 300_000
            }
            guard let (evicted, entry) = quiet else { return false }
            peers[evicted] = nil
            peerByChannel[entry.channel] = nil
            freeChannels.append(entry.channel)
        }
        let number: UInt16
        if let free = freeChannels.popLast() {
            number = free
        } else if nextChannel <= ChannelData.channelRange.upperBound {
            number = nextChannel
            nextChannel += 1
        } else {
            return false
        }
        peers[address] = Peer(channel: number, lastUsed: now)
        peerByChannel[number] = address
        return true
    }

    private mutating func markUsed(_ address: TransportAddress, now: Int64) {
        permissions[address.ip]?.lastUsed = now
        peers[address]?.lastUsed = now
    }

    // MARK: - Requests

    private mutating func startTransaction(_ purpose: Transaction.Purpose, now: Int64, challenges: Int = 0,
                                           staleRetries: Int = 0) {
        let id = TransactionID.random()
        var attributes: [STUNAttribute]
        switch purpose {
        case .allocate:
            attributes = [.requestedTransport(TransportProtocolNumber.udp.rawValue)]
            if let lifetime = configuration.requestedLifetime { attributes.append(.lifetime(lifetime)) }
            if let family = configuration.requestedFamily {
                attributes.append(.addressFamily(.requestedAddressFamily, family))
            }
        case .refresh(let lifetime):
            attributes = lifetime.map { [.lifetime($0)] } ?? []
        case .createPermission(let ip):
            attributes = [.xorAddress(.xorPeerAddress, TransportAddress(ip: ip, port: 0), transactionID: id)]
        case .channelBind(let number, let peer):
            attributes = [.channelNumber(number), .xorAddress(.xorPeerAddress, peer, transactionID: id)]
        }
        var signingKey: [UInt8]?
        if let key, let realm, let nonce {
            attributes += [.text(.username, configuration.username), .text(.realm, realm), .text(.nonce, nonce)]
            signingKey = key
        }
        let message = STUNMessage(purpose.method, .request, transactionID: id, attributes: attributes)
        let bytes = ByteBuffer(bytes: message.encoded(integrityKey: signingKey, fingerprint: true))

        let stream = configuration.transport.isStream
        let rto = configuration.initialRTO
        var giveUpAt = now + configuration.streamTimeout
        if !stream {
            // Sends at 0, RTO, 3 RTO, ... (Rc in all), then Rm × RTO after the last.
            var wait: Int64 = 0, step = rto
            for _ in 1..<max(1, configuration.maxTransmissions) {
                wait += step
                step *= 2
            }
            giveUpAt = now + wait + configuration.lastWaitFactor * rto
        }
        transactions[id] = Transaction(
            purpose: purpose, bytes: bytes, key: signingKey, rto: rto,
            nextSend: stream || configuration.maxTransmissions <= 1 ? .max : now + rto,
            giveUpAt: giveUpAt, challenges: challenges, staleRetries: staleRetries)
        output.append(.send(bytes))
    }

    private mutating func takeOutput() -> [TURNClientAction] {
        defer { output.removeAll(keepingCapacity: true) }
        return output
    }
}
