import CSRTP
import DTLS
import NIOCore

/// SRTPError is a libsrtp2 failure, with its status code (`srtp_err_status_t`).
package struct SRTPError: Error, Equatable, CustomStringConvertible, Sendable {
    package var call: String
    package var status: UInt32

    package var description: String { "\(call): libsrtp2 status \(status)" }

    /// srtp_err_status_auth_fail: the packet was altered or the key is wrong.
    package var isAuthenticationFailure: Bool { status == srtp_err_status_auth_fail.rawValue }
    /// srtp_err_status_replay_fail / replay_old: a packet seen before, or too old.
    package var isReplay: Bool { status == srtp_err_status_replay_fail.rawValue || status == srtp_err_status_replay_old.rawValue }
}

/// SRTPSession protects (outbound) or unprotects (inbound) RTP and RTCP for one direction of
/// one DTLS-SRTP association, through libsrtp2, with replay protection on.
package final class SRTPSession {
    package enum Direction: Sendable { case outbound, inbound }

    private var session: srtp_t?
    package let direction: Direction

    /// libsrtp2 wants one `srtp_init` per process before anything else; then OpenSSL goes behind
    /// its ciphers (`SRTPCrypto`).
    private static let initialized: UInt32 = {
        let status = srtp_init()
        if status == srtp_err_status_ok { _ = SRTPCrypto.status }
        return status.rawValue
    }()

    /// What is behind libsrtp2's ciphers, for the log: OpenSSL's, or libsrtp2's built-in ones
    /// (NSS in Debian's build) for any replacement it refused.
    package static var cryptoBackend: (openSSL: [String], builtIn: [String]) {
        guard initialized == srtp_err_status_ok.rawValue else { return ([], ["srtp_init: status \(initialized)"]) }
        return (SRTPCrypto.status.installed, SRTPCrypto.status.refused)
    }

    /// `key` and `salt` are one side's from `SRTPKeyingMaterial`. `replayWindow` packets are
    /// remembered against replays (libsrtp2 allows 64–32768).
    package init(profile: SRTPProfile, key: [UInt8], salt: [UInt8], direction: Direction, replayWindow: Int = 1024)
        throws(SRTPError)
    {
        guard Self.initialized == srtp_err_status_ok.rawValue else { throw SRTPError(call: "srtp_init", status: Self.initialized) }
        guard key.count == profile.keyLength, salt.count == profile.saltLength else {
            throw SRTPError(call: "srtp_create", status: srtp_err_status_bad_param.rawValue)
        }
        self.direction = direction
        var policy = srtp_policy_t()
        switch profile {
        case .aes128CmHmacSha1_80:
            srtp_crypto_policy_set_rtp_default(&policy.rtp)
            srtp_crypto_policy_set_rtcp_default(&policy.rtcp)
        case .aeadAes128Gcm:
            srtp_crypto_policy_set_aes_gcm_128_16_auth(&policy.rtp)
            srtp_crypto_policy_set_aes_gcm_128_16_auth(&policy.rtcp)
        }
        policy.ssrc.type = direction == .outbound ? ssrc_any_outbound : ssrc_any_inbound
        policy.window_size = UInt(replayWindow)
        // A NACKed packet goes out again with its sequence number: allowed on the way out.
        policy.allow_repeat_tx = direction == .outbound ? 1 : 0
        var master = key + salt
        let status = master.withUnsafeMutableBufferPointer { buffer -> srtp_err_status_t in
            policy.key = buffer.baseAddress
            return srtp_create(&session, &policy)  // copies the key
        }
        guard status == srtp_err_status_ok else { throw SRTPError(call: "srtp_create", status: status.rawValue) }
    }

    deinit {
        if let session { srtp_dealloc(session) }
    }

    /// An RTP packet in, the SRTP packet out (the auth tag appended).
    package func protect(rtp packet: [UInt8]) throws(SRTPError) -> [UInt8] {
        try run(packet, grow: Int(SRTP_MAX_TRAILER_LEN), call: "srtp_protect") { srtp_protect($0, $1, $2) }
    }

    /// Room `protect(rtp:)` needs after an RTP packet for the auth tag (and MKI).
    package static let trailerCapacity = Int(SRTP_MAX_TRAILER_LEN)

    /// Protects the RTP packet that is `buffer`'s readable bytes in place: no copy, the tag
    /// appended. Give the buffer `trailerCapacity` bytes of room, or it grows.
    package func protect(rtp buffer: inout ByteBuffer) throws(SRTPError) {
        buffer.reserveCapacity(minimumWritableBytes: Self.trailerCapacity)
        var size = Int32(buffer.readableBytes)
        let session = self.session
        let start = buffer.readerIndex
        // The whole storage: libsrtp2 writes the tag just past the packet, into the room reserved above.
        let status = buffer.withVeryUnsafeMutableBytes { storage in srtp_protect(session, storage.baseAddress! + start, &size) }
        guard status == srtp_err_status_ok else { throw SRTPError(call: "srtp_protect", status: status.rawValue) }
        buffer.moveWriterIndex(to: buffer.readerIndex + Int(size))
    }

    /// An SRTP packet in, the RTP packet out; altered, replayed and wrong-key packets throw.
    package func unprotect(srtp packet: [UInt8]) throws(SRTPError) -> [UInt8] {
        try run(packet, grow: 0, call: "srtp_unprotect") { srtp_unprotect($0, $1, $2) }
    }

    package func protect(rtcp packet: [UInt8]) throws(SRTPError) -> [UInt8] {
        try run(packet, grow: Int(SRTP_MAX_TRAILER_LEN) + 4, call: "srtp_protect_rtcp") { srtp_protect_rtcp($0, $1, $2) }
    }

    package func unprotect(srtcp packet: [UInt8]) throws(SRTPError) -> [UInt8] {
        try run(packet, grow: 0, call: "srtp_unprotect_rtcp") { srtp_unprotect_rtcp($0, $1, $2) }
    }

    private func run(
        _ packet: [UInt8], grow: Int, call: String,
        _ operation: (srtp_t?, UnsafeMutableRawPointer?, UnsafeMutablePointer<Int32>) -> srtp_err_status_t
    ) throws(SRTPError) -> [UInt8] {
        var buffer = packet + [UInt8](repeating: 0, count: grow)
        var length = Int32(packet.count)
        let status = buffer.withUnsafeMutableBytes { operation(session, $0.baseAddress, &length) }
        guard status == srtp_err_status_ok else { throw SRTPError(call: call, status: status.rawValue) }
        return Array(buffer.prefix(Int(length)))
    }
}
