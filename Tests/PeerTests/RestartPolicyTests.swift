import NIOCore
import Testing

@testable import Peer

/// When ICE restarts, and what a trickle fragment's credentials mean.
@Suite struct RestartPolicyTests {
    let t0 = NIODeadline.uptimeNanoseconds(1_000_000_000)

    func probe(_ policy: inout RestartPolicy, at now: NIODeadline) -> Bool { policy.probeDue(now: now) }

    @Test func silenceAfterSendingRestartsButAnIdlePathDoesNot() {
        var policy = RestartPolicy()
        policy.described(ufrag: "peer1")
        // Idle: nothing sent, nothing expected.
        #expect(policy.restartReason(now: t0 + .seconds(60), consentLost: false) == nil)
        // Sent, answered within the second: fine.
        policy.sent(at: t0)
        policy.sent(at: t0 + .milliseconds(300))
        policy.received(at: t0 + .milliseconds(400))
        #expect(policy.restartReason(now: t0 + .seconds(5), consentLost: false) == nil)
        // Sent at t0+6 s and nothing came back: 999 ms is not yet silence, 1 s is.
        policy.sent(at: t0 + .seconds(6))
        policy.sent(at: t0 + .milliseconds(6500))
        #expect(policy.restartReason(now: t0 + .milliseconds(6999), consentLost: false) == nil)
        #expect(policy.restartReason(now: t0 + .seconds(7), consentLost: false) == "no answer on the path for 1000 ms")
    }

    @Test func aQuietPathIsProbedOnceAndOnlyAnUnansweredProbeRestarts() {
        var policy = RestartPolicy()
        policy.described(ufrag: "peer1")
        // Nothing from the peer yet: nothing to notice.
        #expect(!probe(&policy, at: t0 + .seconds(10)))
        policy.received(at: t0)
        #expect(!probe(&policy, at: t0 + .milliseconds(499)))
        #expect(probe(&policy, at: t0 + .milliseconds(500)))
        // One probe per quiet spell.
        #expect(!probe(&policy, at: t0 + .seconds(3)))
        // Answered: an idle connection, however long it stays quiet.
        policy.answered()
        #expect(policy.restartReason(now: t0 + .seconds(60), consentLost: false) == nil)
        #expect(!probe(&policy, at: t0 + .seconds(60)))
        // Busy again, quiet again, and this probe goes unanswered: restart 1 s after it.
        policy.received(at: t0 + .seconds(61))
        #expect(probe(&policy, at: t0 + .milliseconds(61_600)))
        #expect(policy.restartReason(now: t0 + .milliseconds(62_599), consentLost: false) == nil)
        #expect(policy.restartReason(now: t0 + .milliseconds(62_600), consentLost: false)
                    == "the quiet path did not answer a consent request")
        // The peer's datagrams coming back answer the probe too.
        policy.received(at: t0 + .milliseconds(62_700))
        #expect(policy.restartReason(now: t0 + .seconds(70), consentLost: false) == nil)
    }

    @Test func aConsentAnswerDoesNotAnswerOurDatagrams() {
        // A NAT that changed its mapping: consent passes on the new one, the peer's datagrams
        // still go to the old one. We sent and heard nothing back: that restarts.
        var policy = RestartPolicy()
        policy.described(ufrag: "peer1")
        policy.received(at: t0)
        policy.sent(at: t0 + .milliseconds(100))
        #expect(probe(&policy, at: t0 + .milliseconds(600)))
        policy.answered()
        #expect(policy.restartReason(now: t0 + .milliseconds(1099), consentLost: false) == nil)
        #expect(policy.restartReason(now: t0 + .milliseconds(1100), consentLost: false) == "no answer on the path for 1000 ms")
    }

    @Test func restartsAreSpacedAndConsentLossAlsoRestarts() {
        var policy = RestartPolicy()
        policy.described(ufrag: "peer1")
        #expect(policy.restartReason(now: t0, consentLost: true) == "consent unanswered")
        policy.restarting(at: t0)
        #expect(policy.awaitingPeer && policy.restarts == 1)
        #expect(policy.restartReason(now: t0 + .milliseconds(4999), consentLost: true) == nil)
        #expect(policy.restartReason(now: t0 + .seconds(5), consentLost: true) == "consent unanswered")
    }

    @Test func ourRestartWaitsForThePeersCredentialsAndDropsTheOldGeneration() {
        var policy = RestartPolicy()
        policy.described(ufrag: "peer1")
        #expect(policy.fragment(ufrag: "peer1", hasPassword: true) == .current)
        #expect(policy.fragment(ufrag: nil, hasPassword: false) == .current)
        policy.restarting(at: t0)
        // The peer's candidates of the old generation, still on their way: dropped.
        #expect(policy.fragment(ufrag: "peer1", hasPassword: true) == .old)
        #expect(policy.fragment(ufrag: "peer2", hasPassword: false) == .unusable)
        // Its answer to our restart: taken, and we do not restart again.
        #expect(policy.fragment(ufrag: "peer2", hasPassword: true) == .peerRestarted(alsoRestart: false))
        #expect(policy.remoteUfrag == "peer2" && !policy.awaitingPeer)
        #expect(policy.fragment(ufrag: "peer2", hasPassword: true) == .current)
        #expect(policy.fragment(ufrag: "peer1", hasPassword: true) == .old)
    }

    @Test func thePeersRestartMakesUsRestartOnceAndBothRestartingAtOnceSettles() {
        var policy = RestartPolicy()
        policy.described(ufrag: "peer1")
        #expect(policy.fragment(ufrag: "peer2", hasPassword: true) == .peerRestarted(alsoRestart: true))
        policy.restarting(at: t0, answeringPeer: true)
        #expect(!policy.awaitingPeer && policy.restarts == 1)
        #expect(policy.fragment(ufrag: "peer2", hasPassword: true) == .current)
        // Both sides restart at the same moment: each takes the other's credentials once.
        policy.restarting(at: t0 + .seconds(10))
        #expect(policy.fragment(ufrag: "peer3", hasPassword: true) == .peerRestarted(alsoRestart: false))
        #expect(policy.fragment(ufrag: "peer3", hasPassword: true) == .current)
        // The stale list is bounded.
        for generation in 4..<40 {
            #expect(policy.fragment(ufrag: "peer\(generation)", hasPassword: true) == .peerRestarted(alsoRestart: true))
            policy.restarting(at: t0 + .seconds(Int64(20 * generation)), answeringPeer: true)
        }
        #expect(policy.fragment(ufrag: "peer38", hasPassword: true) == .old)
        #expect(policy.fragment(ufrag: "peer3", hasPassword: true) == .peerRestarted(alsoRestart: true))
    }
}

/// When an agent renews its relay credentials.
@Suite struct RelayRenewalTests {
    func server(expiry: Int64?, urls: [String] = ["turn:192.0.2.1:3478?transport=udp"]) -> ICEServer {
        ICEServer(urls: urls, username: expiry.map { "\($0):alice" } ?? "alice", credential: "secret")
    }

    @Test func aQuarterOfWhatIsLeftAtMostFiveMinutesBeforeTheEarliestExpiry() {
        let now = 1_000_000.0
        #expect(PeerAgent.renewalDelay(servers: [server(expiry: 1_003_600)], now: now) == 3300)
        #expect(PeerAgent.renewalDelay(servers: [server(expiry: 1_000_100)], now: now) == 75)
        #expect(PeerAgent.renewalDelay(servers: [server(expiry: 1_000_010)], now: now) == 7.5)
        // Already expired, or nearly: soon, never at once in a loop.
        #expect(PeerAgent.renewalDelay(servers: [server(expiry: 999_000)], now: now) == 5)
        #expect(PeerAgent.renewalDelay(servers: [server(expiry: 1_003_600), server(expiry: 1_000_100)], now: now) == 75)
    }

    @Test func nothingToRenewWithoutATURNRESTCredential() {
        #expect(PeerAgent.renewalDelay(servers: [], now: 0) == nil)
        #expect(PeerAgent.renewalDelay(servers: [server(expiry: nil)], now: 0) == nil)
        #expect(PeerAgent.renewalDelay(servers: [server(expiry: 100, urls: ["stun:192.0.2.1:3478"])], now: 0) == nil)
    }
}
