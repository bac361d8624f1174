import Testing
import Wire
@testable import ICE

/// Two agents back to back through `FakeNetwork` (5 ms each way): what the peer agent will see.
@Suite struct TwoAgentTests {
    static let aliceHost = address("192.0.2.1", 1000)
    static let bobHost = address("192.0.2.2", 2000)
    static let aliceRelay = address("198.51.100.1", 50000)
    static let bobRelay = address("198.51.100.1", 50001)

    @Test func hostToHostAgentsConnectAndAgreeOnTheNominatedPair() throws {
        let net = FakeNetwork.pair()
        net.addHost(0, base: 1, Self.aliceHost)
        net.addHost(1, base: 1, Self.bobHost)
        net.signal()
        net.run(for: .seconds(2))
        let alice = try #require(net.agents[0].selectedPair)
        let bob = try #require(net.agents[1].selectedPair)
        #expect(alice.remoteAddress == Self.bobHost)
        #expect(bob.remoteAddress == Self.aliceHost)
        #expect(alice.local.type == .host && bob.local.type == .host)
        #expect(alice.nominated && bob.nominated)
        #expect(net.states(of: 0) == [.checking, .connected])
        #expect(net.states(of: 1) == [.checking, .connected])
        // One round trip (10 ms) after the first check.
        #expect(net.selectedPairs(of: 0).map(\.time) == [.milliseconds(10)])
        #expect(net.selectedPairs(of: 1).count == 1)
    }

    @Test func whenOnlyRelayPairsWorkTheyConnectAsFastAsDirectOnesWould() throws {
        let net = FakeNetwork.pair()
        net.addHost(0, base: 1, Self.aliceHost)
        net.addRelay(0, base: 2, Self.aliceRelay, mapped: address("203.0.113.1", 1000))
        net.addHost(1, base: 1, Self.bobHost)
        net.addRelay(1, base: 2, Self.bobRelay, mapped: address("203.0.113.2", 2000))
        // Hosts listen on ports 1000 and 2000, relays on 50000 and up.
        net.drop = { from, to in from.port < 50000 && to.port < 50000 }
        net.signal()
        net.run(for: .seconds(3))
        let alice = try #require(net.agents[0].selectedPair)
        let bob = try #require(net.agents[1].selectedPair)
        #expect(alice.isRelayed && bob.isRelayed)
        #expect(alice.nominated && bob.nominated)
        // Relay pairs are checked alongside the direct ones: selected within a few Ta.
        let first = try #require(net.selectedPairs(of: 0).first)
        #expect(first.time <= .milliseconds(100))
        #expect(net.agents[0].state == .connected && net.agents[1].state == .connected)
    }

    @Test func higherPriorityDirectPairReplacesNominatedRelayPair() throws {
        let net = FakeNetwork.pair()
        net.addHost(0, base: 1, Self.aliceHost)
        net.addRelay(0, base: 2, Self.aliceRelay)
        net.addHost(1, base: 1, Self.bobHost)
        net.addRelay(1, base: 2, Self.bobRelay)
        // The direct path opens only after a second (a NAT hole punched late).
        net.drop = { [unowned net] from, to in net.now < .seconds(1) && from.port < 50000 && to.port < 50000 }
        net.signal()
        net.run(for: .milliseconds(900))
        let relayed = try #require(net.agents[0].selectedPair)
        #expect(relayed.isRelayed && relayed.nominated)
        #expect(try #require(net.agents[1].selectedPair).isRelayed)
        net.run(for: .seconds(4))
        let alice = try #require(net.agents[0].selectedPair)
        let bob = try #require(net.agents[1].selectedPair)
        #expect(!alice.isRelayed && !bob.isRelayed)
        #expect(alice.remoteAddress == Self.bobHost && bob.remoteAddress == Self.aliceHost)
        #expect(alice.nominated && bob.nominated)
        let switches = net.selectedPairs(of: 0)
        #expect(switches.first?.pair.isRelayed == true)
        #expect(switches.last?.pair.isRelayed == false)
        #expect(try #require(switches.last?.time) < .seconds(2))
        #expect(net.selectedPairs(of: 1).last?.pair.isRelayed == false)
        // The upgrade never took the connection down.
        #expect(net.states(of: 0) == [.checking, .connected])
        #expect(net.states(of: 1) == [.checking, .connected])
    }

    @Test func peerReflexiveCandidatesAreDiscoveredBehindANAT() throws {
        let net = FakeNetwork.pair()
        let mapped = address("203.0.113.1", 40000)
        net.addHostBehindNAT(0, base: 1, address("10.0.0.1", 1000), mapped: mapped)
        net.addHost(1, base: 1, Self.bobHost)
        net.signal()
        net.run(for: .seconds(2))
        let alice = try #require(net.agents[0].selectedPair)
        let bob = try #require(net.agents[1].selectedPair)
        #expect(alice.local.type == .prflx)
        #expect(alice.local.transportAddress == mapped)
        #expect(bob.remote.type == .prflx)
        #expect(bob.remoteAddress == mapped)
        #expect(alice.nominated && bob.nominated)
    }

    @Test func aServerReflexiveCandidateLetsTheOtherSideReachUsThroughTheNAT() throws {
        let net = FakeNetwork.pair()
        let mapped = address("203.0.113.1", 40000)
        let stun = address("198.51.100.9", 3478)
        net.stunServers = [stun]
        net.addHostBehindNAT(0, base: 1, address("10.0.0.1", 1000), mapped: mapped)
        net.addHost(1, base: 1, Self.bobHost)
        net.agents[0].addServerReflexiveServer(stun, base: ICEBase(id: 1), now: net.now)
        net.run(for: .milliseconds(50))
        #expect(net.actions(of: 0).contains(.gatheringComplete))
        #expect(net.agents[0].localCandidates.contains { $0.type == .srflx && $0.transportAddress == mapped })
        net.signal()
        net.run(for: .seconds(2))
        let alice = try #require(net.agents[0].selectedPair)
        let bob = try #require(net.agents[1].selectedPair)
        #expect(alice.local.type == .srflx)
        #expect(bob.remote.type == .srflx)
    }

    /// Both behind "home" NATs (endpoint-independent mapping, port-restricted filtering) with a
    /// STUN server and relays: the hole punch through srflx candidates wins over the relay.
    @Test func homeNATsOnBothSidesConnectDirectly() throws {
        let net = FakeNetwork.pair()
        let stun = address("198.51.100.9", 3478)
        net.stunServers = [stun]
        net.addHostBehindNAT(0, base: 1, address("10.0.0.1", 1000), mapped: address("203.0.113.1", 1000))
        net.addRelay(0, base: 2, Self.aliceRelay)
        net.addHostBehindNAT(1, base: 1, address("10.0.1.2", 2000), mapped: address("203.0.113.2", 2000))
        net.addRelay(1, base: 2, Self.bobRelay)
        net.agents[0].addServerReflexiveServer(stun, base: ICEBase(id: 1), now: net.now)
        net.agents[1].addServerReflexiveServer(stun, base: ICEBase(id: 1), now: net.now)
        net.run(for: .milliseconds(50))
        net.signal()
        net.run(for: .seconds(3))
        let alice = try #require(net.agents[0].selectedPair)
        let bob = try #require(net.agents[1].selectedPair)
        #expect(!alice.isRelayed && !bob.isRelayed)
        #expect(alice.remoteAddress == address("203.0.113.2", 2000))
        #expect(bob.remoteAddress == address("203.0.113.1", 1000))
        #expect(alice.nominated && bob.nominated)
        #expect(try #require(net.selectedPairs(of: 0).last?.time) < .seconds(1))
    }

    /// A symmetric NAT against a home NAT: no direct pair can work; the relay carries it, as
    /// fast as a direct connection would, and nothing flaps afterwards.
    @Test func aSymmetricNATAgainstAHomeNATConnectsThroughTheRelayQuickly() throws {
        let net = FakeNetwork.pair()
        let stun = address("198.51.100.9", 3478)
        net.stunServers = [stun]
        net.addHostBehindSymmetricNAT(0, base: 1, address("10.0.0.1", 1000), publicIP: IPAddress("203.0.113.1")!)
        net.addRelay(0, base: 2, Self.aliceRelay)
        net.addHostBehindNAT(1, base: 1, address("10.0.1.2", 2000), mapped: address("203.0.113.2", 2000))
        net.addRelay(1, base: 2, Self.bobRelay)
        net.agents[0].addServerReflexiveServer(stun, base: ICEBase(id: 1), now: net.now)
        net.agents[1].addServerReflexiveServer(stun, base: ICEBase(id: 1), now: net.now)
        net.run(for: .milliseconds(50))
        net.signal()
        let signalledAt = net.now
        net.run(for: .seconds(10))
        let alice = try #require(net.agents[0].selectedPair)
        let bob = try #require(net.agents[1].selectedPair)
        #expect(alice.isRelayed && bob.isRelayed)
        #expect(alice.nominated && bob.nominated)
        #expect(try #require(net.selectedPairs(of: 0).first?.time) - signalledAt <= .milliseconds(100))
        #expect(net.states(of: 0) == [.checking, .connected])
        #expect(net.states(of: 1) == [.checking, .connected])
    }

    @Test func consentKeepsTheConnectionUpThenItsLossDisconnectsAndFails() throws {
        let net = FakeNetwork.pair()
        net.addHost(0, base: 1, Self.aliceHost)
        net.addHost(1, base: 1, Self.bobHost)
        net.signal()
        net.run(for: .seconds(60))
        #expect(net.states(of: 0) == [.checking, .connected])
        #expect(net.states(of: 1) == [.checking, .connected])
        let consent = net.requests(of: 0).filter { $0.time >= .seconds(1) }.map(\.time.milliseconds)
        #expect(consent.count >= 9)
        let gaps = zip(consent.dropFirst(), consent).map { $0 - $1 }
        #expect(gaps.allSatisfy { (4000...6000).contains($0) })

        net.drop = { _, _ in true }
        net.run(for: .seconds(40))
        #expect(net.states(of: 0) == [.checking, .connected, .disconnected, .failed])
        #expect(net.states(of: 1) == [.checking, .connected, .disconnected, .failed])
        #expect(net.agents[0].failureReason == .consentExpired)
        let failedAt = try #require(net.log.first { $0.agent == 0 && $0.action == .state(.failed) }?.time)
        let disconnectedAt = try #require(net.log.first { $0.agent == 0 && $0.action == .state(.disconnected) }?.time)
        #expect(disconnectedAt <= .seconds(67))
        #expect(failedAt <= .seconds(90))
        #expect(failedAt >= .seconds(84))
    }

    @Test func aShortOutageRecoversWithoutFailing() throws {
        let net = FakeNetwork.pair()
        net.addHost(0, base: 1, Self.aliceHost)
        net.addHost(1, base: 1, Self.bobHost)
        net.signal()
        net.run(for: .seconds(10))
        net.drop = { _, _ in true }
        net.run(for: .seconds(12))
        #expect(net.agents[0].state == .disconnected)
        net.drop = { _, _ in false }
        net.run(for: .seconds(3))
        #expect(net.agents[0].state == .connected)
        #expect(net.agents[1].state == .connected)
        #expect(net.states(of: 0) == [.checking, .connected, .disconnected, .connected])
    }

    @Test func restartKeepsTheOldPairUntilTheNewOneIsSelected() throws {
        let net = FakeNetwork.pair()
        net.addHost(0, base: 1, Self.aliceHost)
        net.addHost(1, base: 1, Self.bobHost)
        net.signal()
        net.run(for: .seconds(2))
        let before = try #require(net.agents[0].selectedPair)
        let restartAt = net.now
        net.agents[0].restart(local: ICECredentials(ufrag: "alc2", password: "alice-password-second-gen"), role: nil,
                              now: net.now)
        net.agents[1].restart(local: ICECredentials(ufrag: "bob2", password: "bob-password-second-generat"), role: nil,
                              now: net.now)
        // Every local candidate is offered again for the new generation.
        let reoffered = net.agents[0].takeActions().compactMap { if case .localCandidate(let c) = $0 { c } else { nil } }
        #expect(reoffered.map(\.transportAddress) == [Self.aliceHost])
        // Signalling is slow: for 15 s the old pair carries on, consent answered with the old credentials.
        net.run(for: .seconds(15))
        #expect(net.agents[0].state == .connected && net.agents[1].state == .connected)
        #expect(net.agents[0].selectedPair?.remoteAddress == before.remoteAddress)
        #expect(net.selectedPairs(of: 0).count == 1)
        let oldConsent = net.requests(of: 0).filter { $0.time > restartAt }
        #expect(oldConsent.count >= 2)
        #expect(oldConsent.allSatisfy { (try? $0.message.text(.username)) == "bobb:alic" })
        net.signal()
        net.run(for: .seconds(2))
        let switches = net.selectedPairs(of: 0)
        #expect(switches.count == 2)
        #expect(try #require(switches.last?.time) > restartAt)
        #expect(net.selectedPairs(of: 1).count == 2)
        // New checks and consent use the new credentials; nothing went down.
        #expect(net.requests(of: 0).last.map { (try? $0.message.text(.username)) == "bob2:alc2" } == true)
        #expect(net.states(of: 0) == [.checking, .connected])
        #expect(net.states(of: 1) == [.checking, .connected])
        // The old generation's credentials are refused now.
        var bob = net.agents[1]
        bob.receive(Remote.request(to: bobCredentials, from: aliceCredentials, controlling: 200),
                    from: Self.aliceHost, base: ICEBase(id: 1), now: net.now)
        #expect(bob.takeSends().first?.message.errorCodeValue == 401)
    }

    @Test func restartAfterFailureConnectsAgain() throws {
        let net = FakeNetwork.pair { $0.checkingTimeout = .seconds(2) }
        net.addHost(0, base: 1, Self.aliceHost)
        net.addHost(1, base: 1, Self.bobHost)
        net.drop = { _, _ in true }
        net.signal()
        net.run(for: .seconds(3))
        #expect(net.agents[0].state == .failed)
        net.drop = { _, _ in false }
        net.agents[0].restart(local: ICECredentials(ufrag: "alc2", password: "alice-password-second-gen"), role: nil,
                              now: net.now)
        net.agents[1].restart(local: ICECredentials(ufrag: "bob2", password: "bob-password-second-generat"), role: nil,
                              now: net.now)
        net.signal()
        net.run(for: .seconds(1))
        #expect(net.agents[0].state == .connected && net.agents[1].state == .connected)
        #expect(net.agents[0].failureReason == nil)
    }

    @Test func twoControllingAgentsResolveTheConflictByTieBreaker() throws {
        let alice = ICEAgent(role: .controlling, local: aliceCredentials, tieBreaker: 200, random: SeededRandom(1), now: .zero)
        let bob = ICEAgent(role: .controlling, local: bobCredentials, tieBreaker: 100, random: SeededRandom(2), now: .zero)
        let net = FakeNetwork(alice, bob)
        net.addHost(0, base: 1, Self.aliceHost)
        net.addHost(1, base: 1, Self.bobHost)
        net.signal()
        net.run(for: .seconds(2))
        #expect(net.agents[0].role == .controlling)
        #expect(net.agents[1].role == .controlled)
        #expect(net.agents[0].selectedPair?.nominated == true)
        #expect(net.agents[1].selectedPair?.nominated == true)
    }

    @Test func twoControlledAgentsResolveTheConflictByTieBreaker() throws {
        let alice = ICEAgent(role: .controlled, local: aliceCredentials, tieBreaker: 200, random: SeededRandom(1), now: .zero)
        let bob = ICEAgent(role: .controlled, local: bobCredentials, tieBreaker: 100, random: SeededRandom(2), now: .zero)
        let net = FakeNetwork(alice, bob)
        net.addHost(0, base: 1, Self.aliceHost)
        net.addHost(1, base: 1, Self.bobHost)
        net.signal()
        net.run(for: .seconds(2))
        #expect(net.agents[0].role == .controlling)
        #expect(net.agents[1].role == .controlled)
        #expect(net.agents[1].selectedPair?.nominated == true)
    }

    @Test func trickledCandidatesArrivingLateStillConnect() throws {
        let net = FakeNetwork.pair()
        net.addHost(0, base: 1, Self.aliceHost)
        net.collect()
        net.agents[0].setRemoteCredentials(bobCredentials, now: net.now)
        net.agents[1].setRemoteCredentials(aliceCredentials, now: net.now)
        net.run(for: .milliseconds(500))
        // Bob's socket comes up late; only then do candidates flow.
        net.addHost(1, base: 1, Self.bobHost)
        net.signal()
        net.run(for: .seconds(1))
        #expect(net.agents[0].state == .connected && net.agents[1].state == .connected)
    }
}
