import Foundation
import Testing
@testable import DTLS

/// Our DTLS client and server in memory: application data both ways, record boundaries,
/// lost flights and the retransmission timer, fingerprints, hostile datagrams, close_notify.
@Suite struct DTLSEndpointTests {
    @Test func withoutSRTPBothSidesConnectAndCarryApplicationDataBothWays() throws {
        let link = try Link.make()
        link.handshake()
        #expect(link.client.state == .connected && link.server.state == .connected)
        #expect(link.clientEvents == [.connected] && link.serverEvents == [.connected])
        #expect(link.client.remoteFingerprint() == (try Certificates.server.sha256Fingerprint))
        #expect(link.server.remoteFingerprint() == (try Certificates.client.sha256Fingerprint))
        // No use_srtp was offered (RFC 8261 data channels): there are no SRTP keys.
        #expect(throws: OpenSSLError.self) { try link.client.srtpKeyingMaterial() }

        try link.send(Array("ping from the client".utf8), from: .client)
        try link.send(Array("pong from the server".utf8), from: .server)
        #expect(link.receivedByServer == [Array("ping from the client".utf8)])
        #expect(link.receivedByClient == [Array("pong from the server".utf8)])
        // What crossed the link was encrypted.
        #expect(!link.sent.contains { contains($0, Array("ping from".utf8)) || contains($0, Array("pong from".utf8)) })
    }

    @Test(arguments: [
        ([SRTPProfile.aeadAes128Gcm, .aes128CmHmacSha1_80], SRTPProfile.aeadAes128Gcm),
        ([.aes128CmHmacSha1_80], .aes128CmHmacSha1_80),
    ])
    func withSRTPBothSidesExportTheSameKeysForTheNegotiatedProfile(offered: [SRTPProfile], expected: SRTPProfile) throws {
        let client = try DTLSEndpoint(context: try DTLSContext(certificate: try Certificates.client, srtpProfiles: offered),
                                      role: .client, remoteFingerprints: [try Certificates.server.sha256Fingerprint])
        let server = try DTLSEndpoint(
            context: try DTLSContext(certificate: try Certificates.server, srtpProfiles: [.aeadAes128Gcm, .aes128CmHmacSha1_80]),
            role: .server, remoteFingerprints: [try Certificates.client.sha256Fingerprint])
        Link(client: client, server: server).handshake()
        let clientKeys = try client.srtpKeyingMaterial()
        let serverKeys = try server.srtpKeyingMaterial()
        #expect(clientKeys == serverKeys)
        #expect(clientKeys.profile == expected)
        #expect(clientKeys.clientKey.count == 16 && clientKeys.clientSalt.count == expected.saltLength)
        #expect(clientKeys.clientKey != clientKeys.serverKey)
    }

    @Test func aLargeWriteIsSplitIntoRecordsThatArriveWholeAndInOrder() throws {
        let link = try Link.make()
        link.handshake()
        let message = (0..<100_000).map { UInt8(truncatingIfNeeded: $0 &* 31 &+ $0 >> 8) }
        try link.send(message, from: .client)
        // 16384 bytes a record at most: 7 records.
        #expect(link.receivedByServer.map(\.count) == [16_384, 16_384, 16_384, 16_384, 16_384, 16_384, 1_696])
        #expect(link.receivedByServer.flatMap { $0 } == message)

        try link.send(Array(message.reversed()), from: .server)
        #expect(link.receivedByClient.count == 7)
        #expect(link.receivedByClient.flatMap { $0 } == Array(message.reversed()))
    }

    @Test func withSmallerRecordsEveryDatagramFitsTheMTU() throws {
        var configuration = DTLSEndpoint.Configuration()
        configuration.maxRecordPayload = 1000
        let link = try Link.make(configuration: configuration)
        link.handshake()
        let message = (0..<50_000).map { UInt8(truncatingIfNeeded: $0) }
        try link.send(message, from: .server)
        #expect(link.receivedByClient.count == 50)
        #expect(link.receivedByClient.flatMap { $0 } == message)
        #expect(link.sent.allSatisfy { $0.count <= 1200 })
        #expect(link.server.dataMTU > 1000 && link.server.dataMTU < 1200)
    }

    /// SCTP over DTLS needs one SCTP packet per record (RFC 8261 §5): a write up to the
    /// record limit is one record, which the peer gets as one element.
    @Test(arguments: [1, 1100, 16_384])
    func aWriteUpToTheRecordLimitIsExactlyOneRecord(size: Int) throws {
        let link = try Link.make()
        link.handshake()
        for fill: UInt8 in [1, 2, 3] { try link.send([UInt8](repeating: fill, count: size), from: .client) }
        #expect(link.receivedByServer == [1, 2, 3].map { [UInt8](repeating: $0, count: size) })
    }

    @Test func everyHandshakeDatagramFitsTheConfiguredMTU() throws {
        var configuration = DTLSEndpoint.Configuration()
        configuration.mtu = 400
        let link = try Link.make(configuration: configuration)
        link.handshake()
        #expect(link.client.state == .connected && link.server.state == .connected)
        #expect(link.sent.allSatisfy { $0.count <= 400 })
        #expect(link.client.dataMTU > 0 && link.client.dataMTU < 400)
    }

    @Test func writesBeforeTheHandshakeEndsWaitUpToTheirBoundThenGoOutInOrder() throws {
        var configuration = DTLSEndpoint.Configuration()
        configuration.maxBufferedBytes = 1000
        let link = try Link.make(configuration: configuration)
        #expect(link.client.dataMTU == 0)
        #expect(try link.client.write([UInt8](repeating: 1, count: 600)).isEmpty)
        #expect(try link.client.write([UInt8](repeating: 2, count: 400)).isEmpty)
        #expect(throws: DTLSEndpoint.WriteError.bufferFull) { try link.client.write([3]) }
        // The server's goes out with its last flight: it shares the Finished's datagram.
        #expect(try link.server.write(Array("early".utf8)).isEmpty)
        link.handshake()
        #expect(link.receivedByServer == [[UInt8](repeating: 1, count: 600), [UInt8](repeating: 2, count: 400)])
        #expect(link.receivedByClient == [Array("early".utf8)])
    }

    @Test func aLostFlightIsSentAgainWhenTheTimerRunsOutOnTheTestClock() throws {
        var configuration = DTLSEndpoint.Configuration()
        configuration.initialRetransmissionTimeout = .milliseconds(40)
        let link = try Link.make(configuration: configuration)
        var losing = true
        link.lose = { _, toServer in toServer && losing }
        func isClientHello(_ datagram: [UInt8]) -> Bool { datagram.count > 13 && datagram[0] == 22 && datagram[13] == 1 }

        link.start()
        link.deliver()
        #expect(link.sent.filter(isClientHello).count == 1)
        let first = try #require(link.client.nextTimeout)
        #expect(first > .milliseconds(20) && first <= .milliseconds(40))
        #expect(link.server.nextTimeout == nil)  // it never heard of the client

        // Twice lost: not before the timer, then again after it.
        link.advance(by: .milliseconds(20))
        #expect(link.sent.filter(isClientHello).count == 1)
        link.advance(by: .milliseconds(25))
        #expect(link.sent.filter(isClientHello).count == 2)
        // The timeout doubles (RFC 6347 §4.2.4.1).
        let second = try #require(link.client.nextTimeout)
        #expect(second > .milliseconds(55) && second <= .milliseconds(80))

        losing = false
        link.advance(by: .milliseconds(45))
        #expect(link.sent.filter(isClientHello).count == 2)
        #expect(link.client.state == .handshaking)
        link.advance(by: .milliseconds(40))
        #expect(link.sent.filter(isClientHello).count == 3)
        #expect(link.client.state == .connected && link.server.state == .connected)
        try link.send(Array("after the loss".utf8), from: .client)
        #expect(link.receivedByServer == [Array("after the loss".utf8)])
    }

    @Test func aClientThatExpectsAnotherCertificateRefusesTheServerAndNeitherSideConnects() throws {
        let other = try Certificates.other.sha256Fingerprint
        let link = try Link.make(clientExpects: [other])
        link.handshake()
        #expect(link.client.state == .failed(.fingerprintMismatch(expected: [other],
                                                                  received: try Certificates.server.sha256Fingerprint)))
        #expect(link.clientEvents == [.failed(.fingerprintMismatch(expected: [other],
                                                                   received: try Certificates.server.sha256Fingerprint))])
        // The client's alert ended the server's handshake too.
        #expect(link.serverEvents.count == 1)
        guard case .failed(.protocolError(let reason)) = link.server.state else {
            Issue.record("the server is \(link.server.state)")
            return
        }
        #expect(reason.contains("bad certificate"), "\(reason)")
        #expect(throws: DTLSEndpoint.WriteError.notOpen) { try link.client.write([1]) }
        #expect(throws: DTLSEndpoint.WriteError.notOpen) { try link.server.write([1]) }
    }

    @Test func aServerThatExpectsAnotherCertificateRefusesTheClientAndNeitherSideConnects() throws {
        let other = try Certificates.other.sha256Fingerprint
        let link = try Link.make(serverExpects: [other])
        link.handshake()
        #expect(link.server.state == .failed(.fingerprintMismatch(expected: [other],
                                                                  received: try Certificates.client.sha256Fingerprint)))
        #expect(!link.clientEvents.contains(.connected))
        guard case .failed = link.client.state else {
            Issue.record("the client is \(link.client.state)")
            return
        }
    }

    @Test func anSDPFingerprintMatchesInEitherCaseAndAmongOthersButAnEmptyListMatchesNothing() throws {
        let server = try Certificates.server
        let lower = try #require(DTLSFingerprint(sdp: server.sdpFingerprint.lowercased()))
        let expected = [try Certificates.other.fingerprint(.sha1), lower, try server.fingerprint(.sha512)]
        let link = try Link.make(clientExpects: expected)
        link.handshake()
        #expect(link.client.state == .connected)

        let none = try Link.make(clientExpects: [])
        none.handshake()
        #expect(none.client.state == .failed(.fingerprintMismatch(expected: [], received: server.sha256Fingerprint)))
    }

    @Test func garbageDatagramsAreDroppedWithoutHarmDuringAndAfterTheHandshake() throws {
        let link = try Link.make()
        var random = XorShift(seed: 0x5EED)
        let garbage: [[UInt8]] = [
            [],
            [0x17],
            [0x16, 0xFE, 0xFD, 0, 0, 0, 0, 0, 0, 0, 0, 0x40, 0x00],  // a header promising 16 KB more
            [0x80] + random.bytes(100),  // RTP by its first byte (RFC 7983), not DTLS
            [0x16] + random.bytes(299),
            [0x17, 0xFE, 0xFD, 0, 1] + random.bytes(6) + [0, 40] + random.bytes(40),  // epoch 1, bad MAC
            [0x16] + random.bytes(70_000),  // longer than any UDP payload
        ]
        func feed(_ endpoint: DTLSEndpoint, _ role: DTLSEndpoint.Role) {
            for datagram in garbage { link.take(endpoint.receive(datagram), from: role) }
        }
        link.start()
        feed(link.server, .server)
        feed(link.client, .client)
        link.deliver()
        #expect(link.client.state == .connected && link.server.state == .connected,
                "client \(link.client.state), server \(link.server.state)")
        let clientHello = try #require(link.sent.first)

        feed(link.server, .server)
        feed(link.client, .client)
        // A forged plaintext fatal alert: after the handshake, epoch 0 is gone. (During it, such
        // an alert ends the handshake, as in every DTLS stack; ICE's checks keep forgers off
        // the path.)
        let forgedAlert: [UInt8] = [0x15, 0xFE, 0xFD, 0, 0, 0, 0, 0, 0, 0, 9, 0, 2, 2, 40]
        link.take(link.server.receive(forgedAlert), from: .server)
        link.take(link.client.receive(forgedAlert), from: .client)
        // A late copy of the client's first flight, a record replayed, a record altered.
        link.take(link.server.receive(clientHello), from: .server)
        let record = try link.client.write(Array("only once".utf8))
        for datagram in record + record { link.take(link.server.receive(datagram), from: .server) }
        var altered = try #require(try link.client.write(Array("altered".utf8)).first)
        altered[altered.count - 1] ^= 0x01
        link.take(link.server.receive(altered), from: .server)
        link.deliver()

        #expect(link.receivedByServer == [Array("only once".utf8)])
        #expect(link.client.state == .connected && link.server.state == .connected)
        #expect(link.clientEvents == [.connected] && link.serverEvents == [.connected])
        // Empty, RTP and too long were refused before OpenSSL saw them, twice each.
        #expect(link.server.droppedDatagrams == 6 && link.client.droppedDatagrams == 6)
        try link.send(Array("still here".utf8), from: .server)
        #expect(link.receivedByClient == [Array("still here".utf8)])
    }

    @Test(arguments: [DTLSEndpoint.Role.client, .server])
    func closeNotifyIsSentAndThePeerReportsAndAnswersIt(closer: DTLSEndpoint.Role) throws {
        let link = try Link.make()
        link.handshake()
        let (closing, other) = closer == .client ? (link.client, link.server) : (link.server, link.client)
        var output = DTLSEndpoint.Output()
        output.datagrams = closing.close()
        #expect(output.datagrams.count == 1 && output.datagrams.first?.first == 21)  // an alert record
        #expect(closing.state == .closed && !closing.closeNotifyReceived)
        let sentBefore = link.sent.count
        link.take(output, from: closer)
        link.deliver()

        #expect(other.state == .closed && other.closeNotifyReceived)
        let events = closer == .client ? link.serverEvents : link.clientEvents
        #expect(events == [.connected, .closeNotifyReceived])
        // The other side answered with its own close_notify (RFC 5246 §7.2.1).
        #expect(link.sent.count == sentBefore + 2 && link.sent.last?.first == 21)
        #expect((closer == .client ? link.clientEvents : link.serverEvents) == [.connected])

        #expect(throws: DTLSEndpoint.WriteError.notOpen) { try other.write([1]) }
        #expect(throws: DTLSEndpoint.WriteError.notOpen) { try closing.write([1]) }
        #expect(other.close().isEmpty)
        #expect(other.receive(output.datagrams[0]) == DTLSEndpoint.Output())
    }

    @Test func aTamperedHandshakeFailsInsteadOfConnecting() throws {
        let link = try Link.make()
        // Flip a byte inside every record body the server gets after the first flight.
        var delivered = 0
        link.start()
        for _ in 0..<20 where !(link.toServer.isEmpty && link.toClient.isEmpty) {
            let forServer = link.toServer, forClient = link.toClient
            link.toServer = []
            link.toClient = []
            for datagram in forServer {
                delivered += 1
                var changed = datagram
                if delivered > 1, changed.count > 40 { changed[changed.count - 5] ^= 0xFF }
                link.take(link.server.receive(changed), from: .server)
            }
            for datagram in forClient { link.take(link.client.receive(datagram), from: .client) }
        }
        #expect(link.server.state != .connected)
        #expect(!link.serverEvents.contains(.connected))
        #expect(throws: OpenSSLError.self) { try link.server.srtpKeyingMaterial() }
    }

    @Test func recordsArePackedIntoDatagramsUnderTheMTU() {
        func record(_ length: Int) -> [UInt8] {
            [22, 0xFE, 0xFD] + [UInt8](repeating: 0, count: 8) + [UInt8(length >> 8), UInt8(length & 0xFF)]
                + [UInt8](repeating: 7, count: length)
        }
        let bytes = record(500) + record(500) + record(500) + record(10)
        let datagrams = DTLSRecords.pack(bytes, mtu: 1200)
        #expect(datagrams.map(\.count) == [1026, 513 + 23])
        #expect(datagrams.flatMap { $0 } == bytes)
        // A record longer than the MTU goes alone; a stray tail is passed on.
        let big = record(2000)
        #expect(DTLSRecords.pack(record(10) + big + [1, 2], mtu: 1200).map(\.count) == [23, 2013 + 2])
    }
}

func contains(_ haystack: [UInt8], _ needle: [UInt8]) -> Bool {
    guard needle.count <= haystack.count else { return false }
    return (0...(haystack.count - needle.count)).contains { Array(haystack[$0..<($0 + needle.count)]) == needle }
}

/// Reproducible bytes for hostile input.
struct XorShift {
    var state: UInt64

    init(seed: UInt64) { state = seed }

    mutating func bytes(_ count: Int) -> [UInt8] {
        (0..<count).map { _ in
            state ^= state << 13
            state ^= state >> 7
            state ^= state << 17
            return UInt8(truncatingIfNeeded: state)
        }
    }
}
