import NIOCore
import Testing
import TURNClient
import Wire
@testable import Relay

/// The client core against the relay's own state machine (`TURNCore`), in process, one clock.
@Suite struct ClientAgainstRelayCoreTests {
    static let peer = RelayLoop.peer

    /// An allocated loop with a channel bound to `peer` (the first send creates the
    /// permission, goes as a Send indication and binds the channel).
    static func boundLoop(transport: TURNClientTransport = .udp) -> RelayLoop {
        let loop = RelayLoop(transport: transport)
        loop.start()
        loop.send([0])
        return loop
    }

    @Test func allocatesAfterTheChallengeWithTheLongTermKey() throws {
        let loop = RelayLoop()
        loop.start()
        #expect(loop.events == [.allocated(relayed: loop.relayed, mapped: loop.fiveTuple.client, lifetime: 600)])
        #expect(loop.client.state == .allocated)
        let allocates = loop.sentRequests(.allocate)
        #expect(allocates.count == 2)
        #expect(!allocates[0].hasIntegrity, "the first Allocate goes without credentials")
        let key = STUNCredentials.longTermKey(username: "bob", realm: "switchboard", password: "bob-password")
        #expect(allocates[1].verifyIntegrity(key: key))
        #expect(try allocates[1].text(.username) == "bob")
        #expect(try allocates[1].requestedTransport() == 17)
        #expect(loop.relay.counters.authChallenges == 1)
        #expect(loop.relay.allocationCount == 1)
    }

    @Test func dataWaitsForItsPermissionAndThenGoesAsASendIndication() throws {
        let loop = RelayLoop()
        loop.start()
        loop.holdReplies = true
        loop.send([1])
        loop.send([2])
        loop.send([3])
        // One CreatePermission for the IP, nothing relayed while it is pending.
        #expect(loop.sentRequests(.createPermission).count == 1)
        #expect(loop.toPeer.isEmpty)
        loop.holdReplies = false
        loop.releaseHeld()
        #expect(loop.toPeer.map(\.payload) == [[1], [2], [3]])
        #expect(loop.toPeer.allSatisfy { $0.peer == Self.peer })
        #expect(loop.client.counters.sendIndications == 3)
        let permission = try #require(loop.sentRequests(.createPermission).first)
        #expect(try permission.xorAddress(.xorPeerAddress)?.ip == Self.peer.ip)
    }

    @Test func theQueueForAPendingPermissionIsBoundedAndCountsItsDrops() {
        let loop = RelayLoop(configureClient: { $0.queuedPacketsPerPermission = 4 })
        loop.start()
        loop.holdReplies = true
        for index in 0..<10 { loop.send([UInt8(index)]) }
        #expect(loop.client.counters.queueDrops == 6)
        loop.holdReplies = false
        loop.releaseHeld()
        #expect(loop.toPeer.map(\.payload) == [[0], [1], [2], [3]])
    }

    @Test func aChannelIsBoundAfterThePermissionAndCarriesDataBothWays() throws {
        let loop = Self.boundLoop()
        #expect(loop.events.contains(.channelBound(peer: Self.peer, channel: 0x4000)))
        let methods = loop.sentMessages.filter { $0.type.messageClass != .successResponse }.map(\.type.method)
        #expect(methods == [.allocate, .allocate, .createPermission, .send, .channelBind])

        loop.send(Array("over the channel".utf8))
        let frame = try #require(loop.sentChannelData.last)
        #expect(frame.channel == 0x4000)
        #expect(loop.toPeer.last?.payload == Array("over the channel".utf8))
        #expect(loop.toPeer.last?.peer == Self.peer)

        #expect(loop.peerSends(Array("back".utf8)))
        #expect(loop.received.last?.payload == Array("back".utf8))
        #expect(loop.received.last?.peer == Self.peer)
        #expect(loop.client.boundChannel(for: Self.peer, now: loop.now) == 0x4000)
    }

    @Test func dataIndicationsFromAPermittedPeerAreDelivered() {
        let loop = RelayLoop(configureClient: { $0.useChannels = false })
        loop.start()
        loop.send([9])
        #expect(loop.sentRequests(.channelBind).isEmpty)
        #expect(loop.peerSends([4, 5, 6]))
        #expect(loop.received.map(\.payload) == [[4, 5, 6]])
        // Another port on the same IP is covered by the IP's permission.
        let otherPort = TransportAddress(ip: Self.peer.ip, port: 7001)
        #expect(loop.peerSends([7], from: otherPort))
        #expect(loop.received.last?.peer == otherPort)
    }

    @Test func anIPv6AllocationIsAskedForAndRelaysToIPv6Peers() throws {
        let loop = RelayLoop(configureRelay: { $0.relayIPs = [IPAddress("192.0.2.1")!, IPAddress("2001:db8::1")!] },
                             configureClient: { $0.requestedFamily = .ipv6 })
        loop.start()
        #expect(loop.client.allocation?.relayed == loop.relayedIPv6)
        let peer = TransportAddress(ip: IPAddress("2001:db8:5::7")!, port: 7000)
        loop.send([1], to: peer)
        loop.send([2], to: RelayLoop.peer)  // the other family: dropped here, not refused by the server
        #expect(loop.toPeer.map(\.peer) == [peer])
        #expect(loop.client.counters.sendDrops == 1)
    }

    @Test func overTCPChannelDataIsPaddedToFour() throws {
        let loop = Self.boundLoop(transport: .tcp)
        loop.send([1, 2, 3, 4, 5])
        let last = try #require(loop.sent.last)
        #expect(last.readableBytes == 12)
        #expect(loop.toPeer.last?.payload == [1, 2, 3, 4, 5])
        #expect(loop.peerSends([6, 7]))
        #expect(loop.received.last?.payload == [6, 7])
    }

    @Test func theAllocationIsRefreshedExactlyAMinuteBeforeItExpires() throws {
        let loop = RelayLoop()
        loop.start()
        let allocatedAt = loop.now
        #expect(loop.client.nextDeadline == allocatedAt + 540_000)
        loop.advance(milliseconds: 539_999)
        #expect(loop.sentRequests(.refresh).isEmpty)
        loop.advance(milliseconds: 1)
        #expect(loop.sentRequests(.refresh).count == 1)
        let allocation = try #require(loop.relay.allocation(for: loop.fiveTuple))
        #expect(allocation.expiresAt == allocatedAt + 540_000 + 600_000)
        #expect(loop.client.nextDeadline == allocatedAt + 540_000 + 540_000)
        // Without that refresh the relay would have ended it at 600 s.
        loop.advance(milliseconds: 120_000)
        #expect(loop.relay.expire(time: loop.time).isEmpty)
        #expect(loop.client.state == .allocated)
    }

    @Test func aStaleNonceIsReplacedAndTheRequestRetried() throws {
        // Nonces that last 500 s: the refresh due at 540 s meets 438 Stale Nonce.
        let loop = RelayLoop(configureRelay: { $0.nonceLifetime = 500 })
        loop.start()
        loop.advance(milliseconds: 540_000)
        let refreshes = loop.sentRequests(.refresh)
        try #require(refreshes.count == 2)
        #expect(try refreshes[0].text(.nonce) != refreshes[1].text(.nonce))
        #expect(loop.relay.allocation(for: loop.fiveTuple)?.expiresAt == loop.now + 600_000)
        #expect(loop.client.state == .allocated)
        // Later requests use the fresh nonce at once.
        loop.send([1])
        #expect(loop.sentRequests(.createPermission).count == 1)
        #expect(loop.toPeer.map(\.payload) == [[1]])
        #expect(!loop.events.contains { if case .failed = $0 { true } else { false } })
    }

    @Test func permissionsInUseAreRefreshedAndIdleOnesLapse() throws {
        let loop = Self.boundLoop()
        let idle = TransportAddress(ip: IPAddress("203.0.113.9")!, port: 9000)
        loop.send([1], to: idle)
        loop.advance(milliseconds: 200_000)
        loop.send([2])  // the first peer stays in use
        loop.advance(milliseconds: 40_000)  // 240 s: the refresh is due
        let refreshed = loop.sentRequests(.createPermission).compactMap { try? $0.xorAddress(.xorPeerAddress)?.ip }
        #expect(refreshed == [Self.peer.ip, idle.ip, Self.peer.ip])
        loop.advance(milliseconds: 61_000)  // 301 s
        let allocation = try #require(loop.relay.allocation(for: loop.fiveTuple))
        #expect(allocation.hasPermission(for: Self.peer.ip, nowMillis: loop.now))
        #expect(!allocation.hasPermission(for: idle.ip, nowMillis: loop.now))
        // Sending to the lapsed peer again asks for its permission again.
        loop.send([3], to: idle)
        #expect(loop.sentRequests(.createPermission).count == 4)
        #expect(loop.toPeer.last?.payload == [3])
    }

    @Test func channelsInUseAreRefreshedBeforeTheyExpire() throws {
        let loop = Self.boundLoop()
        for _ in 0..<9 {
            loop.advance(milliseconds: 60_000)
            loop.send([1])
        }
        // Bound at 0, refreshed at 540 s: two ChannelBinds for the one number.
        let binds = loop.sentRequests(.channelBind)
        #expect(binds.count == 2)
        #expect(binds.compactMap { try? $0.channelNumber() } == [0x4000, 0x4000])
        loop.advance(milliseconds: 120_000)  // 660 s: past the first binding's 600 s
        loop.send([2])
        #expect(loop.sentChannelData.last.map { Array($0.data.readableBytesView) } == [2])
        #expect(loop.toPeer.last?.payload == [2])
    }

    @Test func closingSendsRefreshZeroAndTheRelayEndsTheAllocation() throws {
        let loop = Self.boundLoop()
        loop.close()
        let last = try #require(loop.sentRequests(.refresh).last)
        #expect(try last.lifetime() == 0)
        #expect(loop.events.last == .closed)
        #expect(loop.client.state == .closed)
        #expect(loop.relay.allocationCount == 0)
        #expect(loop.client.nextDeadline == nil)
        // Nothing more goes out after the close.
        let count = loop.sent.count
        loop.send([1])
        #expect(loop.sent.count == count)
    }

    @Test func closeEndsEvenWhenTheServerNeverAnswers() {
        let loop = RelayLoop()
        loop.start()
        loop.dropRequests = true
        loop.close()
        #expect(loop.client.state == .closing)
        loop.advance(milliseconds: 39_499)
        #expect(loop.client.state == .closing)
        loop.advance(milliseconds: 1)
        #expect(loop.events.last == .closed)
    }
}
