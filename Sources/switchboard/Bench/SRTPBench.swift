import ArgumentParser
import DTLS
import Foundation
import MediaEdge
import NIOCore
import SRTP
import Wire

/// `switchboard bench srtp`: what one SRTP protect costs through libsrtp2 for each DTLS-SRTP
/// profile, on RTP packets of a given size. The media edge protects every packet once per
/// viewer, so this is the crypto floor of `bench whep`.
struct BenchSRTP: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "srtp", abstract: "Time libsrtp2's protect per profile: ns per packet and MB/s.")

    @Option(help: "RTP payload bytes per packet.") var size = 1200
    @Option(help: "Packets per profile.") var packets = 200_000
    @Option(help: "Sessions, protected in turn (one per viewer at the edge).") var sessions = 1

    func run() async throws {
        guard size >= 1, size <= 1400, packets >= 1000, sessions >= 1, sessions <= 100_000 else {
            throw ValidationError("need 1 ≤ --size ≤ 1400, --packets ≥ 1000, 1 ≤ --sessions ≤ 100000")
        }
        let allocator = ByteBufferAllocator()
        let payload = ByteBuffer(repeating: 0x5A, count: size)
        for profile in [SRTPProfile.aeadAes128Gcm, .aes128CmHmacSha1_80] {
            let key = [UInt8](repeating: 7, count: profile.keyLength)
            let salt = [UInt8](repeating: 9, count: profile.saltLength)
            let all = try (0..<sessions).map { _ in try SRTPSession(profile: profile, key: key, salt: salt, direction: .outbound) }
            var bytes = 0
            let clock = ContinuousClock()
            let elapsed = try clock.measure {
                for index in 0..<packets {
                    var packet = allocator.buffer(capacity: RTPPacket.fixedHeaderLength + size + SRTPSession.trailerCapacity)
                    RTPPacket(payloadType: 96, sequenceNumber: UInt16(truncatingIfNeeded: index / sessions), timestamp: 0,
                              ssrc: 0x1234_5678, payload: payload).write(to: &packet)
                    try all[index % sessions].protect(rtp: &packet)
                    bytes += packet.readableBytes
                }
            }
            let seconds = elapsed.seconds
            let name = profile == .aeadAes128Gcm ? "AEAD_AES_128_GCM" : "AES_CM_128_HMAC_SHA1_80"
            Output.line(name.padding(toLength: 24, withPad: " ", startingAt: 0)
                + String(format: " %7.0f ns/packet  %7.1f MB/s  (%d packets of %d bytes over %d sessions)",
                         seconds * 1e9 / Double(packets), Double(bytes) / seconds / 1e6, packets, size, sessions))
        }
    }
}
