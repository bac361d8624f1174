import CSSL
import Foundation

/// DTLSCertificate is a DTLS identity (the media edge's, a peer agent's): an ECDSA P-256 key
/// and a self-signed X.509 certificate, whose SHA-256 fingerprint goes in every SDP offer and
/// answer (`a=fingerprint`, RFC 8122). WebRTC peers check the fingerprint, not a chain, so
/// self-signed is the norm.
package final class DTLSCertificate: @unchecked Sendable {
    // Immutable after init; OpenSSL's key and certificate objects are safe to share for reading.
    let key: OpaquePointer
    let certificate: OpaquePointer
    /// The SHA-256 fingerprint of the certificate.
    package let sha256Fingerprint: DTLSFingerprint
    /// "AB:CD:…", upper-case hex pairs (the form `a=fingerprint:sha-256` takes).
    package var fingerprint: String { sha256Fingerprint.hex }
    /// "sha-256 AB:CD:…": the value of this certificate's `a=fingerprint:` line.
    package var sdpFingerprint: String { sha256Fingerprint.sdpValue }

    private init(key: OpaquePointer, certificate: OpaquePointer) throws(OpenSSLError) {
        self.key = key
        self.certificate = certificate
        sha256Fingerprint = try DTLSFingerprint(of: certificate, algorithm: .sha256)
    }

    deinit {
        EVP_PKEY_free(key)
        X509_free(certificate)
    }

    /// A new key and a certificate valid from a day ago for `days` days.
    package static func generate(commonName: String = "switchboard", days: Int = 365) throws(OpenSSLError) -> DTLSCertificate {
        guard let context = EVP_PKEY_CTX_new_from_name(nil, "EC", nil) else { throw .drain("EVP_PKEY_CTX_new_from_name") }
        defer { EVP_PKEY_CTX_free(context) }
        try check(EVP_PKEY_keygen_init(context), "EVP_PKEY_keygen_init")
        try check(EVP_PKEY_CTX_set_group_name(context, "P-256"), "EVP_PKEY_CTX_set_group_name")
        var generated: OpaquePointer?
        try check(EVP_PKEY_generate(context, &generated), "EVP_PKEY_generate")
        guard let key = generated else { throw .drain("EVP_PKEY_generate") }

        guard let x509 = X509_new() else {
            EVP_PKEY_free(key)
            throw .drain("X509_new")
        }
        do throws(OpenSSLError) {
            try check(X509_set_version(x509, 2), "X509_set_version")
            var serial: Int64 = 0
            try withUnsafeMutableBytes(of: &serial) { (bytes) throws(OpenSSLError) in
                guard let base = bytes.baseAddress else { return }
                try check(RAND_bytes(base.assumingMemoryBound(to: UInt8.self), Int32(bytes.count)), "RAND_bytes")
            }
            try check(ASN1_INTEGER_set_int64(X509_get_serialNumber(x509), serial & Int64.max), "ASN1_INTEGER_set_int64")
            guard X509_gmtime_adj(X509_getm_notBefore(x509), -86_400) != nil,
                  X509_gmtime_adj(X509_getm_notAfter(x509), days * 86_400) != nil else { throw OpenSSLError.drain("X509_gmtime_adj") }
            try check(X509_set_pubkey(x509, key), "X509_set_pubkey")
            let name = X509_get_subject_name(x509)
            try check(X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_ASC, commonName, -1, -1, 0), "X509_NAME_add_entry_by_txt")
            try check(X509_set_issuer_name(x509, name), "X509_set_issuer_name")
            guard X509_sign(x509, key, EVP_sha256()) > 0 else { throw OpenSSLError.drain("X509_sign") }
        } catch {
            X509_free(x509)
            EVP_PKEY_free(key)
            throw error
        }
        return try DTLSCertificate(key: key, certificate: x509)
    }

    /// Reads a key and certificate from PEM text (both in one text, as `pem` writes them).
    package convenience init(pem: String) throws(OpenSSLError) {
        let bytes = Array(pem.utf8)
        let keyBIO = bytes.withUnsafeBytes { BIO_new_mem_buf($0.baseAddress, Int32($0.count)) }
        let certificateBIO = bytes.withUnsafeBytes { BIO_new_mem_buf($0.baseAddress, Int32($0.count)) }
        defer {
            BIO_free(keyBIO)
            BIO_free(certificateBIO)
        }
        // BIO_new_mem_buf reads the bytes in place: keep them alive across the reads.
        let (key, certificate) = withExtendedLifetime(bytes) {
            (PEM_read_bio_PrivateKey(keyBIO, nil, nil, nil), PEM_read_bio_X509(certificateBIO, nil, nil, nil))
        }
        guard let key, let certificate else {
            if let key { EVP_PKEY_free(key) }
            if let certificate { X509_free(certificate) }
            throw .drain("PEM_read_bio")
        }
        try self.init(key: key, certificate: certificate)
    }

    /// The key (PKCS#8) and certificate as PEM text.
    package var pem: String {
        guard let bio = BIO_new(BIO_s_mem()) else { return "" }
        defer { BIO_free(bio) }
        _ = PEM_write_bio_PrivateKey(bio, key, nil, nil, 0, nil, nil)
        _ = PEM_write_bio_X509(bio, certificate)
        var data: UnsafeMutablePointer<CChar>?
        let length = switchboard_BIO_get_mem_data(bio, &data)
        guard let data, length > 0 else { return "" }
        return String(decoding: UnsafeRawBufferPointer(start: data, count: length), as: UTF8.self)
    }

    /// Loads `file` if it holds a usable key and certificate, else generates them and writes
    /// the file (0600).
    package static func loadOrCreate(file: String) throws -> DTLSCertificate {
        if let text = try? String(contentsOfFile: file, encoding: .utf8), let existing = try? DTLSCertificate(pem: text) {
            return existing
        }
        let created = try generate()
        _ = FileManager.default.createFile(atPath: file, contents: Data(created.pem.utf8),
                                       attributes: [.posixPermissions: 0o600])
        return created
    }

    /// The certificate's fingerprint with another hash function (a remote SDP may name one).
    package func fingerprint(_ algorithm: DTLSFingerprint.Algorithm) throws(OpenSSLError) -> DTLSFingerprint {
        try DTLSFingerprint(of: certificate, algorithm: algorithm)
    }
}
