import NIOCore
import Wire
@testable import Relay

/// Drives a TURNCore the way a client would, with a clock the test moves. The addresses are
/// plain values: nothing here touches a socket.
final class Harness {
    var core: TURNCore
    var time = RelayTime(millis: 5_000_000, unix: 1_800_000_000)
    var client = FiveTuple(
        client: TransportAddress(ip: IPAddress("192.0.2.10")!, port: 40000),
        server: TransportAddress(ip: IPAddress("192.0.2.1")!, port: 3478), transport: .udp)
    var username = "bob"
    var password = "bob-password"
    var nonce: String?

    init(configure: (inout RelayConfiguration) -> Void = { _ in }) {
        var configuration = RelayConfiguration()
        configuration.relayIPs = [IPAddress("192.0.2.1")!]
        configuration.restSecret = "rest-secret"
        configuration.filter = PeerAddressFilter()
        configure(&configuration)
        core = TURNCore(configuration: configuration)
        core.staticUsers["bob"] = key(for: "bob", password: "bob-password")
        core.staticUsers["eve"] = key(for: "eve", password: "eve-password")
    }

    func key(for username: String, password: String) -> [UInt8] {
        STUNCredentials.longTermKey(username: username, realm: core.configuration.realm, password: password)
    }

    var key: [UInt8] { key(for: username, password: password) }

    /// Moves the clock; the next request fetches a fresh nonce, as a client answering 438 would.
    func advance(seconds: Int64, keepNonce: Bool = false) {
        time.millis += seconds * 1000
        time.unix += seconds
        if !keepNonce { nonce = nil }
    }

    /// Sends bytes as they would arrive and returns the outcome.
    func send(_ message: STUNMessage, integrity: Bool = true, fingerprint: Bool = false,
                       from fiveTuple: FiveTuple? = nil) -> TURNCore.Outcome {
        var message = message
        if integrity {
            if nonce == nil { nonce = core.nonces.make(for: (fiveTuple ?? client).client.ip, now: time.unix) }
            message.attributes += [.text(.username, username), .text(.realm, core.configuration.realm),
                                   .text(.nonce, nonce!)]
        }
        let bytes = message.encoded(integrityKey: integrity ? key : nil, fingerprint: fingerprint)
        let parsed = try! STUNMessage(bytes: bytes)
        return core.handle(parsed, from: fiveTuple ?? client, time: time)
    }

    /// The response of a request that the core answers at once.
    func respond(_ message: STUNMessage, integrity: Bool = true, from fiveTuple: FiveTuple? = nil)
        -> STUNMessage?
    {
        switch send(message, integrity: integrity, from: fiveTuple) {
        case .respond(let bytes), .respondAndEnd(let bytes, _, _): return try! STUNMessage(bytes: bytes)
        default: return nil
        }
    }

    /// Allocates as the server would: the core's plan, then the relayed socket "bound" at `relayPort`.
    @discardableResult
    func allocate(_ attributes: [STUNAttribute] = [.requestedTransport(17)], relayPort: UInt16 = 50000,
                           from fiveTuple: FiveTuple? = nil) -> STUNMessage {
        let request = STUNMessage(.allocate, .request, attributes: attributes)
        switch send(request, from: fiveTuple) {
        case .allocate(let plan):
            let relayed = plan.families.map { family in
                TransportAddress(ip: family == .ipv4 ? core.configuration.relayIPv4! : core.configuration.relayIPv6!,
                                 port: relayPort)
            }
            let (_, bytes) = core.completeAllocation(plan, relayed: relayed, reservationToken: nil, time: time)
            return try! STUNMessage(bytes: bytes)
        case .respond(let bytes):
            return try! STUNMessage(bytes: bytes)
        default:
            fatalError("unexpected outcome")
        }
    }

    static func peer(_ text: String, _ port: UInt16 = 9000) -> TransportAddress {
        TransportAddress(ip: IPAddress(text)!, port: port)
    }

    static func xorPeer(_ peer: TransportAddress) -> (STUNMessage) -> STUNMessage {
        { message in
            var message = message
            message.attributes.append(.xorAddress(.xorPeerAddress, peer, transactionID: message.transactionID))
            return message
        }
    }

    func createPermissionRequest(_ peers: [TransportAddress]) -> STUNMessage {
        let id = TransactionID.random()
        return STUNMessage(.createPermission, .request, transactionID: id,
                           attributes: peers.map { .xorAddress(.xorPeerAddress, $0, transactionID: id) })
    }

    func channelBindRequest(_ channel: UInt16, _ peer: TransportAddress) -> STUNMessage {
        let id = TransactionID.random()
        return STUNMessage(.channelBind, .request, transactionID: id, attributes: [
            .channelNumber(channel), .xorAddress(.xorPeerAddress, peer, transactionID: id),
        ])
    }
}

extension STUNMessage {
    var errorCodeValue: Int? { (try? errorCode())??.code }
    var isSuccess: Bool { type.messageClass == .successResponse }
}
