import Testing
import Wire
@testable import Relay

@Suite struct ConnectionPolicyTests {
    static let server = TransportAddress(ip: IPAddress("192.0.2.1")!, port: 3478)

    static func tcp(_ ip: String, _ port: UInt16 = 40000) -> FiveTuple {
        FiveTuple(client: TransportAddress(ip: IPAddress(ip)!, port: port), server: server, transport: .tcp)
    }

    static func policy(perSource: Int = 128, total: Int = 10_000) -> ConnectionPolicy {
        ConnectionPolicy(limits: .init(authTimeout: 5_000, idleTimeout: 30_000, perSource: perSource, total: total))
    }

    @Test func aConnectionWithoutAnAuthenticatedRequestIsClosedAtFiveSecondsNotBefore() throws {
        var policy = Self.policy()
        let client = Self.tcp("198.51.100.7")
        #expect(policy.admit(client, nowMillis: 1_000) == nil)
        #expect(policy.expire(nowMillis: 5_999).isEmpty)
        let expired = policy.expire(nowMillis: 6_000)
        #expect(expired.map(\.0) == [client])
        #expect(expired.map(\.1) == [.authTimeout])
        #expect(policy.counters.authTimeouts == 1)
        // Returned once; it still counts until the engine says it is closed.
        #expect(policy.expire(nowMillis: 60_000).isEmpty)
        #expect(policy.count == 1)
        policy.closed(client)
        #expect(policy.count == 0)
        #expect(policy.connections(from: client.client.ip) == 0)
    }

    @Test func anAuthenticatedRequestAt4999msSavesTheConnectionUntilItIsIdle() {
        var policy = Self.policy()
        let client = Self.tcp("198.51.100.7")
        #expect(policy.admit(client, nowMillis: 0) == nil)
        policy.authenticated(client, nowMillis: 4_999)
        #expect(policy.expire(nowMillis: 5_000).isEmpty)
        // No allocation: idle 30 s after the last authenticated request.
        #expect(policy.expire(nowMillis: 34_998).isEmpty)
        #expect(policy.expire(nowMillis: 34_999).map(\.1) == [.idle])
        #expect(policy.counters.idleClosed == 1)
        #expect(policy.counters.authTimeouts == 0)
    }

    @Test func anAllocationKeepsTheConnectionAndItsEndStartsTheIdleClock() {
        var policy = Self.policy()
        let client = Self.tcp("198.51.100.7")
        #expect(policy.admit(client, nowMillis: 0) == nil)
        policy.authenticated(client, nowMillis: 100)
        policy.allocationStarted(client)
        #expect(policy.pendingCount == 0)
        // Authenticated Refreshes while allocated do not start an idle clock.
        policy.authenticated(client, nowMillis: 500_000)
        #expect(policy.expire(nowMillis: 10_000_000).isEmpty)
        policy.allocationEnded(client, nowMillis: 10_000_000)
        #expect(policy.expire(nowMillis: 10_029_999).isEmpty)
        #expect(policy.expire(nowMillis: 10_030_000).map(\.1) == [.idle])
    }

    @Test func thePerSourceCapRefusesTheNPlusFirstAndAClosedOneMakesRoom() {
        var policy = Self.policy(perSource: 3)
        for port in 1...3 { #expect(policy.admit(Self.tcp("198.51.100.7", UInt16(port)), nowMillis: 0) == nil) }
        #expect(policy.admit(Self.tcp("198.51.100.7", 4), nowMillis: 0) == .perSource)
        #expect(policy.counters.refusedPerSource == 1)
        // Refused connections hold nothing and have no deadline.
        #expect(policy.count == 3)
        #expect(policy.expire(nowMillis: 5_000).count == 3)
        // Another source is not affected.
        #expect(policy.admit(Self.tcp("198.51.100.8", 1), nowMillis: 0) == nil)
        policy.closed(Self.tcp("198.51.100.7", 2))
        #expect(policy.admit(Self.tcp("198.51.100.7", 5), nowMillis: 0) == nil)
    }

    @Test func theTotalCapRefusesTheNPlusFirstFromAnySource() {
        var policy = Self.policy(perSource: 0, total: 2)
        #expect(policy.admit(Self.tcp("198.51.100.1"), nowMillis: 0) == nil)
        #expect(policy.admit(Self.tcp("198.51.100.2"), nowMillis: 0) == nil)
        #expect(policy.admit(Self.tcp("198.51.100.3"), nowMillis: 0) == .total)
        #expect(policy.counters.refusedTotal == 1)
        policy.closed(Self.tcp("198.51.100.1"))
        #expect(policy.admit(Self.tcp("198.51.100.3"), nowMillis: 0) == nil)
    }

    @Test func zeroMeansNoCap() {
        var policy = Self.policy(perSource: 0, total: 0)
        for port in 1...500 { #expect(policy.admit(Self.tcp("198.51.100.7", UInt16(port)), nowMillis: 0) == nil) }
        #expect(policy.count == 500)
    }

    @Test func ipv6SourcesAreGroupedBySlash64AndMappedIPv4IsIPv4() {
        var policy = Self.policy(perSource: 2)
        #expect(policy.admit(Self.tcp("2001:db8:1:2::1"), nowMillis: 0) == nil)
        #expect(policy.admit(Self.tcp("2001:db8:1:2:ffff:ffff:ffff:ffff"), nowMillis: 0) == nil)
        #expect(policy.admit(Self.tcp("2001:db8:1:2:abcd::9"), nowMillis: 0) == .perSource)
        // The neighbouring /64 is another source.
        #expect(policy.admit(Self.tcp("2001:db8:1:3::1"), nowMillis: 0) == nil)
        // A dual-stack socket shows 198.51.100.7 as ::ffff:198.51.100.7: one source with it.
        #expect(policy.admit(Self.tcp("198.51.100.7", 1), nowMillis: 0) == nil)
        #expect(policy.admit(Self.tcp("::ffff:198.51.100.7", 2), nowMillis: 0) == nil)
        #expect(policy.admit(Self.tcp("198.51.100.7", 3), nowMillis: 0) == .perSource)
        #expect(policy.connections(from: IPAddress("::ffff:198.51.100.7")!) == 2)
    }

    @Test func eventsForAConnectionAlreadyGoneAreIgnored() {
        var policy = Self.policy()
        let client = Self.tcp("198.51.100.7")
        policy.authenticated(client, nowMillis: 0)
        policy.allocationStarted(client)
        policy.allocationEnded(client, nowMillis: 0)
        policy.closed(client)
        #expect(policy.count == 0)
        #expect(policy.pendingCount == 0)
    }
}

/// TURNCore tells the engine which requests proved their sender (`ConnectionPolicy.authenticated`).
@Suite struct AuthenticatedRequestTests {
    @Test func anAuthenticatedRequestIsReportedForItsFiveTuple() {
        let harness = Harness()
        harness.allocate()
        #expect(harness.core.lastAuthenticated == harness.client)
        // An unauthenticated Binding clears it: it reports the last message only.
        _ = harness.send(STUNMessage(.binding, .request), integrity: false)
        #expect(harness.core.lastAuthenticated == nil)
    }
}
