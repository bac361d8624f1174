import Testing
import Wire
@testable import ICE

@Suite struct NominationTests {
    @Test func theControllingAgentUsesTheFirstSucceededPairAtOnceThenNominatesIt() throws {
        let script = Script()
        script.connectRemote()
        script.at(10) { script.answerLast() }
        #expect(script.selected.count == 1)
        #expect(script.states == [.checking, .connected])
        #expect(script.events.first { if case .selectedPair = $0.action { true } else { false } }?.time == .milliseconds(10))
        #expect(script.agent.selectedPair?.nominated == false)
        script.run(until: .milliseconds(20))
        let nomination = try #require(script.requests.last)
        #expect(nomination.time == .milliseconds(20))
        #expect(nomination.message.contains(.useCandidate))
        script.at(30) { script.answerLast() }
        #expect(script.agent.selectedPair?.nominated == true)
        #expect(script.selected.count == 1)
    }

    @Test func nominationWaitsForAHigherPendingPairAtMostTheNominationWait() {
        let script = Script()
        script.connectRemote(candidates: 2)
        script.run(until: .milliseconds(20))
        #expect(script.requests.map(\.to.port) == [5000, 5001])
        script.at(25) { script.answer(1) }
        #expect(script.agent.selectedPair?.remoteAddress.port == 5001)
        #expect(script.agent.state == .connected)
        script.run(until: .milliseconds(324))
        #expect(!script.requests.contains { $0.message.contains(.useCandidate) })
        script.run(until: .milliseconds(325))
        let nominations = script.requests.filter { $0.message.contains(.useCandidate) }
        #expect(nominations.map(\.time) == [.milliseconds(325)])
        #expect(nominations.map(\.to.port) == [5001])
    }

    @Test func aConfiguredNominationWaitIsHonoured() {
        let script = Script { $0.nominationWait = .milliseconds(1000) }
        script.connectRemote(candidates: 2)
        script.run(until: .milliseconds(20))
        script.at(25) { script.answer(1) }
        script.run(until: .milliseconds(1100))
        #expect(script.requests.filter { $0.message.contains(.useCandidate) }.map(\.time) == [.milliseconds(1025)])
    }

    @Test func aBetterPairSucceedingAfterNominationIsNominatedTooAndSelected() throws {
        let script = Script()
        script.connectRemote(candidates: 2)
        script.run(until: .milliseconds(20))
        script.at(25) { script.answer(1) }
        script.run(until: .milliseconds(325))
        script.at(330) { script.answerLast() }  // the nomination of 5001
        #expect(script.agent.selectedPair?.nominated == true)
        // The 5000 check is still being retransmitted; it gets through at last.
        script.run(until: .milliseconds(500))
        let retransmission = try #require(script.requests.last)
        #expect(retransmission.to.port == 5000)
        #expect(retransmission.time == .milliseconds(500))
        script.at(510) { script.answerLast() }
        #expect(script.selected.map(\.remoteAddress.port) == [5001, 5000])
        script.run(until: .milliseconds(530))
        let nomination = try #require(script.requests.last)
        #expect(nomination.message.contains(.useCandidate))
        #expect(nomination.to.port == 5000)
        script.at(540) { script.answerLast() }
        #expect(script.agent.selectedPair?.remoteAddress.port == 5000)
        #expect(script.agent.selectedPair?.nominated == true)
    }

    @Test func theControlledAgentFollowsTheMostRecentlyNominatedPair() {
        let script = Script(role: .controlled, tieBreaker: 100, credentials: bobCredentials)
        script.connectRemote(candidates: 2)
        script.at(10) { script.answer(0) }
        script.at(30) { script.answer(1) }
        // Before any nomination: the best succeeded pair, so data can flow at once.
        #expect(script.selected.map(\.remoteAddress.port) == [5000])
        func nominate(_ port: UInt16, at time: Int64) {
            script.at(time) {
                script.receive(Remote.request(to: bobCredentials, from: aliceCredentials, controlling: 200,
                                              useCandidate: true, id: TransactionID(high: 1, low: UInt64(time))),
                               from: address("192.0.2.2", port))
            }
        }
        nominate(5001, at: 40)
        nominate(5000, at: 50)
        nominate(5001, at: 60)
        nominate(5001, at: 70)  // again: nothing changes
        #expect(script.selected.map(\.remoteAddress.port) == [5000, 5001, 5000, 5001])
        #expect(script.agent.selectedPair?.nominated == true)
    }

    @Test func aNominationBeforeOurOwnCheckSucceedsTakesEffectWhenItDoes() {
        let script = Script(role: .controlled, tieBreaker: 100, credentials: bobCredentials)
        script.connectRemote()
        script.at(5) {
            script.receive(Remote.request(to: bobCredentials, from: aliceCredentials, controlling: 200, useCandidate: true))
        }
        #expect(script.agent.selectedPair == nil)
        script.at(10) { script.answer(0) }
        #expect(script.agent.selectedPair?.nominated == true)
        #expect(script.agent.state == .connected)
    }
}

@Suite struct GatheringTests {
    static let server = address("198.51.100.1", 3478)

    @Test func serverReflexiveGatheringEmitsTheCandidateThenGatheringComplete() throws {
        let script = Script()
        script.agent.addServerReflexiveServer(Self.server, base: Script.base, now: .zero)
        script.collect()
        let request = try #require(script.requests.first)
        #expect(request.to == Self.server)
        #expect(!request.message.contains(.username))
        #expect(!request.message.hasIntegrity)
        #expect(request.message.fingerprintIsValid == true)
        let mapped = address("203.0.113.5", 6000)
        script.at(30) {
            script.receive(Remote.parsed(STUNMessage.bindingSuccess(to: request.message, from: mapped).encoded()),
                           from: Self.server)
        }
        let emitted = script.events.filter { $0.time == .milliseconds(30) }.map(\.action)
        #expect(emitted.count == 2)
        guard case .localCandidate(let srflx) = emitted.first, emitted.last == .gatheringComplete else {
            Issue.record("want a srflx candidate then gathering complete, got \(emitted)")
            return
        }
        #expect(srflx.type == .srflx)
        #expect(srflx.transportAddress == mapped)
        #expect(srflx.relatedAddress == .ip(Script.local.ip))
        #expect(srflx.relatedPort == Script.local.port)
        #expect(srflx.priority == 1_694_498_815)
        #expect(srflx.base == Script.base)
        // Its pairs collapse onto the host base: one pair per remote candidate.
        script.connectRemote()
        #expect(script.agent.checklist.count == 1)
    }

    /// After the NAT changed its mapping, the restart's second round of gathering replaces the
    /// srflx candidate (the old one leads nowhere) and completes again; an unchanged mapping
    /// adds nothing.
    @Test func regatheringReplacesAChangedMappingAndCompletesAgain() throws {
        let script = Script()
        script.agent.addServerReflexiveServer(Self.server, base: Script.base, now: .zero)
        script.collect()
        let first = try #require(script.requests.last?.message)
        script.receive(Remote.parsed(STUNMessage.bindingSuccess(to: first, from: address("203.0.113.5", 6000)).encoded()),
                       from: Self.server)
        script.at(1000) { script.agent.regatherServerReflexive(now: script.now) }
        let second = try #require(script.requests.last)
        #expect(second.time == .milliseconds(1000) && second.to == Self.server && second.message.transactionID != first.transactionID)
        // The answer to the first request, late, is not taken for the second.
        script.receive(Remote.parsed(STUNMessage.bindingSuccess(to: first, from: address("203.0.113.5", 7777)).encoded()),
                       from: Self.server)
        #expect(script.agent.localCandidates.filter { $0.type == .srflx }.map(\.transportAddress) == [address("203.0.113.5", 6000)])
        let moved = address("203.0.113.5", 21000)
        script.at(1020) {
            script.receive(Remote.parsed(STUNMessage.bindingSuccess(to: second.message, from: moved).encoded()), from: Self.server)
        }
        #expect(script.agent.localCandidates.filter { $0.type == .srflx }.map(\.transportAddress) == [moved])
        let emitted = script.events.filter { $0.time == .milliseconds(1020) }.map(\.action)
        guard emitted.count == 2, case .localCandidate(let srflx) = emitted[0], emitted[1] == .gatheringComplete else {
            Issue.record("want the new srflx candidate then gathering complete, got \(emitted)")
            return
        }
        #expect(srflx.transportAddress == moved)
        // Asked again, same mapping: gathering completes with no new candidate.
        script.at(2000) { script.agent.regatherServerReflexive(now: script.now) }
        let third = try #require(script.requests.last)
        script.at(2020) {
            script.receive(Remote.parsed(STUNMessage.bindingSuccess(to: third.message, from: moved).encoded()), from: Self.server)
        }
        #expect(script.events.filter { $0.time == .milliseconds(2020) }.map(\.action) == [.gatheringComplete])
        #expect(script.agent.localCandidates.count == 2)
    }

    /// A relay allocation given up before a restart: its candidate is neither offered again
    /// nor paired in the new generation; the others are.
    @Test func removedCandidatesAreNotOfferedAgainAfterARestart() throws {
        let script = Script()
        let relayBase = ICEBase(id: 2)
        script.agent.addLocalCandidate(.relay(address("198.51.100.1", 50000), mapped: address("203.0.113.5", 6000),
                                              base: relayBase, localPreference: 65535), now: .zero)
        script.connectRemote()
        #expect(script.agent.checklist.contains { $0.base == relayBase })
        script.agent.removeLocalCandidates(base: relayBase)
        #expect(!script.agent.localCandidates.contains { $0.base == relayBase })
        #expect(!script.agent.checklist.contains { $0.base == relayBase })
        script.agent.restart(local: ICECredentials(ufrag: "alc2", password: "alice-password-second-gen"), role: nil,
                             now: .milliseconds(100))
        let offered = script.agent.takeActions().compactMap { if case .localCandidate(let c) = $0 { c } else { nil } }
        #expect(offered.map(\.base) == [Script.base])
    }

    @Test func aSilentServerIsRetriedThenGivenUpAndGatheringStillCompletes() {
        let script = Script()
        script.agent.addServerReflexiveServer(Self.server, base: Script.base, now: .zero)
        script.collect()
        script.run(until: .milliseconds(7499))
        #expect(script.times(script.requests) == [0, 500, 1500, 3500])
        #expect(!script.events.contains { $0.action == .gatheringComplete })
        script.run(until: .milliseconds(7500))
        #expect(script.events.last?.action == .gatheringComplete)
        #expect(!script.agent.localCandidates.contains { $0.type == .srflx })
    }

    @Test func aMappedAddressEqualToTheHostAddsNoCandidateAndAnAnswerFromElsewhereIsIgnored() throws {
        let script = Script()
        script.agent.addServerReflexiveServer(Self.server, base: Script.base, now: .zero)
        script.collect()
        let request = try #require(script.requests.first?.message)
        let answer = Remote.parsed(STUNMessage.bindingSuccess(to: request, from: Script.local).encoded())
        script.receive(answer, from: address("198.51.100.2", 3478))
        #expect(script.agent.counters.unmatchedResponses == 1)
        script.receive(answer, from: Self.server)
        #expect(script.agent.localCandidates.map(\.type) == [.host])
        #expect(script.events.last?.action == .gatheringComplete)
    }
}

@Suite struct ConsentAndTimeoutTests {
    /// Connected at 10 ms and nominated at 30 ms, with consent every exactly 5 s.
    func connected() -> Script {
        let script = Script { $0.consentInterval = .seconds(5) ... .seconds(5) }
        script.connectRemote()
        script.at(10) { script.answerLast() }
        script.run(until: .milliseconds(20))
        script.at(30) { script.answerLast() }
        return script
    }

    func consentTimes(_ script: Script) -> [Int64] {
        script.times(script.requests.filter { $0.time >= .milliseconds(1000) })
    }

    @Test func consentRequestsGoOnTheSelectedPairAndLossDisconnectsThenFails() throws {
        let script = connected()
        script.run(until: .milliseconds(5010))
        let consent = try #require(script.requests.last)
        #expect(consent.time == .milliseconds(5010))
        #expect(consent.to == Script.remote)
        #expect(try consent.message.text(.username) == "bobb:alic")
        #expect(!consent.message.contains(.useCandidate))
        #expect(consent.message.verifyIntegrity(key: Array(bobCredentials.password.utf8)))
        script.at(5020) { script.answerLast() }
        // Unanswered from 10 010: a retry every second, disconnected 5 s after the last answer.
        script.run(until: .milliseconds(11009))
        #expect(script.agent.state == .connected)
        script.run(until: .milliseconds(11010))
        #expect(script.agent.state == .disconnected)
        script.run(until: .milliseconds(13010))
        #expect(consentTimes(script) == [5010, 10010, 11010, 12010, 13010])
        script.at(13015) { script.answerLast() }
        #expect(script.agent.state == .connected)
        script.run(until: .milliseconds(18014))
        #expect(script.agent.state == .connected)
        script.run(until: .milliseconds(18015))
        #expect(script.agent.state == .disconnected)
        script.run(until: .milliseconds(43014))
        #expect(script.agent.state == .disconnected)
        script.run(until: .milliseconds(43015))
        #expect(script.agent.state == .failed)
        #expect(script.agent.failureReason == .consentExpired)
        #expect(script.states == [.checking, .connected, .disconnected, .connected, .disconnected, .failed])
        let sentBeforeFailing = script.requests.count
        script.run(until: .milliseconds(60000))
        #expect(script.requests.count == sentBeforeFailing)
        #expect(script.agent.nextDeadline == nil)
    }

    @Test func aProbeAsksForConsentAtOnceOnlyWhenNoneIsOutstandingAndItsAnswerIsRecorded() throws {
        let script = connected()
        script.run(until: .milliseconds(1000))
        let answeredAtSelection = try #require(script.agent.selectedPairAnsweredAt)
        // A probe at 1.5 s: a consent request now, not at 5010.
        script.at(1500) { script.agent.probeSelectedPair(now: script.now) }
        script.run(until: .milliseconds(1500))
        let probe = try #require(script.requests.last)
        #expect(probe.time == .milliseconds(1500) && probe.to == Script.remote && !probe.message.contains(.useCandidate))
        // A second probe while that one is unanswered sends nothing more.
        let sent = script.requests.count
        script.at(1600) { script.agent.probeSelectedPair(now: script.now) }
        script.run(until: .milliseconds(1600))
        #expect(script.requests.count == sent)
        // The answer is recorded (the caller compares the time) and the next request is one
        // interval after the probe (5 s here).
        script.at(1610) { script.answerLast() }
        script.run(until: .milliseconds(1610))
        #expect(try #require(script.agent.selectedPairAnsweredAt) > answeredAtSelection)
        script.run(until: .milliseconds(6499))
        #expect(script.requests.count == sent)
        script.run(until: .milliseconds(6500))
        #expect(script.requests.count == sent + 1)
    }

    @Test func trafficOnTheSelectedPairPostponesDisconnected() {
        let script = connected()
        script.run(until: .milliseconds(5010))
        script.at(5020) { script.answerLast() }
        script.at(10500) { script.agent.noteTraffic(from: Script.remote, base: Script.base, now: script.now) }
        // Traffic from anywhere else does not count.
        script.at(10600) { script.agent.noteTraffic(from: address("192.0.2.77", 1), base: Script.base, now: script.now) }
        script.run(until: .milliseconds(15499))
        #expect(script.agent.state == .connected)
        script.run(until: .milliseconds(15500))
        #expect(script.agent.state == .disconnected)
    }

    @Test func consentIntervalsAreRandomBetweenFourAndSixSeconds() {
        let script = Script()
        script.connectRemote()
        script.at(10) { script.answerLast() }
        script.run(until: .milliseconds(20))
        script.at(30) { script.answerLast() }
        var intervals: [Int64] = []
        var last: Int64 = 10
        for _ in 0..<20 {
            guard let next = script.agent.nextDeadline else { break }
            script.run(until: next)
            if script.requests.last?.time == next {
                intervals.append(next.milliseconds - last)
                last = next.milliseconds
                script.at(next.milliseconds + 10) { script.answerLast() }
            }
        }
        #expect(intervals.count >= 10)
        #expect(intervals.allSatisfy { (4000...6000).contains($0) })
        #expect(Set(intervals).count > 3)
        #expect(script.agent.state == .connected)
    }

    @Test func checksTimeOutEightSecondsAfterTheRemoteEndOfCandidates() {
        let script = Script()
        script.connectRemote()
        script.at(1000) { script.agent.endOfRemoteCandidates(now: script.now) }
        script.run(until: .milliseconds(8999))
        #expect(script.agent.state == .checking)
        script.run(until: .milliseconds(9000))
        #expect(script.agent.state == .failed)
        #expect(script.agent.failureReason == .noPairSucceeded)
        let sent = script.requests.count
        script.run(until: .milliseconds(40000))
        #expect(script.requests.count == sent)
    }

    @Test func checksTimeOutAfterTheCapWithoutEndOfCandidates() {
        let script = Script { $0.checkingTimeoutWithoutEndOfCandidates = .seconds(12) }
        script.connectRemote()
        script.run(until: .milliseconds(11999))
        #expect(script.agent.state == .checking)
        script.run(until: .milliseconds(12000))
        #expect(script.agent.state == .failed)
        #expect(script.agent.failureReason == .noPairSucceeded)
    }

    @Test func aSucceededPairStopsTheCheckingTimeout() {
        let script = Script()
        script.connectRemote(endOfCandidates: true)
        script.at(10) { script.answerLast() }
        script.run(until: .milliseconds(9000))
        #expect(script.agent.state != .failed)
    }

    @Test func closeStopsEverything() {
        let script = connected()
        script.agent.close()
        script.collect()
        #expect(script.agent.state == .closed)
        #expect(script.agent.nextDeadline == nil)
        script.receive(Remote.request(to: aliceCredentials, from: bobCredentials, controlled: 1))
        #expect(script.responses.isEmpty)
    }
}
