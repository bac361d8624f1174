import CSSL
import Foundation

/// SRTPProfile is a DTLS-SRTP protection profile (RFC 5764 §4.1.2, RFC 7714 §14.2) with
/// its key and salt lengths.
package enum SRTPProfile: UInt, Sendable, Equatable {
    case aes128CmHmacSha1_80 = 0x0001
    case aeadAes128Gcm = 0x0007

    package var keyLength: Int { 16 }
    package var saltLength: Int { self == .aeadAes128Gcm ? 12 : 14 }
}

/// SRTPKeyingMaterial is what `EXTRACTOR-dtls_srtp` gives both sides (RFC 5764 §4.2): the
/// client writes with the client key and salt, the server with the server's.
package struct SRTPKeyingMaterial: Sendable, Equatable {
    package var profile: SRTPProfile
    package var clientKey: [UInt8]
    package var clientSalt: [UInt8]
    package var serverKey: [UInt8]
    package var serverSalt: [UInt8]
}

/// DTLSContext is an OpenSSL SSL_CTX for DTLS 1.2 with `use_srtp`, shared by every
/// endpoint that presents the same certificate.
package final class DTLSContext: @unchecked Sendable {
    // Configured once in init; OpenSSL allows SSL_new from several threads on a configured SSL_CTX.
    let context: OpaquePointer
    package let certificate: DTLSCertificate

    package init(certificate: DTLSCertificate, profiles: [SRTPProfile] = [.aeadAes128Gcm, .aes128CmHmacSha1_80])
        throws(OpenSSLError)
    {
        guard let context = SSL_CTX_new(DTLS_method()) else { throw .drain("SSL_CTX_new") }
        self.context = context
        self.certificate = certificate
        try check(switchboard_SSL_CTX_set_min_proto_version(context, switchboard_DTLS1_2_VERSION()),
                  "SSL_CTX_set_min_proto_version")
        try check(SSL_CTX_use_certificate(context, certificate.certificate), "SSL_CTX_use_certificate")
        try check(SSL_CTX_use_PrivateKey(context, certificate.key), "SSL_CTX_use_PrivateKey")
        // Every peer must present a certificate; which one is right is the SDP fingerprint's
        // call, checked after the handshake (`remoteFingerprint`), not a CA's.
        SSL_CTX_set_verify(context, SSL_VERIFY_PEER | SSL_VERIFY_FAIL_IF_NO_PEER_CERT) { _, _ in 1 }
        let names = profiles.map { $0 == .aeadAes128Gcm ? "SRTP_AEAD_AES_128_GCM" : "SRTP_AES128_CM_SHA1_80" }
        // Returns 0 on success, unlike most of OpenSSL.
        guard SSL_CTX_set_tlsext_use_srtp(context, names.joined(separator: ":")) == 0 else {
            SSL_CTX_free(context)
            throw .drain("SSL_CTX_set_tlsext_use_srtp")
        }
    }

    deinit { SSL_CTX_free(context) }
}

/// DTLSEndpoint is one DTLS association over datagrams the caller carries: bytes in with
/// `receive`, datagrams out as return values, timers through `nextTimeout`/`handleTimeout`.
/// No I/O, no threads: the owner calls it from one place at a time.
package final class DTLSEndpoint {
    package enum Role: Sendable { case client, server }

    package enum State: Sendable, Equatable {
        case handshaking
        case connected
        case failed(String)
        case closed
    }

    /// Largest datagram sent: fits an IPv6 path with room for TURN/ICE overhead.
    package static let mtu = 1200

    let ssl: OpaquePointer
    let incoming: OpaquePointer
    let outgoing: OpaquePointer
    package let role: Role
    package private(set) var state = State.handshaking

    package init(context: DTLSContext, role: Role) throws(OpenSSLError) {
        guard let ssl = SSL_new(context.context) else { throw .drain("SSL_new") }
        guard let incoming = BIO_new(BIO_s_mem()), let outgoing = BIO_new(BIO_s_mem()) else {
            SSL_free(ssl)
            throw .drain("BIO_new")
        }
        // An empty read BIO means "no datagram yet", not end of file.
        _ = switchboard_BIO_set_mem_eof_return(incoming, -1)
        _ = switchboard_BIO_set_mem_eof_return(outgoing, -1)
        SSL_set_bio(ssl, incoming, outgoing)  // the SSL owns both BIOs now
        _ = switchboard_SSL_set_options(ssl, switchboard_SSL_OP_NO_QUERY_MTU())
        _ = switchboard_DTLS_set_link_mtu(ssl, Self.mtu)
        if role == .client { SSL_set_connect_state(ssl) } else { SSL_set_accept_state(ssl) }
        self.ssl = ssl
        self.incoming = incoming
        self.outgoing = outgoing
        self.role = role
    }

    deinit { SSL_free(ssl) }

    /// Starts the handshake: the client's first flight (ClientHello); nothing for a server.
    package func start() -> [[UInt8]] {
        guard role == .client else { return [] }
        advanceHandshake()
        return drainOutgoing()
    }

    /// Feeds one received datagram; returns the datagrams to send in answer. Application data
    /// is not used by WebRTC media (SRTP carries it), so any that arrives is discarded.
    package func receive(_ datagram: [UInt8]) -> [[UInt8]] {
        guard state == .handshaking || state == .connected, !datagram.isEmpty else { return [] }
        _ = datagram.withUnsafeBytes { BIO_write(incoming, $0.baseAddress, Int32($0.count)) }
        if state == .handshaking {
            advanceHandshake()
        } else {
            var scratch = [UInt8](repeating: 0, count: 2048)
            while SSL_read(ssl, &scratch, Int32(scratch.count)) > 0 {}
            if SSL_get_shutdown(ssl) & SSL_RECEIVED_SHUTDOWN != 0 { state = .closed }
        }
        return drainOutgoing()
    }

    /// When OpenSSL wants `handleTimeout` called (retransmission, RFC 6347 §4.2.4), or nil.
    package var nextTimeout: Duration? {
        var time = timeval()
        guard switchboard_DTLSv1_get_timeout(ssl, &time) == 1 else { return nil }
        return .seconds(time.tv_sec) + .microseconds(time.tv_usec)
    }

    /// Retransmits the last flight if its timer ran out; returns what to send.
    package func handleTimeout() -> [[UInt8]] {
        guard state == .handshaking else { return [] }
        if switchboard_DTLSv1_handle_timeout(ssl) < 0 { state = .failed(OpenSSLError.drain("DTLSv1_handle_timeout").description) }
        return drainOutgoing()
    }

    /// The peer's certificate fingerprint (SHA-256, "AB:CD:…"), once it has sent one.
    package var remoteFingerprint: String? {
        guard let certificate = SSL_get1_peer_certificate(ssl) else { return nil }
        defer { X509_free(certificate) }
        return try? DTLSCertificate.fingerprint(of: certificate)
    }

    /// The negotiated profile and keys (RFC 5764 §4.2), once connected.
    package func srtpKeyingMaterial() throws(OpenSSLError) -> SRTPKeyingMaterial {
        guard state == .connected, let selected = SSL_get_selected_srtp_profile(ssl),
              let profile = SRTPProfile(rawValue: selected.pointee.id) else {
            throw OpenSSLError(call: "SSL_get_selected_srtp_profile", reason: "no SRTP profile negotiated")
        }
        let keyLength = profile.keyLength
        let saltLength = profile.saltLength
        var material = [UInt8](repeating: 0, count: 2 * (keyLength + saltLength))
        let label = "EXTRACTOR-dtls_srtp"
        try check(SSL_export_keying_material(ssl, &material, material.count, label, label.utf8.count, nil, 0, 0),
                  "SSL_export_keying_material")
        return SRTPKeyingMaterial(
            profile: profile,
            clientKey: Array(material[0..<keyLength]),
            clientSalt: Array(material[(2 * keyLength)..<(2 * keyLength + saltLength)]),
            serverKey: Array(material[keyLength..<(2 * keyLength)]),
            serverSalt: Array(material[(2 * keyLength + saltLength)...]))
    }

    /// Sends close_notify.
    package func close() -> [[UInt8]] {
        guard state == .connected else { return [] }
        _ = SSL_shutdown(ssl)
        state = .closed
        return drainOutgoing()
    }

    private func advanceHandshake() {
        // SSL_get_error reads the thread's error queue, which other OpenSSL users on this
        // thread (SRTP's ciphers, other viewers) may have left entries in: start it empty.
        ERR_clear_error()
        let result = SSL_do_handshake(ssl)
        if result == 1 {
            state = .connected
            return
        }
        let error = SSL_get_error(ssl, result)
        if error != switchboard_SSL_ERROR_WANT_READ() {
            state = .failed(OpenSSLError.drain("SSL_do_handshake").description)
        }
    }

    /// What OpenSSL wrote, cut into DTLS records and packed into datagrams of at most `mtu`
    /// bytes. (A memory BIO does not keep datagram boundaries; the record headers do.)
    private func drainOutgoing() -> [[UInt8]] {
        var data: UnsafeMutablePointer<CChar>?
        let length = switchboard_BIO_get_mem_data(outgoing, &data)
        guard let data, length > 0 else { return [] }
        let bytes = Array(UnsafeRawBufferPointer(start: data, count: length))
        _ = switchboard_BIO_reset(outgoing)
        return DTLSRecords.pack(bytes, mtu: Self.mtu)
    }
}

/// DTLSRecords splits a run of DTLS records at their headers (RFC 6347 §4.1: type, version,
/// epoch, sequence number, then a 16-bit length — 13 bytes) and packs them into datagrams.
package enum DTLSRecords {
    package static let headerLength = 13

    package static func pack(_ bytes: [UInt8], mtu: Int) -> [[UInt8]] {
        var datagrams: [[UInt8]] = []
        var current: [UInt8] = []
        var offset = 0
        while offset + headerLength <= bytes.count {
            let length = Int(bytes[offset + 11]) << 8 | Int(bytes[offset + 12])
            let end = min(bytes.count, offset + headerLength + length)
            if !current.isEmpty && current.count + (end - offset) > mtu {
                datagrams.append(current)
                current = []
            }
            current += bytes[offset..<end]
            offset = end
        }
        if offset < bytes.count { current += bytes[offset...] }  // a stray tail: pass it on as it is
        if !current.isEmpty { datagrams.append(current) }
        return datagrams
    }
}
