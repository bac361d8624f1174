import NIOCore
import Testing
import Wire
@testable import Relay

@Suite struct AuthenticationTests {
    @Test func aRequestWithoutCredentialsIsChallengedWithRealmAndNonce() throws {
        let harness = Harness()
        let response = try #require(harness.respond(STUNMessage(.allocate, .request, attributes: [.requestedTransport(17)]),
                                                    integrity: false))
        #expect(response.errorCodeValue == 401)
        #expect(try response.text(.realm) == "switchboard")
        #expect(try response.text(.nonce)?.count == 40)
        #expect(!response.contains(.messageIntegrity))
        #expect(harness.core.counters.authChallenges == 1)
        #expect(harness.core.counters.authFailures == 0)
    }

    @Test func aWrongPasswordIs401AndCounted() throws {
        let harness = Harness()
        harness.password = "wrong"
        let response = harness.allocate()
        #expect(response.errorCodeValue == 401)
        #expect(harness.core.counters.authFailures == 1)
        #expect(harness.core.allocationCount == 0)
    }

    @Test func anUnknownUserIs401() {
        let harness = Harness()
        harness.username = "nobody"
        #expect(harness.allocate().errorCodeValue == 401)
    }

    @Test func repeatedFailuresFromOneSourceAreThrottledThenRecover() {
        let harness = Harness { $0.authFailureBurst = 3; $0.authFailuresPerSecond = 1 }
        harness.password = "wrong"
        for _ in 0..<3 { #expect(harness.allocate().errorCodeValue == 401) }
        #expect(harness.core.counters.authFailures == 3)
        // Out of tokens: even the right password is refused, unchecked, until the bucket refills.
        harness.password = "bob-password"
        #expect(harness.allocate().errorCodeValue == 401)
        #expect(harness.core.counters.authThrottled == 1)
        #expect(harness.core.counters.authFailures == 3)
        // Another source is not affected.
        var other = harness.client
        other.client = Harness.peer("198.51.100.7", 1234)
        harness.nonce = nil
        #expect(harness.allocate(from: other).isSuccess)
        // After a while the first source may try again.
        harness.advance(seconds: 2)
        harness.nonce = nil
        #expect(harness.allocate().isSuccess)
    }

    @Test func anAgedNonceGets438WithAFreshOne() throws {
        let harness = Harness()
        harness.nonce = harness.core.nonces.make(for: harness.client.client.ip, now: harness.time.unix)
        harness.advance(seconds: 601, keepNonce: true)
        let response = harness.allocate()
        #expect(response.errorCodeValue == 438)
        let fresh = try #require(try response.text(.nonce))
        #expect(fresh != harness.nonce)
        harness.nonce = fresh
        #expect(harness.allocate().isSuccess)
    }

    @Test func aForgedOrForeignNonceGets438() {
        let harness = Harness()
        harness.nonce = "0000000000000000aaaaaaaaaaaaaaaaaaaaaaaa"
        #expect(harness.allocate().errorCodeValue == 438)
        // A nonce made for another client IP does not work here either.
        harness.nonce = harness.core.nonces.make(for: IPAddress("198.51.100.9")!, now: harness.time.unix)
        #expect(harness.allocate().errorCodeValue == 438)
    }

    @Test func restCredentialsWorkUntilTheyExpire() {
        let harness = Harness()
        let credential = TURNRESTCredential(secret: "rest-secret", name: "alice", expiry: harness.time.unix + 60)
        harness.username = credential.username
        harness.password = credential.password
        #expect(harness.allocate().isSuccess)

        let late = Harness()
        let expired = TURNRESTCredential(secret: "rest-secret", name: "alice", expiry: late.time.unix - 1)
        late.username = expired.username
        late.password = expired.password
        #expect(late.allocate().errorCodeValue == 401)

        let forged = Harness()
        let wrongSecret = TURNRESTCredential(secret: "guess", name: "alice", expiry: forged.time.unix + 60)
        forged.username = wrongSecret.username
        forged.password = wrongSecret.password
        #expect(forged.allocate().errorCodeValue == 401)
    }

    @Test func bindingIsAnsweredWithoutCredentials() throws {
        let harness = Harness()
        let response = try #require(harness.respond(STUNMessage(.binding, .request), integrity: false))
        #expect(response.isSuccess)
        #expect(try response.xorAddress(.xorMappedAddress) == harness.client.client)
    }

    @Test func unknownComprehensionRequiredAttributesGet420() throws {
        let harness = Harness()
        let response = harness.allocate([.requestedTransport(17), STUNAttribute(type: STUNAttributeType(rawValue: 0x7ABC), value: [1])])
        #expect(response.errorCodeValue == 420)
        #expect(try response.unknownAttributes() == [STUNAttributeType(rawValue: 0x7ABC)])
        #expect(response.verifyIntegrity(key: harness.key))
    }

    @Test func anUnknownMethodGets400() throws {
        let harness = Harness()
        let response = try #require(harness.respond(STUNMessage(STUNMethod(rawValue: 0x0F0), .request)))
        #expect(response.errorCodeValue == 400)
    }
}

@Suite struct AllocationTests {
    @Test func aSuccessfulAllocationIsSignedAndCarriesTheAddresses() throws {
        let harness = Harness()
        let response = harness.allocate(relayPort: 50002)
        #expect(response.isSuccess)
        #expect(response.verifyIntegrity(key: harness.key))
        #expect(try response.xorAddress(.xorRelayedAddress) == Harness.peer("192.0.2.1", 50002))
        #expect(try response.xorAddress(.xorMappedAddress) == harness.client.client)
        #expect(try response.lifetime() == 600)
        #expect(harness.core.allocationCount == 1)
    }

    @Test func aRetransmittedAllocateGetsTheSameAnswerAndAnotherGets437() throws {
        let harness = Harness()
        let request = STUNMessage(.allocate, .request, attributes: [.requestedTransport(17)])
        guard case .allocate(let plan) = harness.send(request) else { Issue.record("no plan"); return }
        let (_, first) = harness.core.completeAllocation(
            plan, relayed: [Harness.peer("192.0.2.1", 50000)], reservationToken: nil, time: harness.time)
        guard case .respond(let again) = harness.send(request) else { Issue.record("no answer"); return }
        #expect(again == first)
        #expect(harness.allocate().errorCodeValue == 437)
    }

    @Test(arguments: [
        ([STUNAttribute](), 400),
        ([.requestedTransport(6)], 442),
        ([.requestedTransport(17), .addressFamily(.requestedAddressFamily, .ipv6)], 440),
        ([.requestedTransport(17), .evenPort(reserveNext: false), .uint64(.reservationToken, 7)], 400),
        ([.requestedTransport(17), .addressFamily(.additionalAddressFamily, .ipv4)], 400),
        ([.requestedTransport(17), .addressFamily(.requestedAddressFamily, .ipv4),
          .addressFamily(.additionalAddressFamily, .ipv6)], 400),
        ([.requestedTransport(17), STUNAttribute(type: .requestedAddressFamily, value: [9, 0, 0, 0])], 400),
        ([.requestedTransport(17), STUNAttribute(type: .lifetime, value: [1])], 400),
    ])
    func badAllocateRequestsGetTheirErrorCode(attributes: [STUNAttribute], code: Int) {
        let harness = Harness()
        #expect(harness.allocate(attributes).errorCodeValue == code)
        #expect(harness.core.allocationCount == 0)
    }

    @Test func additionalIPv6IsGrantedWhenTheServerHasIPv6() throws {
        let harness = Harness { $0.relayIPs = [IPAddress("192.0.2.1")!, IPAddress("2001:db8::1")!] }
        let response = harness.allocate([.requestedTransport(17), .addressFamily(.additionalAddressFamily, .ipv6)])
        #expect(try response.xorAddresses(.xorRelayedAddress).map(\.ip.isIPv4) == [true, false])

        let v4only = Harness()
        let partial = v4only.allocate([.requestedTransport(17), .addressFamily(.additionalAddressFamily, .ipv6)])
        #expect(partial.isSuccess)
        #expect(partial[.addressErrorCode]?.prefix(4) == [2, 0, 4, 40])
    }

    @Test(arguments: [(UInt32(10), UInt32(600)), (900, 900), (100_000, 3600)])
    func lifetimesAreClampedBetweenDefaultAndMaximum(requested: UInt32, granted: UInt32) throws {
        let harness = Harness()
        #expect(try harness.allocate([.requestedTransport(17), .lifetime(requested)]).lifetime() == granted)
    }

    @Test func anAllocationExpiresAtTheEndOfItsLifetime() {
        let harness = Harness()
        harness.allocate()
        harness.advance(seconds: 599)
        #expect(harness.core.expire(time: harness.time).isEmpty)
        harness.advance(seconds: 1)
        let ended = harness.core.expire(time: harness.time)
        #expect(ended.count == 1 && ended.first?.1 == .expired)
        #expect(harness.core.allocationCount == 0)
    }

    @Test func refreshExtendsAndRefreshZeroEnds() throws {
        let harness = Harness()
        harness.allocate()
        harness.advance(seconds: 500)
        let refreshed = try #require(harness.respond(STUNMessage(.refresh, .request, attributes: [.lifetime(1200)])))
        #expect(try refreshed.lifetime() == 1200)
        harness.advance(seconds: 1100)
        #expect(harness.core.expire(time: harness.time).isEmpty)
        let outcome = harness.send(STUNMessage(.refresh, .request, attributes: [.lifetime(0)]))
        guard case .respondAndEnd(let bytes, let allocation, let reason) = outcome else {
            Issue.record("refresh 0 did not end the allocation: \(outcome)")
            return
        }
        let zero = try STUNMessage(bytes: bytes)
        #expect(zero.isSuccess)
        #expect(try zero.lifetime() == 0)
        #expect(reason == .refreshZero && allocation.fiveTuple == harness.client)
        // Gone at once: nothing is relayed, a retransmission gets 437 (success to the
        // client, RFC 8656 §7.3), and the same 5-tuple may allocate again.
        #expect(harness.core.allocationCount == 0)
        #expect(harness.core.clientChannelData(channel: 0x4000, length: 10, from: harness.client, nowMillis: harness.time.millis) == nil)
        #expect(harness.respond(STUNMessage(.refresh, .request, attributes: [.lifetime(0)]))?.errorCodeValue == 437)
        #expect(harness.allocate().isSuccess)
        #expect(harness.core.allocationCount == 1)
    }

    @Test func refreshWithoutAnAllocationIs437AndByAnotherUser441() throws {
        let harness = Harness()
        #expect(harness.respond(STUNMessage(.refresh, .request))?.errorCodeValue == 437)
        harness.allocate()
        harness.username = "eve"
        harness.password = "eve-password"
        #expect(harness.respond(STUNMessage(.refresh, .request))?.errorCodeValue == 441)
    }

    @Test func quotasPerUserAndInAll() {
        let harness = Harness { $0.userQuota = 1; $0.totalQuota = 2 }
        #expect(harness.allocate().isSuccess)
        var second = harness.client
        second.client.port = 40001
        #expect(harness.allocate(from: second).errorCodeValue == 486)
        harness.username = "eve"
        harness.password = "eve-password"
        #expect(harness.allocate(from: second).isSuccess)
        var third = harness.client
        third.client.port = 40002
        harness.username = "carol"
        harness.core.staticUsers["carol"] = harness.key(for: "carol", password: "c")
        harness.password = "c"
        #expect(harness.allocate(from: third).errorCodeValue == 508)
    }

    @Test func whileDrainingNewAllocationsGet508() {
        let harness = Harness()
        harness.core.acceptingAllocations = false
        #expect(harness.allocate().errorCodeValue == 508)
    }
}

@Suite struct PermissionAndChannelTests {
    static let peer = Harness.peer("203.0.113.5", 7000)

    @Test func aPermissionLetsThePeerInForFiveMinutes() throws {
        let harness = Harness()
        harness.allocate()
        let allocation = try #require(harness.core.allocation(for: harness.client))
        #expect(harness.core.peerData(to: allocation, from: Self.peer, length: 10, nowMillis: harness.time.millis) == nil)
        #expect(harness.respond(harness.createPermissionRequest([Self.peer]))?.isSuccess == true)
        // Any port of the permitted IP may send.
        let otherPort = Harness.peer("203.0.113.5", 7777)
        #expect(harness.core.peerData(to: allocation, from: otherPort, length: 10, nowMillis: harness.time.millis) != nil)
        harness.advance(seconds: 299)
        #expect(harness.core.peerData(to: allocation, from: Self.peer, length: 10, nowMillis: harness.time.millis) != nil)
        harness.advance(seconds: 1)
        #expect(harness.core.peerData(to: allocation, from: Self.peer, length: 10, nowMillis: harness.time.millis) == nil)
        #expect(allocation.packetsToClient == 2)
    }

    /// A client cannot reach the server's own services through its relay: ChannelBind to the
    /// TURN port of the relay's own address is 403 and a Send there is dropped, both counted;
    /// another client's relayed address (a relay port) works.
    @Test func theServersOwnPortsAreNotPeersButItsRelayedAddressesAre() throws {
        let harness = Harness { configuration in
            configuration.relayIPs = [IPAddress("203.0.113.1")!]
            configuration.filter.own = [IPAddress("203.0.113.1")!]
            configuration.filter.ownOpenPorts = 49152...65535
        }
        harness.allocate()
        let own = Harness.peer("203.0.113.1", 3478), relayed = Harness.peer("203.0.113.1", 50002)
        #expect(harness.respond(harness.createPermissionRequest([own]))?.isSuccess == true)
        #expect(harness.respond(harness.channelBindRequest(0x4001, own))?.errorCodeValue == 403)
        #expect(harness.respond(harness.channelBindRequest(0x4002, relayed))?.isSuccess == true)
        func send(to peer: TransportAddress) -> STUNMessage {
            let id = TransactionID.random()
            return STUNMessage(.send, .indication, transactionID: id, attributes: [
                .xorAddress(.xorPeerAddress, peer, transactionID: id), STUNAttribute(type: .data, value: [1, 2, 3]),
            ])
        }
        guard case .none = harness.send(send(to: own), integrity: false) else {
            Issue.record("a Send to the server's own TURN port went out")
            return
        }
        guard case .sendToPeer = harness.send(send(to: relayed), integrity: false) else {
            Issue.record("a Send to a relayed address did not go out")
            return
        }
        #expect(harness.core.counters.ownAddressDrops == 2)
    }

    @Test func forbiddenPeersGet403AndNothingIsInstalled() throws {
        let harness = Harness()
        harness.allocate()
        let response = harness.respond(harness.createPermissionRequest([Self.peer, Harness.peer("10.0.0.1")]))
        #expect(response?.errorCodeValue == 403)
        let allocation = try #require(harness.core.allocation(for: harness.client))
        #expect(allocation.permissions.isEmpty)
        #expect(harness.respond(harness.channelBindRequest(0x4000, Harness.peer("127.0.0.1")))?.errorCodeValue == 403)
        #expect(harness.core.counters.filterDrops == 2)
    }

    @Test func aPeerOfTheOtherFamilyGets443() {
        let harness = Harness()
        harness.allocate()
        #expect(harness.respond(harness.createPermissionRequest([Harness.peer("2001:db8::5")]))?.errorCodeValue == 443)
    }

    @Test func aChannelRoutesBothWaysAndExpires() throws {
        let harness = Harness()
        harness.allocate()
        let allocation = try #require(harness.core.allocation(for: harness.client))
        #expect(harness.respond(harness.channelBindRequest(0x4001, Self.peer))?.isSuccess == true)
        let route = try #require(harness.core.clientChannelData(channel: 0x4001, length: 5, from: harness.client,
                                                                nowMillis: harness.time.millis))
        #expect(route.peer == Self.peer)
        if case .channel(let number) = harness.core.peerData(to: allocation, from: Self.peer, length: 5,
                                                              nowMillis: harness.time.millis) {
            #expect(number == 0x4001)
        } else {
            Issue.record("expected ChannelData")
        }
        #expect(harness.core.clientChannelData(channel: 0x4002, length: 5, from: harness.client,
                                               nowMillis: harness.time.millis) == nil)
        // The channel lasts 10 minutes; its permission 5 unless refreshed.
        harness.advance(seconds: 301)
        #expect(harness.core.clientChannelData(channel: 0x4001, length: 5, from: harness.client,
                                               nowMillis: harness.time.millis) == nil)
        #expect(harness.respond(harness.createPermissionRequest([Self.peer]))?.isSuccess == true)
        #expect(harness.core.clientChannelData(channel: 0x4001, length: 5, from: harness.client,
                                               nowMillis: harness.time.millis) != nil)
        harness.advance(seconds: 300)
        #expect(harness.core.clientChannelData(channel: 0x4001, length: 5, from: harness.client,
                                               nowMillis: harness.time.millis) == nil)
    }

    @Test func channelNumbersAndPeersStayPairedUntilFiveMinutesAfterExpiry() throws {
        let harness = Harness()
        harness.allocate([.requestedTransport(17), .lifetime(3600)])
        let other = Harness.peer("203.0.113.6", 7000)
        #expect(harness.respond(harness.channelBindRequest(0x4001, Self.peer))?.isSuccess == true)
        #expect(harness.respond(harness.channelBindRequest(0x4001, other))?.errorCodeValue == 400)
        #expect(harness.respond(harness.channelBindRequest(0x4002, Self.peer))?.errorCodeValue == 400)
        harness.advance(seconds: 600)
        _ = harness.core.expire(time: harness.time)
        #expect(harness.respond(harness.channelBindRequest(0x4001, other))?.errorCodeValue == 400)
        harness.advance(seconds: 300)
        _ = harness.core.expire(time: harness.time)
        #expect(harness.respond(harness.channelBindRequest(0x4001, other))?.isSuccess == true)
    }

    @Test(arguments: [UInt16(0x3FFF), 0x8000, 0xFFFF, 0])
    func channelNumbersOutsideTheRangeGet400(number: UInt16) {
        let harness = Harness()
        harness.allocate()
        #expect(harness.respond(harness.channelBindRequest(number, Self.peer))?.errorCodeValue == 400)
    }

    @Test func sendIndicationsNeedAPermission() throws {
        let harness = Harness()
        harness.allocate()
        let id = TransactionID.random()
        let send = STUNMessage(.send, .indication, transactionID: id, attributes: [
            .xorAddress(.xorPeerAddress, Self.peer, transactionID: id), STUNAttribute(type: .data, value: [1, 2, 3]),
        ])
        if case .none = harness.send(send, integrity: false) {} else { Issue.record("sent without permission") }
        #expect(harness.core.counters.noPermissionDrops == 1)
        _ = harness.respond(harness.createPermissionRequest([Self.peer]))
        guard case .sendToPeer(_, let index, let peer, let payload) = harness.send(send, integrity: false) else {
            Issue.record("not sent")
            return
        }
        #expect(index == 0 && peer == Self.peer && payload == [1, 2, 3])
    }

    @Test func theBandwidthCapDropsWhatIsOverIt() throws {
        let harness = Harness { $0.bandwidthLimit = 1000 }
        harness.allocate()
        _ = harness.respond(harness.channelBindRequest(0x4001, Self.peer))
        var sent = 0
        for _ in 0..<20 where harness.core.clientChannelData(
            channel: 0x4001, length: 100, from: harness.client, nowMillis: harness.time.millis) != nil {
            sent += 1
        }
        #expect(sent == 10)
        #expect(harness.core.counters.bandwidthDrops == 10)
        harness.time.millis += 500
        #expect(harness.core.clientChannelData(channel: 0x4001, length: 400, from: harness.client,
                                               nowMillis: harness.time.millis) != nil)
    }

    @Test func aDisconnectEndsTheAllocation() {
        let harness = Harness()
        harness.allocate()
        #expect(harness.core.disconnect(harness.client)?.1 == .disconnected)
        #expect(harness.core.allocationCount == 0)
        #expect(harness.core.disconnect(harness.client) == nil)
    }
}
