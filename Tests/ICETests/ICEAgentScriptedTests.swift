import Testing
import Wire
@testable import ICE

/// One agent driven by hand: every datagram it sends is recorded with its time, and the test
/// plays the remote side.
final class Script {
    var agent: ICEAgent
    var now = ICETime.zero
    var sends: [(time: ICETime, message: STUNMessage, base: ICEBase, to: TransportAddress)] = []
    var events: [(time: ICETime, action: ICEAction)] = []

    static let base = ICEBase(id: 1)
    static let local = address("192.0.2.1", 4000)
    static let remote = address("192.0.2.2", 5000)

    init(role: ICERole = .controlling, tieBreaker: UInt64 = 200, credentials: ICECredentials = aliceCredentials,
         configure: (inout ICEConfiguration) -> Void = { _ in }) {
        var configuration = ICEConfiguration()
        configure(&configuration)
        agent = ICEAgent(role: role, local: credentials, tieBreaker: tieBreaker, configuration: configuration,
                         random: SeededRandom(42), now: .zero)
        agent.addLocalCandidate(.host(Self.local, base: Self.base), now: now)
        collect()
    }

    var remoteCredentials: ICECredentials { agent.localCredentials == aliceCredentials ? bobCredentials : aliceCredentials }

    /// Remote credentials plus host candidates at 192.0.2.2:5000, :5001, ... with falling priorities.
    func connectRemote(candidates: Int = 1, endOfCandidates: Bool = false) {
        agent.setRemoteCredentials(remoteCredentials, now: now)
        for index in 0..<candidates {
            agent.addRemoteCandidate(remoteHost(port: 5000 + UInt16(index), preference: 65535 - UInt16(index)), now: now)
        }
        if endOfCandidates { agent.endOfRemoteCandidates(now: now) }
        collect()
    }

    func remoteHost(port: UInt16, preference: UInt16 = 65535) -> ICECandidate {
        ICECandidate(foundation: "\(port)", priority: ICECandidate.priority(type: .host, localPreference: preference),
                     address: .ip(IPAddress("192.0.2.2")!), port: port, type: .host)
    }

    func collect() {
        for action in agent.takeActions() {
            if case .send(let bytes, let base, let to) = action {
                sends.append((now, Remote.parsed(bytes), base, to))
            } else {
                events.append((now, action))
            }
        }
    }

    func run(until end: ICETime) {
        while let deadline = agent.nextDeadline, deadline <= end {
            #expect(deadline >= now, "deadline in the past")
            now = deadline
            agent.advance(now: now)
            collect()
        }
        now = end
    }

    func at(_ milliseconds: Int64, _ body: () -> Void = {}) {
        run(until: .milliseconds(milliseconds))
        body()
        collect()
    }

    func receive(_ message: STUNMessage, from: TransportAddress = Script.remote) {
        agent.receive(message, from: from, base: Script.base, now: now)
        collect()
    }

    var requests: [(time: ICETime, message: STUNMessage, base: ICEBase, to: TransportAddress)] {
        sends.filter { $0.message.type.messageClass == .request }
    }

    var responses: [(time: ICETime, message: STUNMessage, base: ICEBase, to: TransportAddress)] {
        sends.filter { $0.message.type.messageClass != .request }
    }

    func times(_ list: [(time: ICETime, message: STUNMessage, base: ICEBase, to: TransportAddress)]) -> [Int64] {
        list.map(\.time.milliseconds)
    }

    var selected: [ICECandidatePair] {
        events.compactMap { if case .selectedPair(let pair) = $0.action { pair } else { nil } }
    }

    var states: [ICEState] {
        events.compactMap { if case .state(let state) = $0.action { state } else { nil } }
    }

    /// Answers `request` from where it was sent to, as the remote agent would.
    func answer(_ index: Int, mapped: TransportAddress = Script.local) {
        let request = requests[index]
        receive(Remote.success(to: request.message, mapped: mapped, password: remoteCredentials.password),
                from: request.to)
    }

    /// Answers the last request sent as the remote agent would (it saw us at `mapped`).
    func answerLast(mapped: TransportAddress = Script.local, from: TransportAddress? = nil) {
        let request = requests.last!
        receive(Remote.success(to: request.message, mapped: mapped, password: remoteCredentials.password),
                from: from ?? request.to)
    }
}

@Suite struct ConnectivityCheckTests {
    @Test func aCheckCarriesUsernamePriorityRoleIntegrityAndFingerprint() throws {
        let script = Script(tieBreaker: 0x1122_3344_5566_7788)
        script.connectRemote()
        #expect(script.requests.count == 1)
        let check = try #require(script.requests.first)
        #expect(check.time == .zero)
        #expect(check.to == Script.remote)
        #expect(check.base == Script.base)
        #expect(try check.message.text(.username) == "bobb:alic")
        #expect(try check.message.uint32(.priority) == 1_862_270_975)  // prflx, local preference 65535
        #expect(try check.message.uint64(.iceControlling) == 0x1122_3344_5566_7788)
        #expect(!check.message.contains(.iceControlled))
        #expect(!check.message.contains(.useCandidate))
        #expect(check.message.verifyIntegrity(key: Array(bobCredentials.password.utf8)))
        #expect(!check.message.verifyIntegrity(key: Array(aliceCredentials.password.utf8)))
        #expect(check.message.fingerprintIsValid == true)
        #expect(script.agent.state == .checking)
    }

    @Test func remoteCandidatesArrivingBeforeCredentialsAreCheckedOnceCredentialsArrive() {
        let script = Script()
        script.agent.addRemoteCandidate(script.remoteHost(port: 5000), now: .zero)
        script.collect()
        #expect(script.requests.isEmpty)
        #expect(script.agent.checklist.count == 1)
        script.at(100) { script.agent.setRemoteCredentials(bobCredentials, now: script.now) }
        #expect(script.times(script.requests) == [100])
    }

    @Test func checksArePacedByTa() {
        let script = Script()
        script.connectRemote(candidates: 3)
        script.run(until: .milliseconds(100))
        #expect(script.times(script.requests) == [0, 20, 40])
        // Highest priority first.
        #expect(script.requests.map(\.to.port) == [5000, 5001, 5002])
    }

    @Test func aConfiguredTaChangesThePacing() {
        let script = Script { $0.ta = .milliseconds(50) }
        script.connectRemote(candidates: 3)
        script.run(until: .milliseconds(120))
        #expect(script.times(script.requests) == [0, 50, 100])
    }

    @Test func aCheckRetransmitsWithADoublingRTOThenThePairFails() throws {
        let script = Script { $0.checkRetransmissions = 3 }
        script.connectRemote()
        script.run(until: .milliseconds(7499))
        #expect(script.times(script.requests) == [0, 500, 1500, 3500])
        #expect(Set(script.requests.map(\.message.transactionID)).count == 1)
        #expect(script.agent.checklist.first?.state == .inProgress)
        script.run(until: .milliseconds(7500))
        #expect(script.agent.checklist.first?.state == .failed)
        #expect(script.requests.count == 4)
    }

    @Test func aTriggeredCheckGoesBeforeOrdinaryChecks() {
        let script = Script(role: .controlled, tieBreaker: 100, credentials: bobCredentials)
        script.connectRemote(candidates: 3)
        script.at(5) {
            script.receive(Remote.request(to: bobCredentials, from: aliceCredentials, controlling: 200),
                           from: address("192.0.2.2", 5002))
        }
        script.run(until: .milliseconds(45))
        #expect(script.times(script.requests) == [0, 20, 40])
        #expect(script.requests.map(\.to.port) == [5000, 5002, 5001])
    }

    @Test func anAsymmetricResponseFailsThePair() {
        let script = Script()
        script.connectRemote()
        script.at(10) { script.answerLast(from: address("192.0.2.99", 5000)) }
        #expect(script.agent.checklist.first?.state == .failed)
        #expect(script.agent.selectedPair == nil)
    }

    @Test func aResponseWithANewMappedAddressMakesAPeerReflexiveLocalCandidate() throws {
        let script = Script()
        script.connectRemote()
        let mapped = address("203.0.113.50", 6000)
        script.at(10) { script.answerLast(mapped: mapped) }
        let prflx = try #require(script.agent.localCandidates.first { $0.type == .prflx })
        #expect(prflx.transportAddress == mapped)
        #expect(prflx.base == Script.base)
        #expect(prflx.priority == 1_862_270_975)
        #expect(script.selected.first?.local.type == .prflx)
        // Peer-reflexive local candidates are not signalled.
        let emitted = script.events.compactMap { if case .localCandidate(let c) = $0.action { c } else { nil } }
        #expect(emitted.map(\.type) == [.host])
    }

    @Test func pairsFormOnlyWithinAnAddressFamily() {
        var agent = ICEAgent(role: .controlling, local: aliceCredentials, tieBreaker: 1, now: .zero)
        agent.addLocalCandidate(.host(address("192.0.2.1", 1), base: ICEBase(id: 1)), now: .zero)
        agent.addLocalCandidate(.host(address("2001:db8::1", 1), base: ICEBase(id: 2)), now: .zero)
        agent.addRemoteCandidate(try! ICECandidate(sdpAttribute: "candidate:1 1 udp 100 192.0.2.2 9 typ host"), now: .zero)
        agent.addRemoteCandidate(try! ICECandidate(sdpAttribute: "candidate:2 1 udp 100 2001:db8::2 9 typ host"), now: .zero)
        let pairs = agent.checklist
        #expect(pairs.count == 2)
        #expect(pairs.allSatisfy { $0.local.transportAddress!.ip.isIPv4 == $0.remoteAddress.ip.isIPv4 })
    }

    @Test func remoteMDNSAndTCPCandidatesAreCountedButNotPaired() throws {
        let script = Script()
        script.agent.addRemoteCandidate(
            try ICECandidate(sdpAttribute: "candidate:1 1 udp 2113937151 0b1c.local 50000 typ host"), now: .zero)
        script.agent.addRemoteCandidate(
            try ICECandidate(sdpAttribute: "candidate:2 1 tcp 1518280447 192.0.2.2 9 typ host tcptype active"), now: .zero)
        #expect(script.agent.checklist.isEmpty)
        #expect(script.agent.counters.remoteMDNSCandidates == 1)
        #expect(script.agent.counters.remoteCandidatesUnusable == 1)
    }

    @Test func remoteCandidatesAndPairsAreBounded() {
        let script = Script()
        script.agent.addLocalCandidate(.host(address("192.0.2.1", 4001), base: ICEBase(id: 2)), now: .zero)
        for index in 0..<70 {
            script.agent.addRemoteCandidate(script.remoteHost(port: 10000 + UInt16(index)), now: .zero)
        }
        #expect(script.agent.remoteCandidates.count == 64)
        #expect(script.agent.counters.remoteCandidatesOverLimit == 6)
        #expect(script.agent.checklist.count == 100)
        #expect(script.agent.counters.pairsOverLimit == 28)
    }

    @Test func aCandidateOfAnEarlierGenerationIsIgnored() throws {
        let script = Script()
        script.connectRemote()
        let stale = try ICECandidate(sdpAttribute: "candidate:7 1 udp 2130706431 192.0.2.3 7000 typ host ufrag old1")
        let current = try ICECandidate(sdpAttribute: "candidate:8 1 udp 2130706431 192.0.2.4 7000 typ host ufrag bobb")
        script.agent.addRemoteCandidate(stale, now: .zero)
        script.agent.addRemoteCandidate(current, now: .zero)
        #expect(script.agent.remoteCandidates.map(\.port) == [5000, 7000])
        #expect(script.agent.counters.remoteCandidatesUnusable == 1)
    }

    @Test func aDuplicateRemoteCandidateMakesNoSecondPair() {
        let script = Script()
        script.connectRemote()
        script.agent.addRemoteCandidate(script.remoteHost(port: 5000), now: .zero)
        #expect(script.agent.checklist.count == 1)
        #expect(script.agent.remoteCandidates.count == 1)
    }
}

@Suite struct IncomingRequestTests {
    @Test func anIncomingRequestIsAnsweredWithXorMappedAddressAndOurIntegrity() throws {
        let script = Script(role: .controlled, tieBreaker: 100, credentials: bobCredentials)
        script.connectRemote()
        let request = Remote.request(to: bobCredentials, from: aliceCredentials, controlling: 200)
        script.receive(request)
        let response = try #require(script.responses.first)
        #expect(response.to == Script.remote)
        #expect(response.base == Script.base)
        #expect(response.message.type == STUNMessageType(method: .binding, class: .successResponse))
        #expect(response.message.transactionID == request.transactionID)
        #expect(try response.message.xorAddress(.xorMappedAddress) == Script.remote)
        #expect(response.message.verifyIntegrity(key: Array(bobCredentials.password.utf8)))
        #expect(response.message.fingerprintIsValid == true)
    }

    @Test func aRequestFromAnUnknownSourceMakesAPeerReflexiveRemoteCandidateAndATriggeredCheck() throws {
        let script = Script(role: .controlled, tieBreaker: 100, credentials: bobCredentials)
        script.agent.setRemoteCredentials(aliceCredentials, now: .zero)
        let source = address("203.0.113.9", 7000)
        script.receive(Remote.request(to: bobCredentials, from: aliceCredentials, priority: 1_862_270_975,
                                      controlling: 200), from: source)
        let remote = try #require(script.agent.remoteCandidates.first)
        #expect(remote.type == .prflx)
        #expect(remote.priority == 1_862_270_975)
        #expect(remote.transportAddress == source)
        #expect(script.requests.map(\.to) == [source])
        #expect(try script.requests.first?.message.text(.username) == "alic:bobb")
        // The peer signals the same address later as srflx: the candidate takes its real type.
        var signalled = try ICECandidate(sdpAttribute: "candidate:9 1 udp 1694498815 203.0.113.9 7000 typ srflx")
        signalled.relatedAddress = .ip(IPAddress("10.0.0.9")!)
        script.agent.addRemoteCandidate(signalled, now: script.now)
        #expect(script.agent.remoteCandidates.map(\.type) == [.srflx])
        #expect(script.agent.checklist.count == 1)
    }

    @Test func aRequestBeforeTheRemoteCredentialsIsAnsweredAndItsCheckWaitsForThem() {
        let script = Script(role: .controlled, tieBreaker: 100, credentials: bobCredentials)
        script.receive(Remote.request(to: bobCredentials, from: aliceCredentials, controlling: 200))
        #expect(script.responses.count == 1)
        #expect(script.requests.isEmpty)
        script.at(50) { script.agent.setRemoteCredentials(aliceCredentials, now: script.now) }
        #expect(script.times(script.requests) == [50])
    }

    @Test func roleConflictWithHigherTieBreakerSends487() throws {
        let script = Script(tieBreaker: 200)
        script.connectRemote()
        script.receive(Remote.request(to: aliceCredentials, from: bobCredentials, controlling: 100))
        let response = try #require(script.responses.first)
        #expect(response.message.errorCodeValue == 487)
        #expect(response.message.verifyIntegrity(key: Array(aliceCredentials.password.utf8)))
        #expect(script.agent.role == .controlling)
        #expect(script.agent.counters.roleConflictsAnswered == 1)
    }

    @Test func roleConflictWithLowerTieBreakerSwitchesToControlled() throws {
        let script = Script(tieBreaker: 200)
        script.connectRemote(candidates: 2)
        script.receive(Remote.request(to: aliceCredentials, from: bobCredentials, controlling: 300))
        #expect(script.responses.first?.message.type.messageClass == .successResponse)
        #expect(script.agent.role == .controlled)
        script.run(until: .milliseconds(20))
        let next = try #require(script.requests.last)
        #expect(try next.message.uint64(.iceControlled) == 200)
        #expect(!next.message.contains(.iceControlling))
    }

    @Test func aControlledAgentWithTheHigherTieBreakerTakesControlOnConflict() {
        let controlledWins = Script(role: .controlled, tieBreaker: 500, credentials: bobCredentials)
        controlledWins.connectRemote()
        controlledWins.receive(Remote.request(to: bobCredentials, from: aliceCredentials, controlled: 100))
        #expect(controlledWins.agent.role == .controlling)
        #expect(controlledWins.responses.first?.message.type.messageClass == .successResponse)

        let controlledLoses = Script(role: .controlled, tieBreaker: 50, credentials: bobCredentials)
        controlledLoses.connectRemote()
        controlledLoses.receive(Remote.request(to: bobCredentials, from: aliceCredentials, controlled: 100))
        #expect(controlledLoses.agent.role == .controlled)
        #expect(controlledLoses.responses.first?.message.errorCodeValue == 487)
    }

    @Test func a487AnswerSwitchesOurRoleAndRetriesThePair() throws {
        let script = Script(tieBreaker: 200)
        script.connectRemote()
        let first = try #require(script.requests.first?.message)
        script.at(10) { script.receive(Remote.error(to: first, .roleConflict, password: bobCredentials.password)) }
        #expect(script.agent.role == .controlled)
        #expect(script.agent.counters.roleSwitches == 1)
        script.run(until: .milliseconds(20))
        let retry = try #require(script.requests.last)
        #expect(retry.time == .milliseconds(20))
        #expect(retry.message.transactionID != first.transactionID)
        #expect(retry.message.contains(.iceControlled))
    }
}

@Suite struct HostileInputTests {
    @Test func aRequestWithBadIntegrityGets401AndChangesNothing() throws {
        let script = Script(role: .controlled, tieBreaker: 100, credentials: bobCredentials)
        script.agent.setRemoteCredentials(aliceCredentials, now: .zero)
        let stateBefore = script.agent.state
        script.receive(Remote.request(to: bobCredentials, from: aliceCredentials, controlled: 999_999,
                                      useCandidate: true, password: "not-the-password"),
                       from: address("203.0.113.66", 1))
        let response = try #require(script.responses.first)
        #expect(response.message.errorCodeValue == 401)
        #expect(!response.message.hasIntegrity)
        #expect(script.agent.counters.badIntegrity == 1)
        #expect(script.agent.remoteCandidates.isEmpty)
        #expect(script.agent.checklist.isEmpty)
        #expect(script.agent.role == .controlled)
        #expect(script.agent.state == stateBefore)
        #expect(script.requests.isEmpty)
    }

    @Test func aForeignUsernameGets401AndAMissingOneGets400() throws {
        let script = Script(role: .controlled, tieBreaker: 100, credentials: bobCredentials)
        script.receive(Remote.request(to: bobCredentials, from: aliceCredentials, username: "zzzz:alic"))
        var bare = STUNMessage(.binding, .request, transactionID: TransactionID(high: 1, low: 2))
        bare.attributes.append(.uint32(.priority, 5))
        script.receive(Remote.parsed(bare.encoded(fingerprint: true)))
        #expect(script.responses.map(\.message.errorCodeValue) == [401, 400])
        #expect(script.agent.counters.rejectedRequests == 2)
        #expect(script.agent.remoteCandidates.isEmpty)
    }

    @Test func aRequestWithoutPriorityGets400() {
        let script = Script(role: .controlled, tieBreaker: 100, credentials: bobCredentials)
        var message = STUNMessage(.binding, .request)
        message.attributes.append(.text(.username, "bobb:alic"))
        message.attributes.append(STUNAttribute(type: .priority, value: [1, 2, 3]))  // wrong length
        script.receive(Remote.parsed(message.encoded(integrityKey: Array(bobCredentials.password.utf8))))
        #expect(script.responses.map(\.message.errorCodeValue) == [400])
        #expect(script.agent.remoteCandidates.isEmpty)
    }

    @Test func aWrongFingerprintIsDroppedUnanswered() {
        let script = Script(role: .controlled, tieBreaker: 100, credentials: bobCredentials)
        var bytes = Remote.request(to: bobCredentials, from: aliceCredentials, controlling: 1).receivedBytes!
        bytes[bytes.count - 1] ^= 0xFF
        script.receive(Remote.parsed(bytes))
        #expect(script.sends.isEmpty)
        #expect(script.agent.counters.badFingerprints == 1)
    }

    @Test func aResponseWithBadIntegrityIsDroppedAndTheCheckKeepsGoing() {
        let script = Script()
        script.connectRemote()
        let request = script.requests[0].message
        script.at(10) { script.receive(Remote.success(to: request, mapped: Script.local, password: "forged")) }
        #expect(script.agent.counters.badIntegrity == 1)
        #expect(script.agent.selectedPair == nil)
        script.run(until: .milliseconds(500))
        #expect(script.times(script.requests) == [0, 500])
        script.answerLast()
        #expect(script.agent.selectedPair != nil)
    }

    @Test func anUnauthenticatedErrorResponseDoesNotFailThePair() {
        let script = Script()
        script.connectRemote()
        let request = script.requests[0].message
        script.receive(Remote.error(to: request, .unauthorized, password: nil))
        script.receive(Remote.error(to: request, .roleConflict, password: nil))
        #expect(script.agent.counters.unauthenticatedErrors == 2)
        #expect(script.agent.checklist.first?.state == .inProgress)
        #expect(script.agent.role == .controlling)
    }

    @Test func responsesToNothingWeSentAreCountedAndIgnored() {
        let script = Script()
        script.connectRemote()
        let stray = Remote.request(to: aliceCredentials, from: bobCredentials, id: TransactionID(high: 9, low: 9))
        script.receive(Remote.success(to: stray, mapped: Script.local, password: bobCredentials.password))
        #expect(script.agent.counters.unmatchedResponses == 1)
        #expect(script.agent.selectedPair == nil)
    }

    @Test func randomMessagesNeverCrashAndUnsignedOnesChangeNothing() {
        var random = SeededRandom(7)
        let types: [STUNAttributeType] = [.username, .priority, .iceControlling, .iceControlled, .useCandidate,
                                          .xorMappedAddress, .errorCode, .mappedAddress, .software]
        for round in 0..<400 {
            let script = Script(role: round % 2 == 0 ? .controlling : .controlled, tieBreaker: random.next(),
                                credentials: aliceCredentials)
            script.connectRemote()
            let before = (script.agent.state, script.agent.role, script.agent.remoteCandidates)
            let signed = round % 3 == 0
            let classes: [STUNClass] = [.request, .successResponse, .errorResponse, .indication]
            let id = round % 5 == 0 ? script.requests[0].message.transactionID : TransactionID(high: 1, low: random.next())
            var message = STUNMessage(.binding, classes[Int(random.next() % 4)], transactionID: id)
            for _ in 0..<Int(random.next() % 6) {
                let length = Int(random.next() % 24)
                let value = (0..<length).map { _ in UInt8(truncatingIfNeeded: random.next()) }
                message.attributes.append(STUNAttribute(type: types[Int(random.next() % UInt64(types.count))], value: value))
            }
            let key = random.next() % 2 == 0 ? bobCredentials.password : aliceCredentials.password
            let bytes = message.encoded(integrityKey: signed ? Array(key.utf8) : nil, fingerprint: random.next() % 2 == 0)
            guard let parsed = try? STUNMessage(bytes: bytes) else { continue }
            script.receive(parsed, from: random.next() % 2 == 0 ? Script.remote : address("203.0.113.1", UInt16(round)))
            script.run(until: .milliseconds(100))
            if !signed {
                #expect(script.agent.state == before.0)
                #expect(script.agent.role == before.1)
                #expect(script.agent.remoteCandidates == before.2)
                #expect(script.agent.selectedPair == nil)
            }
        }
    }

    @Test func malformedAttributesInSignedMessagesNeverCrash() {
        let script = Script(role: .controlled, tieBreaker: 100, credentials: bobCredentials)
        script.connectRemote()
        let odd: [STUNAttribute] = [
            STUNAttribute(type: .iceControlling, value: [1, 2]),
            STUNAttribute(type: .iceControlled, value: []),
            STUNAttribute(type: .useCandidate, value: [1, 2, 3, 4, 5]),
            STUNAttribute(type: .xorMappedAddress, value: [0, 9, 0, 0]),
        ]
        for attribute in odd {
            var message = STUNMessage(.binding, .request)
            message.attributes = [.text(.username, "bobb:alic"), .uint32(.priority, 7), attribute]
            script.receive(Remote.parsed(message.encoded(integrityKey: Array(bobCredentials.password.utf8),
                                                         fingerprint: true)))
        }
        // A response whose XOR-MAPPED-ADDRESS is garbage fails the pair, nothing more.
        let check = script.requests[0].message
        var response = STUNMessage(.binding, .successResponse, transactionID: check.transactionID)
        response.attributes = [STUNAttribute(type: .xorMappedAddress, value: [0, 7, 1])]
        script.receive(Remote.parsed(response.encoded(integrityKey: Array(aliceCredentials.password.utf8))))
        #expect(script.agent.selectedPair == nil)
        #expect(script.responses.count == 4)
    }
}
