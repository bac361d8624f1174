import DTLS
import Foundation
import NIOCore
import SRTP
import Testing
@testable import MediaEdge
@testable import Wire

/// DTLS 1.2 with use_srtp between two endpoints in memory, then SRTP/SRTCP with the exported
/// keys through libsrtp2 — the media edge's security path without a network. (The DTLS
/// endpoint's own tests are in DTLSTests.)
@Suite struct DTLSSRTPTests {
    /// Carries datagrams between the two until neither has anything to say.
    static func handshake(_ client: DTLSEndpoint, _ server: DTLSEndpoint) {
        var toServer = client.start().datagrams
        var toClient: [[UInt8]] = []
        for _ in 0..<20 where !(toServer.isEmpty && toClient.isEmpty) {
            toClient = toServer.flatMap { server.receive($0).datagrams }
            toServer = toClient.flatMap { client.receive($0).datagrams }
            toClient = []
        }
    }

    static func pair(profiles: [SRTPProfile]) throws -> (DTLSEndpoint, DTLSEndpoint) {
        let clientCertificate = try DTLSCertificate.generate(commonName: "client")
        let serverCertificate = try DTLSCertificate.generate(commonName: "server")
        let client = try DTLSEndpoint(context: try DTLSContext(certificate: clientCertificate, srtpProfiles: profiles),
                                      role: .client, remoteFingerprints: [serverCertificate.sha256Fingerprint])
        let server = try DTLSEndpoint(context: try DTLSContext(certificate: serverCertificate, srtpProfiles: profiles),
                                      role: .server, remoteFingerprints: [clientCertificate.sha256Fingerprint])
        return (client, server)
    }

    @Test(arguments: [SRTPProfile.aeadAes128Gcm, .aes128CmHmacSha1_80])
    func srtpWithTheExportedKeysProtectsAndRefusesAlteredAndReplayedPackets(profile: SRTPProfile) throws {
        let (client, server) = try Self.pair(profiles: [profile])
        Self.handshake(client, server)
        #expect(client.state == .connected && server.state == .connected)
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
}
