import Wire
@testable import ICE

/// A seeded generator (SplitMix64) so transaction IDs and consent intervals repeat exactly.
struct SeededRandom: RandomNumberGenerator, Sendable {
    var state: UInt64
    init(_ seed: UInt64) { state = seed }
    mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }
}

/// Always returns the same value: consent intervals at an exact point of their range.
struct FixedRandom: RandomNumberGenerator, Sendable {
    var value: UInt64
    var counter: UInt64 = 0
    mutating func next() -> UInt64 {
        counter += 1
        return value
    }
}

func address(_ text: String, _ port: UInt16) -> TransportAddress {
    TransportAddress(ip: IPAddress(text)!, port: port)
}

let aliceCredentials = ICECredentials(ufrag: "alic", password: "alice-password-0123456789")
let bobCredentials = ICECredentials(ufrag: "bobb", password: "bob-password-abcdefghijklm")

/// A network of two agents (0 and 1), STUN servers, NATs and relays, with a latency and a
/// rule that drops datagrams. Time only moves through `run`.
final class FakeNetwork {
    struct Route {
        var agent: Int
        var base: ICEBase
        /// Port-restricted NAT: only sources the agent sent to from this base get in.
        var filtered: Bool
    }

    struct Datagram {
        var at: ICETime
        var sequence: Int
        var bytes: [UInt8]
        var from: TransportAddress
        var to: TransportAddress
    }

    var agents: [ICEAgent]
    var now = ICETime.zero
    var latency: Duration = .milliseconds(5)
    /// Where datagrams to an address go.
    var routes: [TransportAddress: Route] = [:]
    /// The source address the other side sees for (agent, base).
    var sources: [Int: [ICEBase: TransportAddress]] = [0: [:], 1: [:]]
    var symmetric: [Int: [ICEBase: IPAddress]] = [0: [:], 1: [:]]
    var symmetricMappings: [[TransportAddress]: TransportAddress] = [:]
    var nextMappedPort: UInt16 = 40000
    var stunServers: Set<TransportAddress> = []
    /// Return true to lose the datagram. Swift 6.3.1 (x86_64, debug) crashed with a misaligned
    /// load when such a closure captured a Set<TransportAddress> (UInt128 inside) and ran from an
    /// async test: compare ports here, not captured sets of addresses.
    var drop: (_ from: TransportAddress, _ to: TransportAddress) -> Bool = { _, _ in false }
    var inFlight: [Datagram] = []
    var sent: Set<[TransportAddress]> = []
    var sequence = 0
    /// Every action each agent took, with its time.
    var log: [(agent: Int, time: ICETime, action: ICEAction)] = []
    var delivered = 0

    init(_ first: ICEAgent, _ second: ICEAgent) {
        agents = [first, second]
    }

    /// Two agents with default credentials: 0 controlling (alice), 1 controlled (bob).
    static func pair(configure: (inout ICEConfiguration) -> Void = { _ in }) -> FakeNetwork {
        var configuration = ICEConfiguration()
        configure(&configuration)
        let alice = ICEAgent(role: .controlling, local: aliceCredentials, tieBreaker: 200,
                             configuration: configuration, random: SeededRandom(1), now: .zero)
        let bob = ICEAgent(role: .controlled, local: bobCredentials, tieBreaker: 100,
                           configuration: configuration, random: SeededRandom(2), now: .zero)
        return FakeNetwork(alice, bob)
    }

    /// A host socket for `agent`, reachable directly at `address`.
    func addHost(_ agent: Int, base: Int, _ host: TransportAddress, localPreference: UInt16 = 65535) {
        let base = ICEBase(id: base)
        routes[host] = Route(agent: agent, base: base, filtered: false)
        sources[agent]![base] = host
        agents[agent].addLocalCandidate(.host(host, base: base, localPreference: localPreference), now: now)
    }

    /// A host socket behind a port-restricted NAT that maps it to `mapped`.
    func addHostBehindNAT(_ agent: Int, base: Int, _ host: TransportAddress, mapped: TransportAddress) {
        let base = ICEBase(id: base)
        routes[mapped] = Route(agent: agent, base: base, filtered: true)
        sources[agent]![base] = mapped
        agents[agent].addLocalCandidate(.host(host, base: base), now: now)
    }

    /// A host socket behind a symmetric NAT (`masquerade random`): a new public port on
    /// `publicIP` for every destination, port-restricted filtering.
    func addHostBehindSymmetricNAT(_ agent: Int, base: Int, _ host: TransportAddress, publicIP: IPAddress) {
        let base = ICEBase(id: base)
        symmetric[agent]![base] = publicIP
        sources[agent]![base] = host
        agents[agent].addLocalCandidate(.host(host, base: base), now: now)
    }

    /// The source the world sees for a datagram from (agent, base) to `to`.
    func source(_ agent: Int, _ base: ICEBase, to: TransportAddress) -> TransportAddress? {
        guard let inside = sources[agent]![base] else { return nil }
        guard let publicIP = symmetric[agent]![base] else { return inside }
        if let mapped = symmetricMappings[[inside, to]] { return mapped }
        nextMappedPort += 1
        let mapped = TransportAddress(ip: publicIP, port: nextMappedPort)
        symmetricMappings[[inside, to]] = mapped
        routes[mapped] = Route(agent: agent, base: base, filtered: true)
        return mapped
    }

    /// A TURN allocation for `agent` (no permissions modelled).
    func addRelay(_ agent: Int, base: Int, _ relayed: TransportAddress, mapped: TransportAddress? = nil) {
        let base = ICEBase(id: base)
        routes[relayed] = Route(agent: agent, base: base, filtered: false)
        sources[agent]![base] = relayed
        agents[agent].addLocalCandidate(.relay(relayed, mapped: mapped, base: base), now: now)
    }

    /// Swaps credentials and every local candidate signalled so far (trickle both ways).
    func signal(endOfCandidates: Bool = true) {
        collect()
        agents[0].setRemoteCredentials(agents[1].localCredentials, now: now)
        agents[1].setRemoteCredentials(agents[0].localCredentials, now: now)
        for (from, to) in [(0, 1), (1, 0)] {
            for candidate in agents[from].localCandidates where candidate.type != .prflx {
                var remote = candidate
                remote.base = nil
                agents[to].addRemoteCandidate(remote, now: now)
            }
            if endOfCandidates { agents[to].endOfRemoteCandidates(now: now) }
        }
        collect()
    }

    /// Takes both agents' actions: logs them and puts datagrams on the wire.
    func collect() {
        for index in 0..<2 {
            for action in agents[index].takeActions() {
                log.append((index, now, action))
                if case .send(let bytes, let base, let to) = action {
                    guard let from = source(index, base, to: to) else { continue }
                    sent.insert([from, to])
                    guard !drop(from, to) else { continue }
                    sequence += 1
                    inFlight.append(Datagram(at: now + latency, sequence: sequence, bytes: bytes, from: from, to: to))
                }
            }
        }
    }

    func run(for duration: Duration) { run(until: now + duration) }

    func run(until end: ICETime) {
        collect()
        var steps = 0
        while steps < 200_000 {
            steps += 1
            var next: ICETime? = inFlight.map(\.at).min()
            for agent in agents {
                if let deadline = agent.nextDeadline, next == nil || deadline < next! { next = deadline }
            }
            guard let next, next <= end else { break }
            precondition(next >= now, "deadline in the past: \(next) < \(now)")
            now = next
            let due = inFlight.filter { $0.at <= now }.sorted { $0.sequence < $1.sequence }
            inFlight.removeAll { $0.at <= now }
            for datagram in due { deliver(datagram) }
            for index in 0..<2 where (agents[index].nextDeadline.map { $0 <= now } ?? false) {
                agents[index].advance(now: now)
            }
            collect()
        }
        now = max(now, end)
    }

    func deliver(_ datagram: Datagram) {
        if stunServers.contains(datagram.to) {
            guard let request = try? STUNMessage(bytes: datagram.bytes), request.type.messageClass == .request else { return }
            let response = STUNMessage.bindingSuccess(to: request, from: datagram.from).encoded(fingerprint: true)
            sequence += 1
            inFlight.append(Datagram(at: now + latency, sequence: sequence, bytes: response, from: datagram.to,
                                     to: datagram.from))
            return
        }
        guard let route = routes[datagram.to] else { return }
        if route.filtered && !sent.contains([datagram.to, datagram.from]) { return }
        guard let message = try? STUNMessage(bytes: datagram.bytes) else { return }
        delivered += 1
        agents[route.agent].receive(message, from: datagram.from, base: route.base, now: now)
    }

    /// The actions of one agent, in order.
    func actions(of agent: Int) -> [ICEAction] { log.filter { $0.agent == agent }.map(\.action) }

    func selectedPairs(of agent: Int) -> [(time: ICETime, pair: ICECandidatePair)] {
        log.compactMap { entry in
            guard entry.agent == agent, case .selectedPair(let pair) = entry.action else { return nil }
            return (entry.time, pair)
        }
    }

    func states(of agent: Int) -> [ICEState] {
        log.compactMap { entry in
            guard entry.agent == agent, case .state(let state) = entry.action else { return nil }
            return state
        }
    }

    /// Requests the agent sent, decoded, with their times and destinations.
    func requests(of agent: Int) -> [(time: ICETime, to: TransportAddress, message: STUNMessage)] {
        log.compactMap { entry in
            guard entry.agent == agent, case .send(let bytes, _, let to) = entry.action,
                  let message = try? STUNMessage(bytes: bytes), message.type.messageClass == .request else { return nil }
            return (entry.time, to, message)
        }
    }
}

/// Builds what a remote agent sends, for scripted single-agent tests.
enum Remote {
    static func request(
        to local: ICECredentials, from remote: ICECredentials, priority: UInt32 = 1_845_501_695,
        controlling: UInt64? = nil, controlled: UInt64? = nil, useCandidate: Bool = false,
        id: TransactionID = TransactionID(high: 7, low: 7), password: String? = nil, username: String? = nil
    ) -> STUNMessage {
        var message = STUNMessage(.binding, .request, transactionID: id)
        message.attributes.append(.text(.username, username ?? "\(local.ufrag):\(remote.ufrag)"))
        message.attributes.append(.uint32(.priority, priority))
        if let controlling { message.attributes.append(.uint64(.iceControlling, controlling)) }
        if let controlled { message.attributes.append(.uint64(.iceControlled, controlled)) }
        if useCandidate { message.attributes.append(STUNAttribute(type: .useCandidate, value: [])) }
        return parsed(message.encoded(integrityKey: Array((password ?? local.password).utf8), fingerprint: true))
    }

    /// A success response to `request` signed with `password`, as `mapped` saw us.
    static func success(to request: STUNMessage, mapped: TransportAddress, password: String) -> STUNMessage {
        parsed(STUNMessage.bindingSuccess(to: request, from: mapped)
            .encoded(integrityKey: Array(password.utf8), fingerprint: true))
    }

    static func error(to request: STUNMessage, _ code: STUNErrorCode, password: String?) -> STUNMessage {
        let message = STUNMessage(.binding, .errorResponse, transactionID: request.transactionID,
                                  attributes: [.errorCode(code)])
        return parsed(message.encoded(integrityKey: password.map { Array($0.utf8) }, fingerprint: true))
    }

    static func parsed(_ bytes: [UInt8]) -> STUNMessage {
        try! STUNMessage(bytes: bytes)
    }
}

extension ICEAgent {
    /// The datagrams among the agent's pending actions, decoded.
    mutating func takeSends() -> [(message: STUNMessage, base: ICEBase, to: TransportAddress)] {
        takeActions().compactMap { action in
            guard case .send(let bytes, let base, let to) = action else { return nil }
            return (Remote.parsed(bytes), base, to)
        }
    }
}

extension STUNMessage {
    var errorCodeValue: Int? { ((try? errorCode()) ?? nil)?.code }
}
