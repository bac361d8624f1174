import NIOCore
import Testing
import TURNClient
import Wire
@testable import Relay

/// RelayLoop wires a `TURNClientCore` to the relay's own `TURNCore`, in process, with one
/// clock: every frame the client emits is parsed and handed to the relay, and the relay's
/// answers go back into the client. Nothing touches a socket.
final class RelayLoop {
    let relay: TURNCore
    var client: TURNClientCore
    let fiveTuple: FiveTuple
    let relayed = TransportAddress(ip: IPAddress("192.0.2.1")!, port: 50000)
    let relayedIPv6 = TransportAddress(ip: IPAddress("2001:db8::1")!, port: 50000)
    private let startMillis: Int64 = 5_000_000
    private let startUnix: Int64 = 1_800_000_000
    var time: RelayTime

    /// Events the client reported, in order.
    var events: [TURNClientEvent] = []
    /// What the relay sent on to peers.
    var toPeer: [(peer: TransportAddress, payload: [UInt8])] = []
    /// Every frame the client sent to the server.
    var sent: [ByteBuffer] = []
    /// While true the relay's answers wait in `held` (a slow server).
    var holdReplies = false
    var held: [ByteBuffer] = []
    /// While true the client's frames are lost on the way (a lossy path).
    var dropRequests = false

    static let peer = TransportAddress(ip: IPAddress("203.0.113.5")!, port: 7000)

    init(transport: TURNClientTransport = .udp, username: String = "bob", password: String = "bob-password",
         relay: TURNCore? = nil, clientPort: UInt16 = 40000,
         configureRelay: (inout RelayConfiguration) -> Void = { _ in },
         configureClient: (inout TURNClientConfiguration) -> Void = { _ in }) {
        if let relay {
            self.relay = relay
        } else {
            var configuration = RelayConfiguration()
            configuration.relayIPs = [IPAddress("192.0.2.1")!]
            configureRelay(&configuration)
            let core = TURNCore(configuration: configuration)
            core.staticUsers["bob"] = STUNCredentials.longTermKey(
                username: "bob", realm: configuration.realm, password: "bob-password")
            self.relay = core
        }
        var clientConfiguration = TURNClientConfiguration(username: username, password: password, transport: transport)
        configureClient(&clientConfiguration)
        client = TURNClientCore(configuration: clientConfiguration)
        fiveTuple = FiveTuple(
            client: TransportAddress(ip: IPAddress("192.0.2.10")!, port: clientPort),
            server: TransportAddress(ip: IPAddress("192.0.2.1")!, port: 3478),
            transport: transport == .udp ? .udp : (transport == .tcp ? .tcp : .tls))
        time = RelayTime(millis: startMillis, unix: startUnix)
    }

    var now: Int64 { time.millis }
    var elapsed: Int64 { time.millis - startMillis }

    /// Moves the one clock (relay and client) and lets the client act on what is due.
    func advance(milliseconds: Int64) {
        time.millis += milliseconds
        time.unix = startUnix + (time.millis - startMillis) / 1000
        run(client.tick(now: now))
    }

    func start() { run(client.start(now: now)) }
    func send(_ payload: [UInt8], to peer: TransportAddress = RelayLoop.peer) {
        run(client.send(ByteBuffer(bytes: payload), to: peer, now: now))
    }
    func close() { run(client.close(now: now)) }

    /// Bytes arriving at the client as if from the server.
    func deliver(_ bytes: ByteBuffer) { run(client.receive(bytes, now: now)) }
    func deliver(_ bytes: [UInt8]) { deliver(ByteBuffer(bytes: bytes)) }

    func releaseHeld() {
        let replies = held
        held = []
        for reply in replies { deliver(reply) }
    }

    /// A datagram from `peer` to the relayed address: the relay decides how it reaches the
    /// client (ChannelData or a Data indication), or drops it (false).
    @discardableResult
    func peerSends(_ payload: [UInt8], from peer: TransportAddress = RelayLoop.peer) -> Bool {
        guard let allocation = relay.allocation(for: fiveTuple) else { return false }
        switch relay.peerData(to: allocation, from: peer, length: payload.count, nowMillis: now) {
        case nil:
            return false
        case .channel(let number):
            var frame = ByteBuffer()
            ChannelData(channel: number, data: ByteBuffer(bytes: payload)).write(to: &frame, padded: fiveTuple.transport != .udp)
            deliver(frame)
        case .dataIndication:
            deliver(TURNCore.dataIndication(from: peer, payload: ByteBuffer(bytes: payload)))
        }
        return true
    }

    func run(_ actions: [TURNClientAction]) {
        var pending = actions[...]
        while let action = pending.popFirst() {
            switch action {
            case .event(let event):
                events.append(event)
            case .send(let bytes):
                sent.append(bytes)
                if dropRequests { continue }
                for reply in serve(bytes) {
                    if holdReplies {
                        held.append(reply)
                    } else {
                        pending.append(contentsOf: client.receive(reply, now: now))
                    }
                }
            }
        }
    }

    /// The relay's side: what the server would do with one frame from the client.
    func serve(_ bytes: ByteBuffer) -> [ByteBuffer] {
        let first = bytes.getInteger(at: bytes.readerIndex, as: UInt8.self) ?? 0xFF
        if ChannelData.isMessage(firstByte: first) {
            guard let frame = try? ChannelData(datagram: bytes) else {
                Issue.record("the client sent a ChannelData frame that does not parse")
                return []
            }
            if let route = relay.clientChannelData(channel: frame.channel, length: frame.data.readableBytes,
                                                   from: fiveTuple, nowMillis: now) {
                toPeer.append((route.peer, Array(frame.data.readableBytesView)))
            }
            return []
        }
        guard let message = try? STUNMessage(datagram: bytes) else {
            Issue.record("the client sent bytes that are not STUN")
            return []
        }
        #expect(message.fingerprintIsValid == true, "every message from the client carries a FINGERPRINT")
        switch relay.handle(message, from: fiveTuple, time: time) {
        case .none:
            return []
        case .respond(let reply), .respondAndEnd(let reply, _, _):
            return [ByteBuffer(bytes: reply)]
        case .allocate(let plan):
            let addresses = plan.families.map { $0 == .ipv4 ? relayed : relayedIPv6 }
            let (_, reply) = relay.completeAllocation(plan, relayed: addresses, reservationToken: nil, time: time)
            return [ByteBuffer(bytes: reply)]
        case .sendToPeer(_, _, let peer, let payload):
            toPeer.append((peer, payload))
            return []
        }
    }

    /// The STUN messages the client sent, parsed (ChannelData left out).
    var sentMessages: [STUNMessage] {
        sent.compactMap { try? STUNMessage(datagram: $0) }
    }

    func sentRequests(_ method: STUNMethod) -> [STUNMessage] {
        sentMessages.filter { $0.type == STUNMessageType(method: method, class: .request) }
    }

    var sentChannelData: [ChannelData] {
        sent.compactMap { buffer in
            guard let first = buffer.getInteger(at: buffer.readerIndex, as: UInt8.self),
                  ChannelData.isMessage(firstByte: first) else { return nil }
            return try? ChannelData(datagram: buffer)
        }
    }

    /// The payloads delivered to the client as `.data` events, with their peers.
    var received: [(peer: TransportAddress, payload: [UInt8])] {
        events.compactMap {
            if case .data(let peer, let bytes) = $0 { return (peer, Array(bytes.readableBytesView)) }
            return nil
        }
    }
}
