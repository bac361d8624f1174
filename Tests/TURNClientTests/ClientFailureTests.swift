import NIOCore
import Testing
import TURNClient
import Wire
@testable import Relay

/// Failures: refusals from the relay's core, scripted answers, hostile bytes and timeouts.
@Suite struct ClientFailureTests {
    static let key = STUNCredentials.longTermKey(username: "bob", realm: "switchboard", password: "bob-password")

    @Test func aWrongPasswordFailsWith401AfterOneRetry() {
        let loop = RelayLoop(password: "wrong")
        loop.start()
        #expect(loop.events == [.failed(.rejected(.unauthorized))])
        #expect(loop.sentRequests(.allocate).count == 2)
        #expect(loop.client.state == .failed)
        #expect(loop.client.nextDeadline == nil)
    }

    @Test func aFullQuotaFailsWith486() {
        let first = RelayLoop(configureRelay: { $0.userQuota = 1 })
        first.start()
        #expect(first.client.state == .allocated)
        let second = RelayLoop(relay: first.relay, clientPort: 40001)
        second.start()
        guard case .failed(.rejected(let code)) = second.events.last else {
            Issue.record("no failure: \(second.events)")
            return
        }
        #expect(code.code == 486)
    }

    @Test func aServerOutOfCapacityFailsWith508() {
        let loop = RelayLoop()
        loop.relay.acceptingAllocations = false
        loop.start()
        #expect(loop.events == [.failed(.rejected(STUNErrorCode(508, "")))])
    }

    @Test func aForbiddenPeerFailsItsPermissionAndDropsWhatWaited() throws {
        let loop = RelayLoop()
        loop.start()
        let forbidden = TransportAddress(ip: IPAddress("10.0.0.1")!, port: 5000)
        loop.send([1], to: forbidden)
        #expect(loop.events.last == .permissionFailed(forbidden.ip, .rejected(STUNErrorCode(403, ""))))
        #expect(loop.client.counters.sendDrops == 1)
        // Further sends are dropped without asking again until the retry delay has passed.
        loop.send([2], to: forbidden)
        #expect(loop.sentRequests(.createPermission).count == 1)
        loop.advance(milliseconds: 30_000)
        loop.send([3], to: forbidden)
        #expect(loop.sentRequests(.createPermission).count == 2)
        #expect(loop.client.state == .allocated)
    }

    @Test func garbageFromTheServerIsDroppedAndCountedAndTheAllocationGoesOn() throws {
        let loop = RelayLoop()
        loop.start()
        let before = loop.events
        var truncated = STUNMessage(.allocate, .successResponse).encoded()
        truncated[3] = 0xFC  // says 252 bytes of attributes, has none
        var stunLike = [UInt8](repeating: 0, count: 20)
        stunLike[4...7] = [0x21, 0x12, 0xA4, 0x43]  // wrong cookie
        let inputs: [[UInt8]] = [
            [], [0x00], [0xFF, 0xFF, 0xFF], stunLike, truncated,
            Array(repeating: 0x01, count: 70_000),  // oversized
            [0x40, 0x00, 0xFF, 0xFF, 1, 2],  // ChannelData that claims 65535 bytes
            [0x4A, 0xBC, 0x00, 0x01, 0x07, 0, 0, 0],  // ChannelData on a channel never bound
            [0x80] + Array(repeating: 0, count: 30),  // RTP-looking
        ]
        for input in inputs { loop.deliver(input) }
        #expect(loop.client.counters.malformed == 8)
        #expect(loop.client.counters.unexpected == 1)
        #expect(loop.events == before)

        // A success response to no request of ours, and one with the right ID but the wrong method.
        loop.deliver(STUNMessage(.allocate, .successResponse).encoded(fingerprint: true))
        #expect(loop.client.counters.unknownTransactions == 1)

        // A Data indication from a peer without a permission, one without DATA, one with a bad FINGERPRINT.
        let stranger = TransportAddress(ip: IPAddress("198.51.100.66")!, port: 1)
        loop.deliver(TURNCore.dataIndication(from: stranger, payload: ByteBuffer(bytes: [1])))
        let id = TransactionID.random()
        loop.send([0])  // now the peer has a permission
        loop.deliver(STUNMessage(.data, .indication, transactionID: id, attributes: [
            .xorAddress(.xorPeerAddress, RelayLoop.peer, transactionID: id),
        ]).encoded())
        var badFingerprint = STUNMessage(.data, .indication, transactionID: id, attributes: [
            .xorAddress(.xorPeerAddress, RelayLoop.peer, transactionID: id), STUNAttribute(type: .data, value: [1]),
        ]).encoded(fingerprint: true)
        badFingerprint[badFingerprint.count - 1] ^= 0xFF
        loop.deliver(badFingerprint)
        #expect(loop.client.counters.unexpected == 2)
        #expect(loop.client.counters.malformed == 9)
        #expect(loop.client.counters.badFingerprints == 1)
        #expect(loop.received.isEmpty)

        // Still working.
        #expect(loop.peerSends([42]))
        #expect(loop.received.map(\.payload) == [[42]])
        #expect(loop.client.state == .allocated)
    }

    @Test func aResponseWithTheWrongMethodOrAForgedIntegrityIsIgnored() throws {
        let loop = RelayLoop()
        loop.start()
        loop.holdReplies = true
        loop.send([1])
        let request = try #require(loop.sentRequests(.createPermission).first)
        // The right transaction ID with the wrong method.
        loop.deliver(STUNMessage(.channelBind, .successResponse, transactionID: request.transactionID).encoded())
        #expect(loop.client.counters.unknownTransactions == 1)
        // A success without MESSAGE-INTEGRITY, and one signed with another key.
        loop.deliver(STUNMessage(.createPermission, .successResponse, transactionID: request.transactionID).encoded())
        loop.deliver(STUNMessage(.createPermission, .successResponse, transactionID: request.transactionID)
            .encoded(integrityKey: Array(repeating: 7, count: 16)))
        #expect(loop.client.counters.badIntegrity == 2)
        #expect(loop.toPeer.isEmpty, "a forged success did not release the queued data")
        // The real answer still counts.
        loop.holdReplies = false
        loop.releaseHeld()
        #expect(loop.toPeer.map(\.payload) == [[1]])
    }

    @Test func anErrorSignedWithTheWrongKeyIsIgnoredAndTheRightOneCounts() throws {
        let loop = RelayLoop()
        loop.start()
        loop.holdReplies = true
        loop.send([1])
        let request = try #require(loop.sentRequests(.createPermission).first)
        let forbidden = STUNMessage(.createPermission, .errorResponse, transactionID: request.transactionID,
                                    attributes: [.errorCode(.forbidden)])
        loop.deliver(forbidden.encoded(integrityKey: Array(repeating: 7, count: 16)))
        #expect(loop.client.counters.badIntegrity == 1)
        loop.deliver(forbidden.encoded(integrityKey: Self.key, fingerprint: true))
        #expect(loop.events.last == .permissionFailed(RelayLoop.peer.ip, .rejected(.forbidden)))
    }

    @Test func refreshRefusedWith437FailsTheAllocation() throws {
        let loop = RelayLoop()
        loop.start()
        loop.holdReplies = true
        loop.advance(milliseconds: 540_000)
        let refresh = try #require(loop.sentRequests(.refresh).first)
        loop.deliver(STUNMessage(.refresh, .errorResponse, transactionID: refresh.transactionID,
                                 attributes: [.errorCode(.allocationMismatch)]).encoded(integrityKey: Self.key))
        #expect(loop.events.last == .failed(.rejected(.allocationMismatch)))
        #expect(loop.client.state == .failed)
    }

    @Test func anAllocateSuccessWithoutARelayedAddressFails() throws {
        var client = TURNClientCore(configuration: TURNClientConfiguration(username: "u", password: "p"))
        let sent = client.start(now: 0)
        guard case .send(let bytes) = sent.first, let request = try? STUNMessage(datagram: bytes) else {
            Issue.record("no request")
            return
        }
        let actions = client.receive(ByteBuffer(bytes: STUNMessage(.allocate, .successResponse,
            transactionID: request.transactionID, attributes: [.lifetime(600)]).encoded()), now: 1)
        #expect(actions == [.event(.failed(.badResponse("Allocate success without XOR-RELAYED-ADDRESS")))])
    }

    @Test func staleNonceRetriesAreBounded() throws {
        var client = TURNClientCore(configuration: TURNClientConfiguration(username: "u", password: "p"))
        var actions = client.start(now: 0)
        var allocates = 0
        for round in 0..<10 {
            guard case .send(let bytes) = actions.first, let request = try? STUNMessage(datagram: bytes) else { break }
            allocates += 1
            let code: STUNErrorCode = round == 0 ? .unauthorized : .staleNonce
            actions = client.receive(ByteBuffer(bytes: STUNMessage(.allocate, .errorResponse,
                transactionID: request.transactionID, attributes: [
                    .errorCode(code), .text(.realm, "r"), .text(.nonce, "n\(round)"),
                ]).encoded()), now: 1)
        }
        #expect(allocates == 5)  // the challenge, the signed request, three 438 retries
        #expect(actions == [.event(.failed(.rejected(.staleNonce)))])
    }

    @Test func udpRequestsAreRetransmittedWithADoublingTimeoutThenFail() {
        var client = TURNClientCore(configuration: TURNClientConfiguration(username: "u", password: "p"))
        var sendTimes: [Int64] = []
        var failure: TURNClientEvent?
        func note(_ actions: [TURNClientAction], at now: Int64) {
            for action in actions {
                switch action {
                case .send: sendTimes.append(now)
                case .event(let event): failure = event
                }
            }
        }
        note(client.start(now: 0), at: 0)
        while let deadline = client.nextDeadline {
            note(client.tick(now: deadline - 1), at: deadline - 1)  // a millisecond early: nothing
            note(client.tick(now: deadline), at: deadline)
        }
        #expect(sendTimes == [0, 500, 1500, 3500, 7500, 15500, 31500])
        #expect(failure == .failed(.timeout(.allocate)))
        #expect(client.counters.retransmissions == 6)
        #expect(client.state == .failed)
    }

    @Test func streamRequestsAreSentOnceAndTimeOut() {
        var client = TURNClientCore(configuration: TURNClientConfiguration(username: "u", password: "p", transport: .tls))
        #expect(client.start(now: 0).count == 1)
        #expect(client.nextDeadline == 39_500)
        #expect(client.tick(now: 39_499).isEmpty)
        #expect(client.tick(now: 39_500) == [.event(.failed(.timeout(.allocate)))])
    }

    @Test func tablesAreBounded() {
        let loop = RelayLoop(configureClient: { $0.maxPermissions = 2; $0.maxPeers = 3 })
        loop.start()
        for index in 1...3 {
            loop.send([1], to: TransportAddress(ip: IPAddress("203.0.113.\(index)")!, port: 1000))
        }
        #expect(loop.sentRequests(.createPermission).count == 2)
        #expect(loop.client.counters.sendDrops == 1)
        // Peers (channels) on an IP that has a permission are bounded too.
        loop.send([1], to: TransportAddress(ip: IPAddress("203.0.113.1")!, port: 1001))
        loop.send([1], to: TransportAddress(ip: IPAddress("203.0.113.1")!, port: 1002))
        #expect(loop.client.counters.sendDrops == 2)
        // Too big for a ChannelData length, or the other family: dropped.
        loop.send(Array(repeating: 0, count: 70_000))
        loop.send([1], to: TransportAddress(ip: IPAddress("2001:db8::1")!, port: 1))
        #expect(loop.client.counters.sendDrops == 4)
    }

    @Test func aLostStreamFailsTheAllocation() {
        let loop = RelayLoop(transport: .tcp)
        loop.start()
        loop.run(loop.client.connectionLost(now: loop.now))
        #expect(loop.events.last == .failed(.connectionClosed))
    }
}
