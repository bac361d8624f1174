import FuzzSupport
import NIOCore
import Wire
@testable import Relay

/// TURN through the relay's state machine, as RelayEngine drives it: the input is a program of
/// STUN requests and indications (with valid MESSAGE-INTEGRITY for known users, or not),
/// ChannelData, peer datagrams, bind completions and failures, clock moves, expiry and
/// disconnects, from a few 5-tuples. Checked: nothing traps; every answer parses, answers its
/// request and, when authenticated, carries integrity with the user's key; the core's
/// allocations are exactly the ones the harness saw created and not ended; what it relays
/// goes only where a live permission and channel allow.
@_cdecl("LLVMFuzzerTestOneInput")
public func fuzz(_ start: UnsafeRawPointer, _ count: Int) -> CInt {
    var input = FuzzInput(start, count)
    let run = TURNRun(&input)
    while !input.isEmpty { run.step(&input) }
    return 0
}

final class TURNRun {
    static let clients: [FiveTuple] = [
        FiveTuple(client: TransportAddress(ip: IPAddress("198.51.100.10")!, port: 40000),
                  server: TransportAddress(ip: IPAddress("198.51.100.1")!, port: 3478), transport: .udp),
        FiveTuple(client: TransportAddress(ip: IPAddress("198.51.100.10")!, port: 40001),
                  server: TransportAddress(ip: IPAddress("198.51.100.1")!, port: 3478), transport: .tcp),
        FiveTuple(client: TransportAddress(ip: IPAddress("2001:db8::10")!, port: 40000),
                  server: TransportAddress(ip: IPAddress("2001:db8::1")!, port: 3478), transport: .udp),
        FiveTuple(client: TransportAddress(ip: IPAddress("203.0.113.9")!, port: 5000),
                  server: TransportAddress(ip: IPAddress("198.51.100.1")!, port: 3478), transport: .tls),
    ]
    /// Public peers, a denied one (loopback), and an IPv6 encoding of a denied IPv4 address.
    static let peers: [TransportAddress] = [
        TransportAddress(ip: IPAddress("203.0.113.50")!, port: 9000),
        TransportAddress(ip: IPAddress("203.0.113.50")!, port: 9001),
        TransportAddress(ip: IPAddress("203.0.113.51")!, port: 9000),
        TransportAddress(ip: IPAddress("2001:db8:1::50")!, port: 9000),
        TransportAddress(ip: IPAddress("127.0.0.1")!, port: 9000),
        TransportAddress(ip: IPAddress("::ffff:10.0.0.1")!, port: 9000),
    ]
    static let users = [("bob", "bob-password"), ("eve", "eve-password")]

    let core: TURNCore
    var time = RelayTime(millis: 5_000_000, unix: 1_800_000_000)
    /// What the harness saw created and not yet ended, by 5-tuple.
    var allocated: [FiveTuple: Allocation] = [:]
    /// Allocate requests the core handed to the "server" to bind, not yet completed.
    var plans: [AllocationPlan] = []
    var lastRequest: STUNMessage?
    var nextTransaction: UInt64 = 1
    var nextPort: UInt16 = 50000

    init(_ input: inout FuzzInput) {
        let flags = input.byte()
        var configuration = RelayConfiguration()
        configuration.relayIPs = flags & 1 == 0 ? [IPAddress("198.51.100.1")!, IPAddress("2001:db8::1")!]
            : [IPAddress("198.51.100.1")!]
        configuration.restSecret = "rest-secret"
        configuration.userQuota = Int(flags >> 1 & 3)
        configuration.totalQuota = flags & 8 == 0 ? 50_000 : 2
        configuration.bandwidthLimit = flags & 16 == 0 ? 0 : 1000
        configuration.authFailureBurst = flags & 32 == 0 ? 20 : 1
        core = TURNCore(configuration: configuration)
        for (user, password) in Self.users {
            core.staticUsers[user] = STUNCredentials.longTermKey(username: user, realm: configuration.realm, password: password)
        }
    }

    func step(_ input: inout FuzzInput) {
        switch input.byte() % 12 {
        case 0, 1, 2, 3: request(&input)
        case 4: sendIndication(&input)
        case 5: channelData(&input)
        case 6: peerData(&input)
        case 7:
            // Bind (or fail to bind) a waiting allocation's relayed sockets.
            guard !plans.isEmpty else { return }
            let plan = plans.remove(at: input.below(plans.count))
            if input.byte() & 7 == 0 {
                check(core.failAllocation(plan, .insufficientCapacity), answers: plan.request, key: plan.key)
            } else {
                complete(plan)
            }
        case 8:
            let seconds = input.bool() ? Int64(input.byte()) : Int64(input.u16())
            time.millis += seconds * 1000 + Int64(input.byte())
            time.unix += seconds
        case 9:
            for (allocation, reason) in core.expire(time: time) {
                guard reason == .expired, allocation.expiresAt <= time.millis,
                      allocated.removeValue(forKey: allocation.fiveTuple) === allocation else {
                    violated("expire ended \(allocation.fiveTuple) (\(reason)) that was not due or not held")
                }
            }
            checkModel()
        case 10:
            let fiveTuple = Self.clients[input.below(Self.clients.count)]
            if let (allocation, _) = core.disconnect(fiveTuple) {
                guard allocated.removeValue(forKey: fiveTuple) === allocation else { violated("disconnect ended an unknown allocation") }
            }
            plans.removeAll { $0.fiveTuple == fiveTuple }
            checkModel()
        default:
            // Bytes as they come, parsed as the server does.
            let fiveTuple = Self.clients[input.below(Self.clients.count)]
            guard let message = try? STUNMessage(datagram: ByteBuffer(bytes: input.blob())) else { return }
            handle(message, from: fiveTuple, key: nil)
        }
    }

    // MARK: - Requests

    func request(_ input: inout FuzzInput) {
        let fiveTuple = Self.clients[input.below(Self.clients.count)]
        let methods: [STUNMethod] = [.allocate, .refresh, .createPermission, .channelBind, .binding, .send, .connect]
        let method = methods[input.below(methods.count)]
        let retransmit = input.byte() & 15 == 0
        let transactionID: TransactionID
        if retransmit, let lastRequest {
            transactionID = lastRequest.transactionID
        } else {
            transactionID = TransactionID(high: 0x5357_4200, low: nextTransaction)
            nextTransaction += 1
        }
        var attributes: [STUNAttribute] = []
        let count = input.below(6)
        for _ in 0..<count {
            switch input.byte() % 14 {
            case 0: attributes.append(.requestedTransport(input.bool() ? 17 : input.byte()))
            case 1: attributes.append(.lifetime(input.bool() ? UInt32(input.u16()) : input.u32()))
            case 2: attributes.append(.lifetime(0))
            case 3: attributes.append(.evenPort(reserveNext: input.bool()))
            case 4: attributes.append(.uint64(.reservationToken, UInt64(input.u32())))
            case 5: attributes.append(.addressFamily(.requestedAddressFamily, input.bool() ? .ipv4 : .ipv6))
            case 6: attributes.append(.addressFamily(.additionalAddressFamily, input.bool() ? .ipv6 : .ipv4))
            case 7, 8:
                let peer = Self.peers[input.below(Self.peers.count)]
                attributes.append(.xorAddress(.xorPeerAddress, peer, transactionID: transactionID))
            case 9: attributes.append(.channelNumber(input.bool() ? 0x4000 + UInt16(input.byte() & 7) : input.u16()))
            case 10: attributes.append(STUNAttribute(type: .dontFragment, value: []))
            case 11: attributes.append(STUNAttribute(type: .data, value: input.blob(limit: 64)))
            case 12: attributes.append(STUNAttribute(type: STUNAttributeType(rawValue: input.u16()), value: input.blob(limit: 16)))
            default: attributes.append(.requestedTransport(17))
            }
        }
        if method == .allocate, input.byte() & 3 != 0 { attributes.insert(.requestedTransport(17), at: 0) }

        // Credentials: a known user with a valid nonce (most of the time), a REST user, or faults.
        let credentials = input.byte()
        let realm = core.configuration.realm
        var username = Self.users[Int(credentials >> 4) % Self.users.count].0
        var password = Self.users[Int(credentials >> 4) % Self.users.count].1
        var nonce = core.nonces.make(for: fiveTuple.client.ip, now: time.unix)
        var key: [UInt8]?
        switch credentials & 7 {
        case 0: break  // none: a challenge
        case 1: password = "wrong"
        case 2: nonce = core.nonces.make(for: fiveTuple.client.ip, now: time.unix - 700)  // stale
        case 3:
            let credential = TURNRESTCredential(secret: "rest-secret", name: "alice",
                                                expiry: time.unix + Int64(Int8(bitPattern: input.byte())) * 10)
            (username, password) = (credential.username, credential.password)
        case 4: nonce = "bogus-nonce"
        default: break
        }
        if credentials & 7 != 0 {
            attributes += [.text(.username, username), .text(.realm, realm), .text(.nonce, nonce)]
            key = STUNCredentials.longTermKey(username: username, realm: realm, password: password)
        }
        let messageClass: STUNClass = method == .send ? .indication : .request
        let message = STUNMessage(method, messageClass, transactionID: transactionID, attributes: attributes)
        let sha256 = credentials & 8 != 0
        let bytes = message.encoded(integrityKey: sha256 ? nil : key, integritySHA256Key: sha256 ? key : nil,
                                    fingerprint: input.bool())
        guard let parsed = try? STUNMessage(bytes: bytes) else { violated("a request the harness wrote does not parse") }
        lastRequest = parsed
        // The key a success answer must carry: the right one only when the credentials were.
        handle(parsed, from: fiveTuple, key: credentials & 7 == 3 || credentials & 7 >= 5 ? key : nil)
    }

    func sendIndication(_ input: inout FuzzInput) {
        let fiveTuple = Self.clients[input.below(Self.clients.count)]
        let id = TransactionID(high: 1, low: UInt64(input.u32()))
        var attributes: [STUNAttribute] = []
        if input.byte() & 7 != 0 {
            attributes.append(.xorAddress(.xorPeerAddress, Self.peers[input.below(Self.peers.count)], transactionID: id))
        }
        if input.byte() & 7 != 0 { attributes.append(STUNAttribute(type: .data, value: input.blob(limit: 64))) }
        handle(STUNMessage(.send, .indication, transactionID: id, attributes: attributes), from: fiveTuple, key: nil)
    }

    /// Hands a message to the core as RelayEngine.handleSTUN does, and checks the outcome.
    func handle(_ message: STUNMessage, from fiveTuple: FiveTuple, key: [UInt8]?) {
        // A retransmitted Allocate is answered with the response already sent (RFC 8656 §7.2),
        // under the key of the allocation's user.
        // It is the bytes sent before: FINGERPRINT as the first request had it.
        var key = key
        var replayed = false
        if message.type == STUNMessageType(method: .allocate, class: .request), let allocation = allocated[fiveTuple],
           allocation.lastTransaction == message.transactionID, key != nil {
            key = allocation.key
            replayed = true
        }
        switch core.handle(message, from: fiveTuple, time: time) {
        case .none:
            break
        case .respond(let bytes):
            check(bytes, answers: message, key: key, replayed: replayed)
        case .respondAndEnd(let bytes, let allocation, let reason):
            check(bytes, answers: message, key: key)
            guard reason == .refreshZero, allocation.fiveTuple == fiveTuple,
                  allocated.removeValue(forKey: fiveTuple) === allocation else {
                violated("a Refresh ended an allocation the client did not hold")
            }
        case .allocate(let plan):
            guard message.type.method == .allocate, plan.fiveTuple == fiveTuple, allocated[fiveTuple] == nil,
                  !plans.contains(where: { $0.fiveTuple == fiveTuple }) else {
                violated("an allocation plan for \(fiveTuple), which has one or is binding one")
            }
            guard !plan.families.isEmpty, plan.lifetime >= core.configuration.defaultLifetime,
                  plan.lifetime <= core.configuration.maximumLifetime else { violated("a plan out of bounds: \(plan)") }
            plans.append(plan)
        case .sendToPeer(let allocation, let index, let peer, _):
            guard allocated[fiveTuple] === allocation, index < allocation.relayed.count,
                  allocation.relayed[index].ip.isIPv4 == peer.ip.isIPv4,
                  allocation.hasPermission(for: peer.ip, nowMillis: time.millis),
                  core.configuration.filter.permits(peer.ip) else { violated("a Send indication relayed to \(peer)") }
        }
        checkModel()
    }

    func complete(_ plan: AllocationPlan) {
        let relayed = plan.families.map { family in
            defer { nextPort &+= 2 }
            return TransportAddress(ip: family == .ipv4 ? core.configuration.relayIPv4! : core.configuration.relayIPv6!,
                                    port: nextPort)
        }
        let (allocation, response) = core.completeAllocation(plan, relayed: relayed, reservationToken: nil, time: time)
        check(response, answers: plan.request, key: plan.key)
        allocated[plan.fiveTuple] = allocation
        checkModel()
    }

    // MARK: - The data path

    func channelData(_ input: inout FuzzInput) {
        let fiveTuple = Self.clients[input.below(Self.clients.count)]
        var bytes = ByteBuffer()
        let channel = input.bool() ? 0x4000 + UInt16(input.byte() & 7) : input.u16()
        let payload = input.blob(limit: 1400)
        ChannelData.writeHeader(channel: channel, length: payload.count, to: &bytes)
        bytes.writeBytes(payload)
        guard let message = try? ChannelData(datagram: bytes, range: TURNCore.channelRange) else { return }
        guard let route = core.clientChannelData(channel: message.channel, length: message.data.readableBytes,
                                                 from: fiveTuple, nowMillis: time.millis) else { return }
        guard allocated[fiveTuple] === route.allocation, route.relayIndex < route.allocation.relayed.count,
              route.allocation.peer(onChannel: message.channel, nowMillis: time.millis) == route.peer,
              route.allocation.hasPermission(for: route.peer.ip, nowMillis: time.millis) else {
            violated("ChannelData \(message.channel) relayed to \(route.peer) without a live channel and permission")
        }
    }

    func peerData(_ input: inout FuzzInput) {
        guard !allocated.isEmpty else { return }
        let allocation = allocated.values.sorted { $0.id < $1.id }[input.below(allocated.count)]
        let peer = Self.peers[input.below(Self.peers.count)]
        guard let delivery = core.peerData(to: allocation, from: peer, length: Int(input.u16() & 0x7FF),
                                           nowMillis: time.millis) else { return }
        guard allocation.hasPermission(for: peer.ip, nowMillis: time.millis) else { violated("peer data without permission") }
        if case .channel(let number) = delivery,
           allocation.peer(onChannel: number, nowMillis: time.millis) != peer {
            violated("peer data on channel \(number), not bound to \(peer)")
        }
    }

    // MARK: - Checks

    /// An answer parses, answers `request` (its method, its transaction), and a success to a
    /// request with good credentials carries integrity by that key.
    func check(_ bytes: [UInt8], answers request: STUNMessage, key: [UInt8]?, replayed: Bool = false) {
        guard let response = try? STUNMessage(bytes: bytes) else { violated("an answer that does not parse") }
        guard response.transactionID == request.transactionID, response.type.method == request.type.method,
              response.type.messageClass == .successResponse || response.type.messageClass == .errorResponse else {
            violated("\(response.type) does not answer \(request.type)")
        }
        if response.type.messageClass == .errorResponse, (try? response.errorCode()) == nil {
            violated("an error response without ERROR-CODE")
        }
        if response.type.messageClass == .successResponse, request.type.method != .binding {
            guard let key, response.verifyIntegrity(key: key) || response.verifyIntegritySHA256(key: key) else {
                violated("a \(request.type.method) success without the user's integrity")
            }
        }
        if request.contains(.fingerprint), !replayed, response.fingerprintIsValid != true { violated("no FINGERPRINT in the answer") }
    }

    /// The core holds exactly the allocations the harness saw created and not ended.
    func checkModel() {
        guard core.allocationCount == allocated.count,
              allocated.allSatisfy({ core.allocation(for: $0.key) === $0.value }) else {
            violated("the core holds \(core.allocationCount) allocations, the harness \(allocated.count)")
        }
    }
}

@_cdecl("TURNFuzz_main")
public func fuzzMain(_ argc: CInt, _ argv: UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>?) -> CInt {
    runFuzzer(argc, argv) { start, length in fuzz(start, length) }
}
