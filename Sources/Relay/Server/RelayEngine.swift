import Datagram
import Foundation
import Logging
#if canImport(Glibc)
import Glibc
#endif
import NIOCore
import NIOPosix
import Store
import Wire

/// RelayEngine carries out TURNCore's decisions with sockets: it owns the listeners, the
/// relayed sockets and the TCP/TLS connections, all on one event loop, so the packet path
/// needs no locks and never awaits.
final class RelayEngine {
    let loop: any EventLoop
    let core: TURNCore
    let configuration: RelayConfiguration
    let logger: Logger
    let events: RelayEvents

    /// UDP listeners by their local address.
    var udpListeners: [TransportAddress: UDPEndpoint] = [:]
    /// TCP/TLS client connections by five-tuple.
    var connections: [FiveTuple: any Channel] = [:]
    /// Which TCP/TLS connections are admitted and when they time out.
    var connectionPolicy: ConnectionPolicy
    /// The sockets and addresses of each allocation, by allocation ID.
    var bindings: [Int: RelayBinding] = [:]
    /// Ports this engine holds, per relay IP, so picking a port rarely collides.
    var portsInUse: [IPAddress: Set<UInt16>] = [:]
    /// EVEN-PORT R-bit reservations: the bound socket for the next port, by token.
    var reservations: [UInt64: Reservation] = [:]
    /// TCP/TLS channels with writes waiting for one flush at the end of a read batch.
    private var pendingFlush: [ObjectIdentifier: any Channel] = [:]
    /// UDP datagrams waiting for the end of a read batch, per socket, in order.
    private var pendingDatagrams: [ObjectIdentifier: (socket: UDPSocket, datagrams: [OutgoingDatagram])] = [:]
    private let batcher = DatagramBatcher()
    private let sender = DatagramSender()

    struct Reservation {
        var endpoint: UDPEndpoint
        var address: TransportAddress
        var expiresAt: Int64
    }

    init(loop: any EventLoop, configuration: RelayConfiguration, logger: Logger, events: RelayEvents) {
        self.loop = loop
        self.configuration = configuration
        self.core = TURNCore(configuration: configuration)
        self.connectionPolicy = ConnectionPolicy(limits: .init(
            authTimeout: configuration.connectionAuthTimeout, idleTimeout: configuration.connectionIdleTimeout,
            perSource: configuration.connectionsPerSource, total: configuration.connectionsTotal))
        self.logger = logger
        self.events = events
    }

    var time: RelayTime {
        RelayTime(millis: Int64(NIODeadline.now().uptimeNanoseconds / 1_000_000),
                  unix: Int64(Date().timeIntervalSince1970))
    }

    // MARK: - Sending

    func markForFlush(_ channel: any Channel) {
        pendingFlush[ObjectIdentifier(channel)] = channel
    }

    /// Queues a datagram on a UDP socket until the end of the read batch.
    func send(_ bytes: ByteBuffer, on socket: UDPSocket, to address: TransportAddress, name: SocketName) {
        let datagram = OutgoingDatagram(bytes: bytes, to: address, name: name)
        pendingDatagrams[ObjectIdentifier(socket), default: (socket, [])].datagrams.append(datagram)
    }

    /// Sends what the read batch queued: per UDP socket with sendmmsg, a run of same-size
    /// datagrams to one destination as one segmentation-offload message; TCP/TLS flushed.
    func flushPending() {
        if !pendingDatagrams.isEmpty {
            for (socket, datagrams) in pendingDatagrams.values {
                batcher.plan(datagrams, maxSegments: socket.segmentation ? DatagramBatcher.maxSegments : 1)
                core.counters.sendErrors += sender.send(batcher, on: socket)
                batcher.clear()
            }
            pendingDatagrams.removeAll(keepingCapacity: true)
        }
        guard !pendingFlush.isEmpty else { return }
        for channel in pendingFlush.values { channel.flush() }
        pendingFlush.removeAll(keepingCapacity: true)
    }

    /// Sends STUN bytes (a response or Data indication) to a client.
    func sendToClient(_ fiveTuple: FiveTuple, bytes: [UInt8]) {
        var buffer = ByteBufferAllocator().buffer(capacity: bytes.count)
        buffer.writeBytes(bytes)
        sendToClient(fiveTuple, buffer: buffer)
    }

    func sendToClient(_ fiveTuple: FiveTuple, buffer: ByteBuffer, name: SocketName? = nil) {
        switch fiveTuple.transport {
        case .udp:
            guard let listener = udpListeners[fiveTuple.server] else { return }
            send(buffer, on: listener.socket, to: fiveTuple.client, name: name ?? SocketName(fiveTuple.client))
        case .tcp, .tls:
            guard let connection = connections[fiveTuple] else { return }
            connection.write(buffer, promise: nil)
            markForFlush(connection)
        }
    }

    // MARK: - Client messages

    /// A STUN message from a client, over any transport.
    func handleSTUN(_ buffer: ByteBuffer, from fiveTuple: FiveTuple) {
        let message: STUNMessage
        do {
            message = try STUNMessage(datagram: buffer)
        } catch {
            core.counters.malformed += 1
            logger.trace("dropped malformed STUN", metadata: ["from": "\(fiveTuple)", "error": "\(error)"])
            return
        }
        let now = time
        let outcome = core.handle(message, from: fiveTuple, time: now)
        if fiveTuple.transport != .udp, core.lastAuthenticated == fiveTuple {
            connectionPolicy.authenticated(fiveTuple, nowMillis: now.millis)
        }
        switch outcome {
        case .none:
            break
        case .respond(let bytes):
            sendToClient(fiveTuple, bytes: bytes)
        case .respondAndEnd(let bytes, let allocation, let reason):
            sendToClient(fiveTuple, bytes: bytes)
            end(allocation, reason: reason, now: now)
        case .allocate(let plan):
            bindRelay(plan)
        case .sendToPeer(let allocation, let index, let peer, let payload):
            guard let binding = bindings[allocation.id], index < binding.endpoints.count else { return }
            var buffer = ByteBufferAllocator().buffer(capacity: payload.count)
            buffer.writeBytes(payload)
            send(buffer, on: binding.endpoints[index].socket, to: peer, name: binding.peerName(peer))
        }
    }

    /// A ChannelData message from a client: the data is a slice of what was read, sent on
    /// without copying.
    func handleChannelData(_ channelData: ChannelData, from fiveTuple: FiveTuple) {
        guard let route = core.clientChannelData(
            channel: channelData.channel, length: channelData.data.readableBytes, from: fiveTuple,
            nowMillis: Int64(NIODeadline.now().uptimeNanoseconds / 1_000_000))
        else { return }
        guard let binding = bindings[route.allocation.id], route.relayIndex < binding.endpoints.count else { return }
        send(channelData.data, on: binding.endpoints[route.relayIndex].socket, to: route.peer, name: binding.peerName(route.peer))
    }

    // MARK: - Peer data

    /// A datagram from a peer arrived at a relayed socket.
    func handlePeerDatagram(_ envelope: AddressedEnvelope<ByteBuffer>, binding: RelayBinding) {
        guard let peer = TransportAddress(envelope.remoteAddress) else { return }
        let allocation = binding.allocation
        let length = envelope.data.readableBytes
        guard let delivery = core.peerData(
            to: allocation, from: peer, length: length,
            nowMillis: Int64(NIODeadline.now().uptimeNanoseconds / 1_000_000))
        else { return }
        let fiveTuple = allocation.fiveTuple
        switch delivery {
        case .channel(let number):
            let stream = fiveTuple.transport != .udp
            var buffer = ByteBufferAllocator().buffer(capacity: 4 + length + 3)
            ChannelData.writeHeader(channel: number, length: length, to: &buffer)
            buffer.writeImmutableBuffer(envelope.data)
            if stream { buffer.writeRepeatingByte(0, count: (4 - length % 4) % 4) }
            sendToClient(fiveTuple, buffer: buffer, name: binding.clientName)
        case .dataIndication:
            sendToClient(fiveTuple, bytes: TURNCore.dataIndication(from: peer, payload: envelope.data))
        }
    }

    // MARK: - Allocating relayed sockets

    private typealias Bound = (endpoint: UDPEndpoint, address: TransportAddress)

    private func bindRelay(_ plan: AllocationPlan) {
        if let token = plan.reservationToken {
            guard let reservation = reservations.removeValue(forKey: token), reservation.expiresAt > time.millis else {
                finishAllocation(plan, failure: .insufficientCapacity)
                return
            }
            installAllocation(plan, bound: [(reservation.endpoint, reservation.address)], reservationToken: nil)
            return
        }
        var bound: [Bound] = []
        var reservationToken: UInt64?
        var remaining = plan.families.count
        var failed = false
        for (index, family) in plan.families.enumerated() {
            let ip = family == .ipv4 ? configuration.relayIPv4! : configuration.relayIPv6!
            let evenPort = index == 0 && plan.evenPort
            bindRelayed(ip: ip, evenPort: evenPort, reserveNext: evenPort && plan.reserveNext) { result in
                switch result {
                case .success(let (main, reserved)):
                    bound.append(main)
                    if let reserved {
                        let token = UInt64.random(in: 1...UInt64.max)
                        reservationToken = token
                        self.reservations[token] = Reservation(
                            endpoint: reserved.endpoint, address: reserved.address,
                            expiresAt: self.time.millis + Int64(self.configuration.reservationLifetime) * 1000)
                    }
                case .failure(let error):
                    failed = true
                    self.logger.warning("cannot bind a relayed socket",
                                        metadata: ["client": "\(plan.fiveTuple)", "error": "\(error)"])
                }
                remaining -= 1
                guard remaining == 0 else { return }
                if failed {
                    for item in bound { self.release(item.endpoint, address: item.address) }
                    self.finishAllocation(plan, failure: .insufficientCapacity)
                } else {
                    // Keep the order of families (IPv4 first) whatever order the binds finished in.
                    bound.sort { $0.address.ip.isIPv4 && !$1.address.ip.isIPv4 }
                    self.installAllocation(plan, bound: bound, reservationToken: reservationToken)
                }
            }
        }
    }

    private func installAllocation(_ plan: AllocationPlan, bound: [Bound], reservationToken: UInt64?) {
        let (allocation, response) = core.completeAllocation(
            plan, relayed: bound.map(\.address), reservationToken: reservationToken, time: time)
        let binding = RelayBinding(allocation: allocation, endpoints: bound.map(\.endpoint))
        bindings[allocation.id] = binding
        if plan.fiveTuple.transport != .udp { connectionPolicy.allocationStarted(plan.fiveTuple) }
        let dontFragment = plan.request.contains(.dontFragment)
        for item in bound {
            do {
                guard item.endpoint.channel.isActive else {  // closed by NIO while reserved
                    item.endpoint.socket.stopWriting()
                    continue
                }
                try item.endpoint.channel.pipeline.syncOperations.addHandler(
                    RelaySocketHandler(engine: self, binding: binding, socket: item.endpoint.socket))
                if dontFragment { try Self.setDontFragment(item.endpoint.channel, ipv4: item.address.ip.isIPv4) }
            } catch {
                logger.error("cannot set up a relayed socket", metadata: ["error": "\(error)"])
            }
        }
        sendToClient(plan.fiveTuple, bytes: response)
        flushPending()
        events.allocationStarted(allocation)
        logger.debug("allocated", metadata: [
            "client": "\(plan.fiveTuple)", "user": "\(plan.username)",
            "relayed": "\(allocation.relayed.map(\.description).joined(separator: ","))",
        ])
    }

    /// DONT-FRAGMENT (RFC 8656 §7.2): the relayed socket sends with the DF bit set (Linux
    /// IP_MTU_DISCOVER / IPV6_MTU_DISCOVER = PMTUDISC_DO).
    private static func setDontFragment(_ channel: any Channel, ipv4: Bool) throws {
        let option = ipv4
            ? ChannelOptions.socket(SocketOptionLevel(IPPROTO_IP), SocketOptionName(IP_MTU_DISCOVER))
            : ChannelOptions.socket(SocketOptionLevel(IPPROTO_IPV6), SocketOptionName(IPV6_MTU_DISCOVER))
        try channel.syncOptions?.setOption(option, value: SocketOptionValue(ipv4 ? IP_PMTUDISC_DO : IPV6_PMTUDISC_DO))
    }

    private func finishAllocation(_ plan: AllocationPlan, failure: STUNErrorCode) {
        sendToClient(plan.fiveTuple, bytes: core.failAllocation(plan, failure))
        flushPending()
    }

    /// Binds a relayed socket on a random free port of the range (an even one for
    /// EVEN-PORT, with the odd one above it also bound when `reserveNext`), retrying ports
    /// the OS says are taken.
    private func bindRelayed(ip: IPAddress, evenPort: Bool, reserveNext: Bool, attempt: Int = 0,
                             completion: @escaping (Result<(Bound, Bound?), any Error>) -> Void) {
        guard let port = pickPort(ip: ip, even: evenPort) else {
            completion(.failure(RelayError.noFreePort))
            return
        }
        let retry = { (error: any Error) in
            if attempt < 20 {
                self.bindRelayed(ip: ip, evenPort: evenPort, reserveNext: reserveNext, attempt: attempt + 1,
                                 completion: completion)
            } else {
                completion(.failure(error))
            }
        }
        bindSocket(ip: ip, port: port) { first in
            switch first {
            case .failure(let error):
                retry(error)
            case .success(let main):
                guard reserveNext else {
                    completion(.success((main, nil)))
                    return
                }
                self.bindSocket(ip: ip, port: port + 1) { second in
                    switch second {
                    case .success(let reserved):
                        completion(.success((main, reserved)))
                    case .failure(let error):
                        self.release(main.endpoint, address: main.address)
                        retry(error)
                    }
                }
            }
        }
    }

    private func pickPort(ip: IPAddress, even: Bool) -> UInt16? {
        let range = configuration.relayPorts
        let used = portsInUse[ip, default: []]
        for _ in 0..<64 {
            var port = UInt16.random(in: range)
            if even {
                port &= ~1
                guard port >= range.lowerBound, port < range.upperBound, !used.contains(port + 1) else { continue }
            }
            if !used.contains(port) { return port }
        }
        return nil
    }

    private func bindSocket(ip: IPAddress, port: UInt16, completion: @escaping (Result<Bound, any Error>) -> Void) {
        let address = TransportAddress(ip: ip, port: port)
        let socket: UDPSocket
        do {
            // Not SO_REUSEADDR: a relayed port must be this allocation's alone.
            socket = try UDPSocket(address: address.socketAddress, reuseAddress: false)
        } catch {
            completion(.failure(error))
            return
        }
        portsInUse[ip, default: []].insert(port)
        DatagramBootstrap(group: loop)
            // One datagram per read (up to 4 KiB): NIO keeps ~340 bytes of headers per message
            // per channel for vector reads, too much for a socket per allocation.
            .channelOption(.recvAllocator, value: FixedSizeRecvByteBufferAllocator(capacity: 4096))
            // No handler yet: RelaySocketHandler (added when the allocation is installed) reads
            // it and stops the writes when NIO closes it; nothing writes to it before that.
            .withBoundSocket(socket.handOverToNIO())
            .assumeIsolated()
            .whenComplete { result in
                switch result {
                case .success(let channel):
                    completion(.success((UDPEndpoint(channel: channel, socket: socket), address)))
                case .failure(let error):
                    socket.stopWriting()
                    self.portsInUse[ip]?.remove(port)
                    completion(.failure(error))
                }
            }
    }

    func release(_ endpoint: UDPEndpoint, address: TransportAddress) {
        endpoint.socket.stopWriting()
        endpoint.channel.close(promise: nil)
        portsInUse[address.ip]?.remove(address.port)
    }

    // MARK: - Ending allocations

    /// Called every second: ends expired allocations, drops expired reservations.
    func tick() {
        let now = time
        for (allocation, reason) in core.expire(time: now) {
            end(allocation, reason: reason, now: now)
        }
        for (token, reservation) in reservations where reservation.expiresAt <= now.millis {
            reservations[token] = nil
            release(reservation.endpoint, address: reservation.address)
        }
        for id in core.refreshed {
            if let binding = bindings[id] { events.allocationRefreshed(binding.allocation) }
        }
        core.refreshed.removeAll()
    }

    func end(_ allocation: Allocation, reason: TURNCore.EndReason, now: RelayTime) {
        guard let binding = bindings.removeValue(forKey: allocation.id) else { return }
        for (endpoint, address) in zip(binding.endpoints, allocation.relayed) {
            release(endpoint, address: address)
        }
        events.allocationEnded(allocation, reason: reason, at: now.unix)
        if allocation.fiveTuple.transport != .udp {
            connectionPolicy.allocationEnded(allocation.fiveTuple, nowMillis: now.millis)
        }
        logger.debug("allocation ended", metadata: ["client": "\(allocation.fiveTuple)", "reason": "\(reason.rawValue)"])
    }

    // MARK: - TCP/TLS connections

    /// A TCP/TLS connection was accepted: false when a cap says it must be closed at once.
    func admit(_ fiveTuple: FiveTuple) -> Bool {
        guard let refusal = connectionPolicy.admit(fiveTuple, nowMillis: time.millis) else { return true }
        logger.trace("connection refused", metadata: ["client": "\(fiveTuple)", "reason": "\(refusal.rawValue)"])
        return false
    }

    /// Closes the connections whose deadline has come (no authenticated request in time, or
    /// idle without an allocation); their handlers report them closed.
    func sweepConnections() {
        for (fiveTuple, reason) in connectionPolicy.expire(nowMillis: time.millis) {
            logger.debug("closing connection", metadata: ["client": "\(fiveTuple)", "reason": "\(reason.rawValue)"])
            connections[fiveTuple]?.close(promise: nil)
        }
    }

    /// A TCP/TLS client went away: its allocation goes with it.
    func connectionClosed(_ fiveTuple: FiveTuple) {
        connectionPolicy.closed(fiveTuple)
        connections[fiveTuple] = nil
        if let (allocation, reason) = core.disconnect(fiveTuple) {
            end(allocation, reason: reason, now: time)
        }
    }

    /// After draining: end everything that is left.
    func endAll() {
        let now = time
        for allocation in core.removeAll() { end(allocation, reason: .shutdown, now: now) }
        for reservation in reservations.values { release(reservation.endpoint, address: reservation.address) }
        reservations.removeAll()
    }
}

/// UDPEndpoint is a UDP socket the relay owns: NIO's channel reads it, the engine writes it.
struct UDPEndpoint {
    let channel: any Channel
    let socket: UDPSocket
}

/// RelayBinding ties an allocation to its relayed sockets.
final class RelayBinding {
    let allocation: Allocation
    let endpoints: [UDPEndpoint]
    /// The client's address as the kernel takes it, built once.
    let clientName: SocketName
    /// Peer addresses built once per peer rather than per packet.
    private var peerNames: [TransportAddress: SocketName] = [:]

    init(allocation: Allocation, endpoints: [UDPEndpoint]) {
        self.allocation = allocation
        self.endpoints = endpoints
        clientName = SocketName(allocation.fiveTuple.client)
    }

    func peerName(_ peer: TransportAddress) -> SocketName {
        if let cached = peerNames[peer] { return cached }
        let name = SocketName(peer)
        if peerNames.count > 64 { peerNames.removeAll() }
        peerNames[peer] = name
        return name
    }
}

enum RelayError: Error {
    case noFreePort
    /// A TCP/TLS connection over a cap (`ConnectionPolicy`), closed at accept.
    case connectionRefused
}

@available(*, unavailable)
extension RelayEngine: Sendable {}
@available(*, unavailable)
extension RelayBinding: Sendable {}
@available(*, unavailable)
extension UDPEndpoint: Sendable {}
