import Foundation
import NIOCore
import Testing
@testable import MediaEdge
@testable import Wire

/// DTLS 1.2 with use_srtp between two OpenSSL endpoints in memory, then SRTP/SRTCP with the
/// exported keys through libsrtp2 — the media edge's security path without a network.
@Suite struct DTLSSRTPTests {
    /// Carries datagrams between the two until neither has anything to say.
    static func handshake(_ client: DTLSEndpoint, _ server: DTLSEndpoint, tamper: (([UInt8]) -> [UInt8])? = nil) {
        var toServer = client.start()
        var toClient: [[UInt8]] = []
        for _ in 0..<20 where !(toServer.isEmpty && toClient.isEmpty) {
            toClient = toServer.flatMap { server.receive(tamper?($0) ?? $0) }
            toServer = toClient.flatMap { client.receive($0) }
            toClient = []
        }
    }

    static func pair(profiles: [SRTPProfile] = [.aeadAes128Gcm, .aes128CmHmacSha1_80],
                     serverProfiles: [SRTPProfile]? = nil) throws -> (DTLSEndpoint, DTLSEndpoint, DTLSCertificate, DTLSCertificate) {
        let clientCertificate = try DTLSCertificate.generate(commonName: "client")
        let serverCertificate = try DTLSCertificate.generate(commonName: "server")
        let client = try DTLSEndpoint(context: try DTLSContext(certificate: clientCertificate, profiles: profiles), role: .client)
        let server = try DTLSEndpoint(context: try DTLSContext(certificate: serverCertificate,
                                                               profiles: serverProfiles ?? profiles), role: .server)
        return (client, server, clientCertificate, serverCertificate)
    }

    @Test func aHandshakeConnectsBothSidesAndEachSeesTheOthersFingerprint() throws {
        let (client, server, clientCertificate, serverCertificate) = try Self.pair()
        Self.handshake(client, server)
        #expect(client.state == .connected && server.state == .connected)
        #expect(client.remoteFingerprint == serverCertificate.fingerprint)
        #expect(server.remoteFingerprint == clientCertificate.fingerprint)
        #expect(clientCertificate.fingerprint.count == 32 * 3 - 1)
        #expect(clientCertificate.fingerprint != serverCertificate.fingerprint)
    }

    @Test(arguments: [
        ([SRTPProfile.aeadAes128Gcm, .aes128CmHmacSha1_80], SRTPProfile.aeadAes128Gcm),
        ([.aes128CmHmacSha1_80], .aes128CmHmacSha1_80),
    ])
    func bothSidesExportTheSameKeysForTheNegotiatedProfile(offered: [SRTPProfile], expected: SRTPProfile) throws {
        let (client, server, _, _) = try Self.pair(profiles: offered,
                                                   serverProfiles: [.aeadAes128Gcm, .aes128CmHmacSha1_80])
        Self.handshake(client, server)
        let clientKeys = try client.srtpKeyingMaterial()
        let serverKeys = try server.srtpKeyingMaterial()
        #expect(clientKeys == serverKeys)
        #expect(clientKeys.profile == expected)
        #expect(clientKeys.clientKey.count == 16 && clientKeys.clientSalt.count == expected.saltLength)
        #expect(clientKeys.clientKey != clientKeys.serverKey)
    }

    @Test(arguments: [SRTPProfile.aeadAes128Gcm, .aes128CmHmacSha1_80])
    func srtpWithTheExportedKeysProtectsAndRefusesAlteredAndReplayedPackets(profile: SRTPProfile) throws {
        let (client, server, _, _) = try Self.pair(profiles: [profile])
        Self.handshake(client, server)
        let keys = try server.srtpKeyingMaterial()
        // The server sends with the server keys; the client receives with them.
        let sender = try SRTPSession(profile: profile, key: keys.serverKey, salt: keys.serverSalt, direction: .outbound)
        let receiver = try SRTPSession(profile: profile, key: keys.serverKey, salt: keys.serverSalt, direction: .inbound)

        let rtp = RTPPacket(marker: true, payloadType: 96, sequenceNumber: 1000, timestamp: 90_000, ssrc: 0x1234_5678,
                            payload: ByteBuffer(bytes: Array(repeating: 0xAB, count: 100)))
        let plain = Array(rtp.bytes.readableBytesView)
        let protected = try sender.protect(rtp: plain)
        #expect(protected.count == plain.count + (profile == .aeadAes128Gcm ? 16 : 10))
        #expect(Array(protected[12..<112]) != Array(plain[12...]))  // the payload is encrypted
        #expect(try receiver.unprotect(srtp: protected) == plain)

        // Replayed: refused.
        #expect(throws: SRTPError.self) { try receiver.unprotect(srtp: protected) }
        do { _ = try receiver.unprotect(srtp: protected) } catch { #expect(error.isReplay) }
        // Altered: refused as an authentication failure.
        var altered = try sender.protect(rtp: Array(RTPPacket(payloadType: 96, sequenceNumber: 1001, timestamp: 90_000,
                                                             ssrc: 0x1234_5678, payload: ByteBuffer(bytes: [1, 2, 3])).bytes.readableBytesView))
        altered[13] ^= 0x01
        do {
            _ = try receiver.unprotect(srtp: altered)
            Issue.record("an altered packet was accepted")
        } catch {
            #expect(error.isAuthenticationFailure)
        }
        // The wrong direction's keys: refused.
        let wrongKeys = try SRTPSession(profile: profile, key: keys.clientKey, salt: keys.clientSalt, direction: .inbound)
        #expect(throws: SRTPError.self) { try wrongKeys.unprotect(srtp: protected) }

        // SRTCP: a sender report round trips.
        var report = ByteBuffer()
        RTCPPacket.senderReport(ssrc: 0x1234_5678, ntpTime: 1, rtpTime: 2, packetCount: 3, octetCount: 4, reports: [])
            .write(to: &report)
        let srtcp = try sender.protect(rtcp: Array(report.readableBytesView))
        #expect(try receiver.unprotect(srtcp: srtcp) == Array(report.readableBytesView))
    }

    @Test(arguments: [SRTPProfile.aeadAes128Gcm, .aes128CmHmacSha1_80])
    func inPlaceProtectMatchesTheCopyingOneWhereverThePacketSitsInItsBuffer(profile: SRTPProfile) throws {
        let key = [UInt8](repeating: 0x11, count: profile.keyLength), salt = [UInt8](repeating: 0x22, count: profile.saltLength)
        let copying = try SRTPSession(profile: profile, key: key, salt: salt, direction: .outbound)
        let inPlace = try SRTPSession(profile: profile, key: key, salt: salt, direction: .outbound)
        let receiver = try SRTPSession(profile: profile, key: key, salt: salt, direction: .inbound)
        for (index, room) in [SRTPSession.trailerCapacity, 0].enumerated() {
            let plain = Array(RTPPacket(payloadType: 96, sequenceNumber: UInt16(500 + index), timestamp: 3000, ssrc: 42,
                                        payload: ByteBuffer(bytes: Array(0..<200))).bytes.readableBytesView)
            // Something already read sits before the packet; the tag must land right after it.
            var buffer = ByteBuffer(bytes: [9, 9, 9] + plain)
            buffer.moveReaderIndex(forwardBy: 3)
            if room > 0 { buffer.reserveCapacity(minimumWritableBytes: room) }
            try inPlace.protect(rtp: &buffer)
            let expected = try copying.protect(rtp: plain)
            #expect(Array(buffer.readableBytesView) == expected)
            #expect(try receiver.unprotect(srtp: Array(buffer.readableBytesView)) == plain)
        }
    }

    @Test func aTamperedHandshakeFailsInsteadOfConnecting() throws {
        let (client, server, _, _) = try Self.pair()
        // Flip a byte inside every record body the server gets after the first flight.
        var count = 0
        Self.handshake(client, server) { datagram in
            count += 1
            guard count > 1, datagram.count > 40 else { return datagram }
            var changed = datagram
            changed[datagram.count - 5] ^= 0xFF
            return changed
        }
        #expect(server.state != .connected)
        #expect(throws: OpenSSLError.self) { try server.srtpKeyingMaterial() }
    }

    @Test func theCertificateSurvivesPEMAndTheFingerprintStays() throws {
        let certificate = try DTLSCertificate.generate()
        let again = try DTLSCertificate(pem: certificate.pem)
        #expect(again.fingerprint == certificate.fingerprint)
        #expect(certificate.pem.contains("BEGIN PRIVATE KEY") && certificate.pem.contains("BEGIN CERTIFICATE"))
        #expect(throws: OpenSSLError.self) { try DTLSCertificate(pem: "not a certificate") }
    }

    @Test func recordsArePackedIntoDatagramsUnderTheMTU() {
        func record(_ length: Int) -> [UInt8] { [22, 0xFE, 0xFD] + [UInt8](repeating: 0, count: 8) + [UInt8(length >> 8), UInt8(length & 0xFF)] + [UInt8](repeating: 7, count: length) }
        let bytes = record(500) + record(500) + record(500) + record(10)
        let datagrams = DTLSRecords.pack(bytes, mtu: 1200)
        #expect(datagrams.map(\.count) == [1026, 513 + 23])
        #expect(datagrams.flatMap { $0 } == bytes)
    }

    @Test func aClientRetransmitsItsHelloWhenItsTimerRunsOut() throws {
        let (client, server, _, _) = try Self.pair()
        let hello = client.start()
        #expect(!hello.isEmpty)
        let flight = hello.flatMap { server.receive($0) }
        #expect(!flight.isEmpty)
        #expect(client.nextTimeout != nil)
        // The server's flight is "lost"; the client, past its timer, sends its hello again.
        Thread.sleep(forTimeInterval: 1.1)
        #expect(!client.handleTimeout().isEmpty)
    }
}
