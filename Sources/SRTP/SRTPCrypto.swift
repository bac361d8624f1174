import CSRTP
import CSSL
import Wire

/// SRTPCrypto puts the system OpenSSL behind the ciphers libsrtp2 uses for our two DTLS-SRTP
/// profiles: AES-128-GCM (AEAD_AES_128_GCM), and AES-128 counter mode with HMAC-SHA1
/// (AES_CM_128_HMAC_SHA1_80; counter mode is also libsrtp2's key derivation).
///
/// Debian builds libsrtp2 against NSS, whose softoken opens and closes a PKCS#11 session for
/// every packet and finds it in hash chains that grow with the number of live keys (four per
/// viewer): 1.2 µs per 1200-byte GCM packet for one session, 2.4 µs over 3000. libsrtp2 lets a
/// program replace the implementation behind a cipher or auth id (`srtp_replace_cipher_type`,
/// `srtp_replace_auth_type`; the same hook its own `--enable-openssl` build fills). The
/// replacements here keep an `EVP_CIPHER_CTX` / `EVP_MAC_CTX` per key, so a packet costs one
/// IV set and one pass of AES-NI, whatever the number of viewers.
///
/// libsrtp2 runs each replacement through its known-answer tests before taking it (the vectors
/// given here, then the built-in implementation's own); if any fails it keeps the built-in one.
enum SRTPCrypto {
    /// What `install()` did, once per process, after `srtp_init`.
    static let status: Status = install()

    struct Status: Sendable {
        /// Each replacement libsrtp2 took.
        var installed: [String] = []
        /// Each one it refused, with libsrtp2's status (the built-in one stays in use).
        var refused: [String] = []
    }

    private static func install() -> Status {
        var status = Status()
        let ciphers: [(String, UnsafeMutablePointer<srtp_cipher_type_t>, Int32)] = [
            ("AES-128-GCM", gcm128Type, SRTP_AES_GCM_128),
            ("AES-128-ICM", icm128Type, SRTP_AES_ICM_128),
        ]
        for (name, type, id) in ciphers {
            let result = srtp_replace_cipher_type(type, srtp_cipher_type_id_t(id))
            if result == srtp_err_status_ok { status.installed.append(name) } else { status.refused.append("\(name): status \(result.rawValue)") }
        }
        let result = srtp_replace_auth_type(hmacSHA1Type, srtp_auth_type_id_t(SRTP_HMAC_SHA1))
        if result == srtp_err_status_ok { status.installed.append("HMAC-SHA1") } else { status.refused.append("HMAC-SHA1: status \(result.rawValue)") }
        ERR_clear_error()  // what a refused replacement's failed calls left for this thread
        return status
    }
}

// MARK: - Shared pieces

private let gcmTagLengths: Set<Int32> = [8, 16]
private let aes128KeyLength: Int32 = 16

/// OpenSSL's algorithm objects, fetched once (an implicit fetch on every init is slow in 3.x).
nonisolated(unsafe) private let aes128GCM = EVP_CIPHER_fetch(nil, "AES-128-GCM", nil)
nonisolated(unsafe) private let aes128CTR = EVP_CIPHER_fetch(nil, "AES-128-CTR", nil)
nonisolated(unsafe) private let hmac = EVP_MAC_fetch(nil, "HMAC", nil)

/// A known-answer vector written in this file.
private func vector(_ hex: String) -> [UInt8] {
    guard let bytes = hexBytes(hex) else { preconditionFailure("not hex: \(hex)") }
    return bytes
}

/// Bytes that live as long as the process: type descriptions and known-answer vectors, which
/// libsrtp2 keeps pointers to.
private func permanent(_ bytes: [UInt8]) -> UnsafeMutablePointer<UInt8> {
    let pointer = UnsafeMutablePointer<UInt8>.allocate(capacity: max(bytes.count, 1))
    pointer.initialize(from: bytes, count: bytes.count)
    return pointer
}

private func permanent(_ text: String) -> UnsafePointer<CChar> {
    let characters = Array(text.utf8CString)
    let pointer = UnsafeMutablePointer<CChar>.allocate(capacity: characters.count)
    pointer.initialize(from: characters, count: characters.count)
    return UnsafePointer(pointer)
}

/// Our state for a cipher or an auth, where libsrtp2's `srtp_cipher_t` / `srtp_auth_t` points.
private func allocateState<State>(_ state: State) -> UnsafeMutableRawPointer {
    let pointer = UnsafeMutablePointer<State>.allocate(capacity: 1)
    pointer.initialize(to: state)
    return UnsafeMutableRawPointer(pointer)
}

/// Lets go of what `allocateState` made: `release` (its OpenSSL context) first, then the
/// memory, zeroed before it goes back (the counter-mode salt), as libsrtp2 does with its own.
private func deallocateState<State>(_ raw: UnsafeMutableRawPointer?, as: State.Type, release: (State) -> Void) {
    guard let raw else { return }
    let state = raw.assumingMemoryBound(to: State.self)
    release(state.pointee)
    state.deinitialize(count: 1)
    raw.initializeMemory(as: UInt8.self, repeating: 0, count: MemoryLayout<State>.size)
    raw.deallocate()
}

/// The `srtp_cipher_t` libsrtp2 holds, pointing to our state.
private func allocateCipher<State>(
    _ out: UnsafeMutablePointer<srtp_cipher_pointer_t?>, type: UnsafeMutablePointer<srtp_cipher_type_t>,
    keyLength: Int32, algorithm: Int32, state: State
) -> srtp_err_status_t {
    let cipher = UnsafeMutablePointer<srtp_cipher_t>.allocate(capacity: 1)
    cipher.initialize(to: srtp_cipher_t(type: UnsafePointer(type), state: allocateState(state), key_len: keyLength,
                                        algorithm: algorithm))
    out.pointee = cipher
    return srtp_err_status_ok
}

private func deallocateCipher<State>(_ cipher: srtp_cipher_pointer_t?, as: State.Type, release: (State) -> Void) -> srtp_err_status_t {
    guard let cipher else { return srtp_err_status_bad_param }
    deallocateState(cipher.pointee.state, as: State.self, release: release)
    cipher.deinitialize(count: 1)
    cipher.deallocate()
    return srtp_err_status_ok
}

// MARK: - AES-128-GCM (RFC 7714)

private struct GCMState {
    var context: OpaquePointer  // EVP_CIPHER_CTX, which holds the key schedule
    var tagLength: Int32
}

private func gcmState(_ raw: UnsafeMutableRawPointer?) -> UnsafeMutablePointer<GCMState> {
    raw!.assumingMemoryBound(to: GCMState.self)
}

/// `keyLength` counts the 12-byte salt libsrtp2 keeps with the key.
private func gcmAlloc(_ out: UnsafeMutablePointer<srtp_cipher_pointer_t?>?, _ keyLength: Int32, _ tagLength: Int32) -> srtp_err_status_t {
    guard let out, keyLength == aes128KeyLength + Int32(SRTP_AEAD_SALT_LEN), gcmTagLengths.contains(tagLength) else {
        return srtp_err_status_bad_param
    }
    guard let context = EVP_CIPHER_CTX_new() else { return srtp_err_status_alloc_fail }
    return allocateCipher(out, type: gcm128Type, keyLength: keyLength, algorithm: SRTP_AES_GCM_128,
                          state: GCMState(context: context, tagLength: tagLength))
}

private func gcmDealloc(_ cipher: srtp_cipher_pointer_t?) -> srtp_err_status_t {
    deallocateCipher(cipher, as: GCMState.self) { EVP_CIPHER_CTX_free($0.context) }  // which cleanses the key schedule
}

private func gcmInit(_ raw: UnsafeMutableRawPointer?, _ key: UnsafePointer<UInt8>?) -> srtp_err_status_t {
    guard let key else { return srtp_err_status_bad_param }
    return EVP_CipherInit_ex(gcmState(raw).pointee.context, aes128GCM, nil, key, nil, 1) == 1 ? srtp_err_status_ok : srtp_err_status_init_fail
}

/// A new 12-byte IV starts a new message, in the given direction, with the same key.
private func gcmSetIV(_ raw: UnsafeMutableRawPointer?, _ iv: UnsafeMutablePointer<UInt8>?, _ direction: srtp_cipher_direction_t) -> srtp_err_status_t {
    guard let iv, direction == srtp_direction_encrypt || direction == srtp_direction_decrypt else { return srtp_err_status_bad_param }
    let encrypt: Int32 = direction == srtp_direction_encrypt ? 1 : 0
    return EVP_CipherInit_ex(gcmState(raw).pointee.context, nil, nil, nil, iv, encrypt) == 1 ? srtp_err_status_ok : srtp_err_status_init_fail
}

/// Additional authenticated data: the RTP header, or SRTCP's header and index (two calls).
private func gcmSetAAD(_ raw: UnsafeMutableRawPointer?, _ aad: UnsafePointer<UInt8>?, _ length: UInt32) -> srtp_err_status_t {
    guard length > 0 else { return srtp_err_status_ok }
    guard let aad, length <= Int32.max else { return srtp_err_status_bad_param }
    var written: Int32 = 0
    return EVP_CipherUpdate(gcmState(raw).pointee.context, nil, &written, aad, Int32(length)) == 1 ? srtp_err_status_ok : srtp_err_status_algo_fail
}

/// Encrypts in place and computes the tag, which `gcmGetTag` hands over. libsrtp2 calls it with
/// no bytes when SRTCP is authenticated only.
private func gcmEncrypt(_ raw: UnsafeMutableRawPointer?, _ buffer: UnsafeMutablePointer<UInt8>?, _ length: UnsafeMutablePointer<UInt32>?) -> srtp_err_status_t {
    guard let length, length.pointee <= Int32.max else { return srtp_err_status_bad_param }
    let context = gcmState(raw).pointee.context
    var written: Int32 = 0
    if length.pointee > 0 {
        guard let buffer, EVP_CipherUpdate(context, buffer, &written, buffer, Int32(length.pointee)) == 1 else { return srtp_err_status_cipher_fail }
    }
    var final: Int32 = 0
    var scratch: UInt8 = 0  // GCM's final step writes no bytes
    guard EVP_CipherFinal_ex(context, &scratch, &final) == 1 else { return srtp_err_status_cipher_fail }
    length.pointee = UInt32(written + final)
    return srtp_err_status_ok
}

private func gcmGetTag(_ raw: UnsafeMutableRawPointer?, _ tag: UnsafeMutablePointer<UInt8>?, _ length: UnsafeMutablePointer<UInt32>?) -> srtp_err_status_t {
    guard let tag, let length else { return srtp_err_status_bad_param }
    let state = gcmState(raw).pointee
    guard EVP_CIPHER_CTX_ctrl(state.context, EVP_CTRL_AEAD_GET_TAG, state.tagLength, tag) == 1 else { return srtp_err_status_algo_fail }
    length.pointee = UInt32(state.tagLength)
    return srtp_err_status_ok
}

/// `length` counts the tag at the end of `buffer`; on success it no longer does. A wrong tag,
/// which is what an altered packet or a wrong key gives, is `auth_fail`.
private func gcmDecrypt(_ raw: UnsafeMutableRawPointer?, _ buffer: UnsafeMutablePointer<UInt8>?, _ length: UnsafeMutablePointer<UInt32>?) -> srtp_err_status_t {
    let state = gcmState(raw).pointee
    guard let buffer, let length, length.pointee <= Int32.max else { return srtp_err_status_bad_param }
    guard Int32(length.pointee) >= state.tagLength else { return srtp_err_status_auth_fail }
    let sealed = Int32(length.pointee) - state.tagLength
    guard EVP_CIPHER_CTX_ctrl(state.context, EVP_CTRL_AEAD_SET_TAG, state.tagLength, buffer + Int(sealed)) == 1 else { return srtp_err_status_algo_fail }
    var written: Int32 = 0
    if sealed > 0 {
        guard EVP_CipherUpdate(state.context, buffer, &written, buffer, sealed) == 1 else { return srtp_err_status_cipher_fail }
    }
    var final: Int32 = 0
    var scratch: UInt8 = 0
    guard EVP_CipherFinal_ex(state.context, &scratch, &final) == 1 else { return srtp_err_status_auth_fail }
    length.pointee = UInt32(written + final)
    return srtp_err_status_ok
}

/// Test Case 4 of McGrew and Viega's GCM specification (AES-128, 60 bytes, 20 bytes of AAD),
/// with the 16-byte and the 8-byte tag; the key carries 12 bytes of salt that GCM ignores.
nonisolated(unsafe) private let gcm128Tests: UnsafeMutablePointer<srtp_cipher_test_case_t> = {
    let key = permanent(vector("feffe9928665731c6d6a8f9467308308 000102030405060708090a0b"))
    let iv = permanent(vector("cafebabefacedbaddecaf888"))
    let plaintext = permanent(vector("""
        d9313225f88406e5a55909c5aff5269a86a7a9531534f7da2e4c303d8a318a72
        1c3c0c95956809532fcf0e2449a6b525b16aedf5aa0de657ba637b39
        """))
    let aad = permanent(vector("feedfacedeadbeeffeedfacedeadbeefabaddad2"))
    let sealed = vector("""
        42831ec2217774244b7221b784d0d49ce3aa212f2c02a4e035c17e2329aca12e
        21d514b25466931c7d8f6a5aac84aa051ba30b396a0aac973d58e091
        """)
    let tag = vector("5bc94fbc3221a5db94fae95ae7121a47")
    let cases = UnsafeMutablePointer<srtp_cipher_test_case_t>.allocate(capacity: 2)
    for (index, tagLength) in [16, 8].enumerated() {
        (cases + index).initialize(to: srtp_cipher_test_case_t(
            key_length_octets: 28, key: key, idx: iv, plaintext_length_octets: 60, plaintext: plaintext,
            ciphertext_length_octets: UInt32(60 + tagLength), ciphertext: permanent(sealed + tag.prefix(tagLength)),
            aad_length_octets: 20, aad: aad, tag_length_octets: Int32(tagLength),
            next_test_case: index == 0 ? UnsafePointer(cases + 1) : nil))
    }
    return cases
}()

nonisolated(unsafe) private let gcm128Type: UnsafeMutablePointer<srtp_cipher_type_t> = {
    let type = UnsafeMutablePointer<srtp_cipher_type_t>.allocate(capacity: 1)
    type.initialize(to: srtp_cipher_type_t(
        alloc: gcmAlloc, dealloc: gcmDealloc, init: gcmInit, set_aad: gcmSetAAD, encrypt: gcmEncrypt,
        decrypt: gcmDecrypt, set_iv: gcmSetIV, get_tag: gcmGetTag,
        description: permanent("AES-128 GCM using OpenSSL (Switchboard)"), test_data: UnsafePointer(gcm128Tests),
        id: srtp_cipher_type_id_t(SRTP_AES_GCM_128)))
    return type
}()

// MARK: - AES-128 counter mode (RFC 3711 §4.1.1)

private struct ICMState {
    var context: OpaquePointer  // EVP_CIPHER_CTX with AES-128-CTR and the key schedule
    /// The salt, as the first 14 bytes of the 16-byte counter block; each IV is XORed onto it.
    var offset: (UInt64, UInt64) = (0, 0)
}

private func icmState(_ raw: UnsafeMutableRawPointer?) -> UnsafeMutablePointer<ICMState> {
    raw!.assumingMemoryBound(to: ICMState.self)
}

/// `keyLength` counts the 14-byte salt.
private func icmAlloc(_ out: UnsafeMutablePointer<srtp_cipher_pointer_t?>?, _ keyLength: Int32, _ tagLength: Int32) -> srtp_err_status_t {
    guard let out, keyLength == aes128KeyLength + Int32(SRTP_SALT_LEN) else { return srtp_err_status_bad_param }
    guard let context = EVP_CIPHER_CTX_new() else { return srtp_err_status_alloc_fail }
    return allocateCipher(out, type: icm128Type, keyLength: keyLength, algorithm: SRTP_AES_ICM_128, state: ICMState(context: context))
}

private func icmDealloc(_ cipher: srtp_cipher_pointer_t?) -> srtp_err_status_t {
    deallocateCipher(cipher, as: ICMState.self) { EVP_CIPHER_CTX_free($0.context) }
}

/// The key, then the salt.
private func icmInit(_ raw: UnsafeMutableRawPointer?, _ key: UnsafePointer<UInt8>?) -> srtp_err_status_t {
    guard let key else { return srtp_err_status_bad_param }
    let state = icmState(raw)
    var offset = (UInt64(0), UInt64(0))
    withUnsafeMutableBytes(of: &offset) { block in
        for index in 0..<Int(SRTP_SALT_LEN) { block[index] = key[Int(aes128KeyLength) + index] }
    }
    state.pointee.offset = offset
    return EVP_CipherInit_ex(state.pointee.context, aes128CTR, nil, key, nil, 1) == 1 ? srtp_err_status_ok : srtp_err_status_init_fail
}

/// The 16-byte IV (SSRC and packet index, or the KDF's label and index) XOR the salt is the
/// first counter block. Counter mode is the same both ways, so the direction does not matter.
private func icmSetIV(_ raw: UnsafeMutableRawPointer?, _ iv: UnsafeMutablePointer<UInt8>?, _ direction: srtp_cipher_direction_t) -> srtp_err_status_t {
    guard let iv else { return srtp_err_status_bad_param }
    let state = icmState(raw)
    let nonce = UnsafeRawPointer(iv)
    var counter = (state.pointee.offset.0 ^ nonce.loadUnaligned(as: UInt64.self),
                   state.pointee.offset.1 ^ nonce.loadUnaligned(fromByteOffset: 8, as: UInt64.self))
    let result = withUnsafeBytes(of: &counter) { block in
        EVP_CipherInit_ex(state.pointee.context, nil, nil, nil, block.baseAddress!.assumingMemoryBound(to: UInt8.self), 1)
    }
    return result == 1 ? srtp_err_status_ok : srtp_err_status_init_fail
}

private func icmCrypt(_ raw: UnsafeMutableRawPointer?, _ buffer: UnsafeMutablePointer<UInt8>?, _ length: UnsafeMutablePointer<UInt32>?) -> srtp_err_status_t {
    guard let length, length.pointee <= Int32.max else { return srtp_err_status_bad_param }
    guard length.pointee > 0 else { return srtp_err_status_ok }
    guard let buffer else { return srtp_err_status_bad_param }
    var written: Int32 = 0
    guard EVP_CipherUpdate(icmState(raw).pointee.context, buffer, &written, buffer, Int32(length.pointee)) == 1 else { return srtp_err_status_cipher_fail }
    length.pointee = UInt32(written)
    return srtp_err_status_ok
}

/// RFC 3711 Appendix B.2: the first two keystream blocks for its session key and salt.
nonisolated(unsafe) private let icm128Tests: UnsafeMutablePointer<srtp_cipher_test_case_t> = {
    let test = UnsafeMutablePointer<srtp_cipher_test_case_t>.allocate(capacity: 1)
    test.initialize(to: srtp_cipher_test_case_t(
        key_length_octets: 30, key: permanent(vector("2b7e151628aed2a6abf7158809cf4f3c f0f1f2f3f4f5f6f7f8f9fafbfcfd")),
        idx: permanent([UInt8](repeating: 0, count: 16)), plaintext_length_octets: 32,
        plaintext: permanent([UInt8](repeating: 0, count: 32)), ciphertext_length_octets: 32,
        ciphertext: permanent(vector("e03ead0935c95e80e166b16dd92b4eb4 d23513162b02d0f72a43a2fe4a5f97ab")),
        aad_length_octets: 0, aad: nil, tag_length_octets: 0, next_test_case: nil))
    return test
}()

nonisolated(unsafe) private let icm128Type: UnsafeMutablePointer<srtp_cipher_type_t> = {
    let type = UnsafeMutablePointer<srtp_cipher_type_t>.allocate(capacity: 1)
    type.initialize(to: srtp_cipher_type_t(
        alloc: icmAlloc, dealloc: icmDealloc, init: icmInit, set_aad: nil, encrypt: icmCrypt, decrypt: icmCrypt,
        set_iv: icmSetIV, get_tag: nil, description: permanent("AES-128 counter mode using OpenSSL (Switchboard)"),
        test_data: UnsafePointer(icm128Tests), id: srtp_cipher_type_id_t(SRTP_AES_ICM_128)))
    return type
}()

// MARK: - HMAC-SHA1 (RFC 2104), SRTP's authentication for the AES-CM profiles

private let sha1Length: Int32 = 20

private struct HMACState {
    var context: OpaquePointer  // EVP_MAC_CTX, which keeps the keyed inner and outer state
}

private func hmacState(_ raw: UnsafeMutableRawPointer?) -> UnsafeMutablePointer<HMACState> {
    raw!.assumingMemoryBound(to: HMACState.self)
}

private func hmacAlloc(_ out: UnsafeMutablePointer<srtp_auth_pointer_t?>?, _ keyLength: Int32, _ tagLength: Int32) -> srtp_err_status_t {
    guard let out, (0...sha1Length).contains(keyLength), (0...sha1Length).contains(tagLength) else { return srtp_err_status_bad_param }
    guard let context = EVP_MAC_CTX_new(hmac) else { return srtp_err_status_alloc_fail }
    let digestSet = "digest".withCString { name in
        "SHA1".withCString { digest in
            var parameters = [OSSL_PARAM_construct_utf8_string(name, UnsafeMutablePointer(mutating: digest), 0), OSSL_PARAM_construct_end()]
            return EVP_MAC_CTX_set_params(context, &parameters)
        }
    }
    guard digestSet == 1 else {
        EVP_MAC_CTX_free(context)
        return srtp_err_status_alloc_fail
    }
    let auth = UnsafeMutablePointer<srtp_auth_t>.allocate(capacity: 1)
    auth.initialize(to: srtp_auth_t(type: UnsafePointer(hmacSHA1Type), state: allocateState(HMACState(context: context)),
                                    out_len: tagLength, key_len: keyLength, prefix_len: 0))
    out.pointee = auth
    return srtp_err_status_ok
}

private func hmacDealloc(_ auth: srtp_auth_pointer_t?) -> srtp_err_status_t {
    guard let auth else { return srtp_err_status_bad_param }
    deallocateState(auth.pointee.state, as: HMACState.self) { EVP_MAC_CTX_free($0.context) }  // which cleanses the key
    auth.deinitialize(count: 1)
    auth.deallocate()
    return srtp_err_status_ok
}

/// Sets the key and starts a message.
private func hmacInit(_ raw: UnsafeMutableRawPointer?, _ key: UnsafePointer<UInt8>?, _ keyLength: Int32) -> srtp_err_status_t {
    guard let key, keyLength >= 0 else { return srtp_err_status_bad_param }
    return EVP_MAC_init(hmacState(raw).pointee.context, key, Int(keyLength), nil) == 1 ? srtp_err_status_ok : srtp_err_status_init_fail
}

/// Starts a message with the key already set.
private func hmacStart(_ raw: UnsafeMutableRawPointer?) -> srtp_err_status_t {
    EVP_MAC_init(hmacState(raw).pointee.context, nil, 0, nil) == 1 ? srtp_err_status_ok : srtp_err_status_init_fail
}

private func hmacUpdate(_ raw: UnsafeMutableRawPointer?, _ message: UnsafePointer<UInt8>?, _ length: Int32) -> srtp_err_status_t {
    guard length >= 0 else { return srtp_err_status_bad_param }
    guard length > 0 else { return srtp_err_status_ok }
    guard let message else { return srtp_err_status_bad_param }
    return EVP_MAC_update(hmacState(raw).pointee.context, message, Int(length)) == 1 ? srtp_err_status_ok : srtp_err_status_algo_fail
}

/// Takes the last bytes of the message (SRTP's rollover counter), then writes the first
/// `tagLength` bytes of the MAC.
private func hmacCompute(
    _ raw: UnsafeMutableRawPointer?, _ message: UnsafePointer<UInt8>?, _ length: Int32, _ tagLength: Int32, _ tag: UnsafeMutablePointer<UInt8>?
) -> srtp_err_status_t {
    guard let tag, (0...sha1Length).contains(tagLength) else { return srtp_err_status_bad_param }
    let update = hmacUpdate(raw, message, length)
    guard update == srtp_err_status_ok else { return update }
    var mac = (UInt64(0), UInt64(0), UInt64(0))  // 24 bytes of room for SHA-1's 20
    var written = 0
    let done = withUnsafeMutableBytes(of: &mac) { room in
        let bytes = room.baseAddress!.assumingMemoryBound(to: UInt8.self)
        guard EVP_MAC_final(hmacState(raw).pointee.context, bytes, &written, room.count) == 1, written == Int(sha1Length) else { return false }
        tag.update(from: bytes, count: Int(tagLength))
        return true
    }
    return done ? srtp_err_status_ok : srtp_err_status_algo_fail  // OpenSSL failed: not a forged packet
}

/// RFC 2202 test case 1.
nonisolated(unsafe) private let hmacSHA1Tests: UnsafeMutablePointer<srtp_auth_test_case_t> = {
    let test = UnsafeMutablePointer<srtp_auth_test_case_t>.allocate(capacity: 1)
    test.initialize(to: srtp_auth_test_case_t(
        key_length_octets: 20, key: permanent([UInt8](repeating: 0x0B, count: 20)), data_length_octets: 8,
        data: permanent(Array("Hi There".utf8)), tag_length_octets: 20,
        tag: permanent(vector("b617318655057264e28bc0b6fb378c8ef146be00")), next_test_case: nil))
    return test
}()

nonisolated(unsafe) private let hmacSHA1Type: UnsafeMutablePointer<srtp_auth_type_t> = {
    let type = UnsafeMutablePointer<srtp_auth_type_t>.allocate(capacity: 1)
    type.initialize(to: srtp_auth_type_t(
        alloc: hmacAlloc, dealloc: hmacDealloc, init: hmacInit, compute: hmacCompute, update: hmacUpdate, start: hmacStart,
        description: permanent("HMAC-SHA1 using OpenSSL (Switchboard)"), test_data: UnsafePointer(hmacSHA1Tests),
        id: srtp_auth_type_id_t(SRTP_HMAC_SHA1)))
    return type
}()
