import CSSL

/// SRTPProfile is a DTLS-SRTP protection profile (RFC 5764 §4.1.2, RFC 7714 §14.2) with
/// its key and salt lengths.
package enum SRTPProfile: UInt, Sendable, Equatable, CaseIterable {
    case aes128CmHmacSha1_80 = 0x0001
    case aeadAes128Gcm = 0x0007

    package var keyLength: Int { 16 }
    package var saltLength: Int { self == .aeadAes128Gcm ? 12 : 14 }

    /// The name OpenSSL's `SSL_CTX_set_tlsext_use_srtp` takes.
    var openSSLName: String { self == .aeadAes128Gcm ? "SRTP_AEAD_AES_128_GCM" : "SRTP_AES128_CM_SHA1_80" }
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

/// DTLSContext is an OpenSSL SSL_CTX for DTLS 1.2, shared by every endpoint that presents the
/// same certificate. With SRTP profiles it negotiates `use_srtp` (DTLS-SRTP, RFC 5764: the
/// media edge); without, it is plain DTLS (SCTP over DTLS for data channels, RFC 8261).
package final class DTLSContext: @unchecked Sendable {
    // Configured once in init; OpenSSL allows SSL_new from several threads on a configured SSL_CTX.
    let context: OpaquePointer
    package let certificate: DTLSCertificate
    /// The profiles offered (client) or accepted (server), in order of preference; empty: none.
    package let srtpProfiles: [SRTPProfile]

    package init(certificate: DTLSCertificate, srtpProfiles: [SRTPProfile]) throws(OpenSSLError) {
        guard let context = SSL_CTX_new(DTLS_method()) else { throw .drain("SSL_CTX_new") }
        do throws(OpenSSLError) {
            try check(switchboard_SSL_CTX_set_min_proto_version(context, switchboard_DTLS1_2_VERSION()),
                      "SSL_CTX_set_min_proto_version")
            try check(SSL_CTX_use_certificate(context, certificate.certificate), "SSL_CTX_use_certificate")
            try check(SSL_CTX_use_PrivateKey(context, certificate.key), "SSL_CTX_use_PrivateKey")
            // Every peer must present a certificate; which one is right is the SDP fingerprint's
            // call (`verifyPeer`, and `DTLSEndpoint`'s check when the handshake ends), not a CA's.
            SSL_CTX_set_verify(context, SSL_VERIFY_PEER | SSL_VERIFY_FAIL_IF_NO_PEER_CERT, verifyPeer)
            if !srtpProfiles.isEmpty {
                // Returns 0 on success, unlike most of OpenSSL.
                guard SSL_CTX_set_tlsext_use_srtp(context, srtpProfiles.map(\.openSSLName).joined(separator: ":")) == 0 else {
                    throw .drain("SSL_CTX_set_tlsext_use_srtp")
                }
            }
        } catch {
            SSL_CTX_free(context)
            throw error
        }
        self.context = context
        self.certificate = certificate
        self.srtpProfiles = srtpProfiles
    }

    deinit { SSL_CTX_free(context) }
}

/// OpenSSL's certificate verification callback: accepts the peer's chain when its leaf
/// matches what the endpoint expects (the remote SDP's fingerprints), whatever CA errors
/// OpenSSL found (WebRTC certificates are self-signed). Fails closed when it cannot tell.
private func verifyPeer(_ preverified: Int32, _ store: OpaquePointer?) -> Int32 {
    guard let store, let ssl = X509_STORE_CTX_get_ex_data(store, SSL_get_ex_data_X509_STORE_CTX_idx()),
          let endpoint = DTLSEndpoint.owner(of: OpaquePointer(ssl)) else { return 0 }
    guard endpoint.acceptsPeer(leaf: X509_STORE_CTX_get0_cert(store)) else {
        // "Rejected" makes OpenSSL's alert bad_certificate (not unknown_ca, which a
        // self-signed certificate's own error would give): the peer learns why.
        X509_STORE_CTX_set_error(store, X509_V_ERR_CERT_REJECTED)
        return 0
    }
    return 1
}
