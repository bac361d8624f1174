import CSSL
import Wire

/// DTLSFailure is why a DTLS association ended without a close_notify.
package enum DTLSFailure: Error, Sendable, Equatable, CustomStringConvertible {
    /// The peer's certificate is not one the remote SDP named (RFC 8122 §5, RFC 8827 §6.5):
    /// the handshake was refused with a bad_certificate alert. `received` is the certificate's
    /// fingerprint with the first expected hash function (nil: no certificate).
    case fingerprintMismatch(expected: [DTLSFingerprint], received: DTLSFingerprint?)
    /// The handshake's retransmissions ran out (OpenSSL gives up after 12 timeouts).
    case timedOut(String)
    /// OpenSSL refused the exchange: a fatal alert from the peer, a message it cannot accept.
    case protocolError(String)

    package var description: String {
        switch self {
        case .fingerprintMismatch(let expected, let received):
            "the peer's certificate (\(received?.sdpValue ?? "none")) does not match the SDP fingerprint "
                + "(\(expected.map(\.sdpValue).joined(separator: ", ")))"
        case .timedOut(let reason): "handshake timed out: \(reason)"
        case .protocolError(let reason): reason
        }
    }
}

/// DTLSEndpoint is one DTLS 1.2 association over datagrams the caller carries, through
/// OpenSSL and two memory BIOs: datagrams in with `receive`, datagrams out and decrypted
/// application data in the returned `Output`, application data out with `write`, timers
/// through `nextTimeout`/`handleTimeout`. No I/O, no threads, no clock of its own besides
/// OpenSSL's retransmission timer: the owner calls it from one place at a time. Not Sendable
/// (deliberately not marked unavailable either: a new endpoint can be handed to the event
/// loop that will own it, as region-based isolation allows).
package final class DTLSEndpoint {
    package enum Role: Sendable, Equatable { case client, server }

    package enum State: Sendable, Equatable {
        case handshaking
        case connected
        case failed(DTLSFailure)
        /// close_notify sent (`close()`) or received (`closeNotifyReceived`): nothing more
        /// goes in or out.
        case closed
    }

    /// What happened during one call, in order.
    package enum Event: Sendable, Equatable {
        /// The handshake finished (and the fingerprint matched, when one was expected).
        case connected
        /// The peer sent close_notify; ours went back in this output's datagrams.
        case closeNotifyReceived
        case failed(DTLSFailure)
    }

    /// What one call produced: datagrams to send to the peer (in order), the application data
    /// that arrived (one element per DTLS record, in order: an SCTP packet each, RFC 8261 §5),
    /// and what changed.
    package struct Output: Sendable, Equatable {
        package var datagrams: [[UInt8]] = []
        package var applicationData: [[UInt8]] = []
        package var events: [Event] = []

        package init() {}
    }

    package enum WriteError: Error, Sendable, Equatable {
        /// The association is closed or failed: nothing more goes out.
        case notOpen
        /// The handshake is still running and `maxBufferedBytes` wait already.
        case bufferFull
    }

    package struct Configuration: Sendable {
        /// Largest datagram sent (handshake flights are fragmented to fit, records packed
        /// under it): an IPv6 path with room for TURN and ICE overhead.
        package var mtu = 1200
        /// The first handshake retransmission timeout; each next one doubles, up to 60 s
        /// (RFC 6347 §4.2.4.1).
        package var initialRetransmissionTimeout: Duration = .seconds(1)
        /// Largest application data record `write` makes (at most 16384, TLS's limit); a
        /// longer write becomes several records.
        package var maxRecordPayload = 16_384
        /// Application data bytes `write` may hold before the handshake finishes.
        package var maxBufferedBytes = 256 * 1024

        package init() {}
    }

    /// Largest datagram `receive` looks at: no UDP payload is longer.
    package static let maxDatagramSize = 65_535
    /// Largest datagram sent with the default configuration.
    package static let mtu = 1200

    let ssl: OpaquePointer
    let incoming: OpaquePointer
    let outgoing: OpaquePointer
    package let role: Role
    package let configuration: Configuration
    /// The fingerprints the remote SDP named; nil when the caller checks `remoteFingerprint`.
    package let expectedRemoteFingerprints: [DTLSFingerprint]?
    package private(set) var state = State.handshaking
    /// The peer closed with close_notify (as opposed to our `close()` or a failure).
    package private(set) var closeNotifyReceived = false
    /// Datagrams refused before OpenSSL saw them: empty, too long, not DTLS by their first
    /// byte (RFC 7983), or after the association ended. (OpenSSL drops bad records silently.)
    package private(set) var droppedDatagrams = 0
    /// Application data written before the handshake finished, and its total size.
    private var pending: [[UInt8]] = []
    private var pendingBytes = 0
    /// Set by the verification callback when the peer's certificate matched no fingerprint.
    private var refusedCertificate: DTLSFingerprint?
    private var refusedCertificateMissing = false

    /// `remoteFingerprints`: the peer's certificate must match one of these (the remote SDP's
    /// `a=fingerprint` lines; an empty list matches nothing), checked inside the handshake so
    /// that a mismatch aborts it. nil leaves the check to the caller (`remoteFingerprint`).
    package init(context: DTLSContext, role: Role, remoteFingerprints: [DTLSFingerprint]?,
                 configuration: Configuration = Configuration()) throws(OpenSSLError) {
        guard let ssl = SSL_new(context.context) else { throw .drain("SSL_new") }
        guard let incoming = BIO_new(BIO_s_mem()) else {
            SSL_free(ssl)
            throw .drain("BIO_new")
        }
        guard let outgoing = BIO_new(BIO_s_mem()) else {
            BIO_free(incoming)
            SSL_free(ssl)
            throw .drain("BIO_new")
        }
        // An empty read BIO means "no datagram yet", not end of file.
        _ = switchboard_BIO_set_mem_eof_return(incoming, -1)
        _ = switchboard_BIO_set_mem_eof_return(outgoing, -1)
        SSL_set_bio(ssl, incoming, outgoing)  // the SSL owns both BIOs now
        // WebRTC never renegotiates; refusing it keeps a peer from restarting the handshake.
        _ = switchboard_SSL_set_options(ssl, switchboard_SSL_OP_NO_QUERY_MTU() | switchboard_SSL_OP_NO_RENEGOTIATION())
        _ = switchboard_DTLS_set_link_mtu(ssl, min(max(configuration.mtu, 256), 65_507))
        if role == .client { SSL_set_connect_state(ssl) } else { SSL_set_accept_state(ssl) }
        self.ssl = ssl
        self.incoming = incoming
        self.outgoing = outgoing
        self.role = role
        self.configuration = configuration
        expectedRemoteFingerprints = remoteFingerprints
        // The callbacks find this object through the SSL (app data, index 0): unretained, as
        // the SSL never outlives it.
        SSL_set_ex_data(ssl, 0, Unmanaged.passUnretained(self).toOpaque())
        DTLS_set_timer_cb(ssl, retransmissionTimeout)
    }

    deinit { SSL_free(ssl) }

    static func owner(of ssl: OpaquePointer) -> DTLSEndpoint? {
        guard let pointer = SSL_get_ex_data(ssl, 0) else { return nil }
        return Unmanaged<DTLSEndpoint>.fromOpaque(pointer).takeUnretainedValue()
    }

    // MARK: - Events in

    /// Starts the handshake: the client's first flight (ClientHello); nothing for a server,
    /// which waits for one.
    package func start() -> Output {
        var output = Output()
        guard role == .client, state == .handshaking else { return output }
        advanceHandshake(&output)
        drainOutgoing(into: &output)
        return output
    }

    /// Feeds one received datagram (whole: its records are read as one packet).
    package func receive(_ datagram: UnsafeRawBufferPointer) -> Output {
        var output = Output()
        guard state == .handshaking || state == .connected, let base = datagram.baseAddress, !datagram.isEmpty,
              datagram.count <= Self.maxDatagramSize, PacketKind(firstByte: datagram[0]) == .dtls else {
            droppedDatagrams += 1
            return output
        }
        // The BIO holds exactly this datagram: a memory BIO keeps no boundaries of its own.
        _ = switchboard_BIO_reset(incoming)
        guard BIO_write(incoming, base, Int32(datagram.count)) == Int32(datagram.count) else {
            droppedDatagrams += 1
            return output
        }
        if state == .handshaking { advanceHandshake(&output) }
        // Also right after the handshake: application data may share the Finished's datagram.
        if state == .connected { readApplicationData(&output) }
        _ = switchboard_BIO_reset(incoming)
        drainOutgoing(into: &output)
        return output
    }

    package func receive(_ datagram: [UInt8]) -> Output {
        datagram.withUnsafeBytes { receive($0) }
    }

    /// How long until `handleTimeout` is due (a handshake flight's retransmission, RFC 6347
    /// §4.2.4), or nil when no timer runs. The caller's clock schedules the call; OpenSSL
    /// retransmits only once its own monotonic timer has also run out.
    package var nextTimeout: Duration? {
        guard state == .handshaking || state == .connected else { return nil }
        var time = timeval()
        guard switchboard_DTLSv1_get_timeout(ssl, &time) == 1 else { return nil }
        return .seconds(time.tv_sec) + .microseconds(time.tv_usec)
    }

    /// Retransmits the last flight if its timer ran out; fails the association when OpenSSL
    /// has given up.
    package func handleTimeout() -> Output {
        var output = Output()
        guard state == .handshaking || state == .connected else { return output }
        ERR_clear_error()
        if switchboard_DTLSv1_handle_timeout(ssl) < 0 {
            fail(.timedOut(OpenSSLError.drainReasons() ?? "no answer"), &output)
        }
        drainOutgoing(into: &output)
        return output
    }

    // MARK: - Application data out

    /// Encrypts `message` as application data: one record when it is at most
    /// `maxRecordPayload` bytes long (an SCTP packet per record, RFC 8261 §5), else as many
    /// records as it takes, in order. Before the handshake finishes the bytes wait (up to
    /// `maxBufferedBytes`) and go out with the datagrams of the call that connects.
    /// Returns the datagrams to send now.
    package func write(_ message: UnsafeRawBufferPointer) throws(WriteError) -> [[UInt8]] {
        switch state {
        case .failed, .closed: throw .notOpen
        case .handshaking:
            guard !message.isEmpty else { return [] }
            guard message.count <= configuration.maxBufferedBytes - pendingBytes else { throw .bufferFull }
            pending.append(Array(message))
            pendingBytes += message.count
            return []
        case .connected:
            var output = Output()
            encrypt(message, &output)
            drainOutgoing(into: &output)
            if case .failed = state { throw .notOpen }
            return output.datagrams
        }
    }

    package func write(_ message: [UInt8]) throws(WriteError) -> [[UInt8]] {
        try message.withUnsafeBytes { bytes in Result { () throws(WriteError) in try write(bytes) } }.get()
    }

    /// Sends close_notify (RFC 5246 §7.2.1) when connected; an unfinished handshake is
    /// abandoned without a word. Either way the association is closed.
    package func close() -> [[UInt8]] {
        switch state {
        case .connected:
            ERR_clear_error()
            _ = SSL_shutdown(ssl)
            state = .closed
            pending = []
            pendingBytes = 0
            var output = Output()
            drainOutgoing(into: &output)
            return output.datagrams
        case .handshaking:
            state = .closed
            pending = []
            pendingBytes = 0
            return []
        case .failed, .closed:
            return []
        }
    }

    // MARK: - What was negotiated

    /// The fingerprint of the certificate the peer presented, once it has presented one.
    package func remoteFingerprint(_ algorithm: DTLSFingerprint.Algorithm = .sha256) -> DTLSFingerprint? {
        guard let certificate = SSL_get1_peer_certificate(ssl) else { return nil }
        defer { X509_free(certificate) }
        return try? DTLSFingerprint(of: certificate, algorithm: algorithm)
    }

    /// The largest application data `write` can put in one record that fits `mtu` with
    /// the negotiated cipher's overhead (what SCTP's path MTU should be); 0 before the
    /// handshake finished.
    package var dataMTU: Int {
        guard state == .connected else { return 0 }
        return DTLS_get_data_mtu(ssl)
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

    // MARK: - Inside

    /// The verification callback's question: is `leaf` a certificate the SDP named?
    func acceptsPeer(leaf: OpaquePointer?) -> Bool {
        guard let expected = expectedRemoteFingerprints else { return true }
        guard let leaf else {
            refusedCertificateMissing = true
            return false
        }
        if matches(leaf, expected) { return true }
        refusedCertificate = try? DTLSFingerprint(of: leaf, algorithm: expected.first?.algorithm ?? .sha256)
        return false
    }

    private func matches(_ certificate: OpaquePointer, _ expected: [DTLSFingerprint]) -> Bool {
        expected.contains { fingerprint in
            (try? DTLSFingerprint(of: certificate, algorithm: fingerprint.algorithm)) == fingerprint
        }
    }

    private func advanceHandshake(_ output: inout Output) {
        // SSL_get_error reads the thread's error queue, which other OpenSSL users on this
        // thread (SRTP's ciphers, other endpoints) may have left entries in: start it empty.
        ERR_clear_error()
        let result = SSL_do_handshake(ssl)
        if result == 1 {
            connected(&output)
            return
        }
        let error = SSL_get_error(ssl, result)
        if error == switchboard_SSL_ERROR_WANT_READ() { return }
        if let expected = expectedRemoteFingerprints, refusedCertificate != nil || refusedCertificateMissing {
            ERR_clear_error()
            fail(.fingerprintMismatch(expected: expected, received: refusedCertificate), &output)
        } else {
            fail(.protocolError(OpenSSLError.drain("SSL_do_handshake").description), &output)
        }
    }

    private func connected(_ output: inout Output) {
        // The callback checked the leaf already; a certificate that never went through it
        // (none at all) must not get past here either.
        if let expected = expectedRemoteFingerprints {
            let certificate = SSL_get1_peer_certificate(ssl)
            defer { if let certificate { X509_free(certificate) } }
            guard let certificate, matches(certificate, expected) else {
                let received = certificate.flatMap { try? DTLSFingerprint(of: $0, algorithm: expected.first?.algorithm ?? .sha256) }
                fail(.fingerprintMismatch(expected: expected, received: received), &output)
                return
            }
        }
        state = .connected
        output.events.append(.connected)
        let waiting = pending
        pending = []
        pendingBytes = 0
        for message in waiting where state == .connected {
            message.withUnsafeBytes { encrypt($0, &output) }
        }
    }

    private func readApplicationData(_ output: inout Output) {
        // One record per SSL_read; the datagram is bounded, so is this loop.
        withUnsafeTemporaryAllocation(of: UInt8.self, capacity: 16_384 + 1024) { buffer in
            guard let base = buffer.baseAddress else { return }
            while state == .connected {
                ERR_clear_error()
                let count = SSL_read(ssl, base, Int32(buffer.count))
                if count > 0 {
                    output.applicationData.append(Array(UnsafeBufferPointer(start: base, count: Int(count))))
                    continue
                }
                let error = SSL_get_error(ssl, count)
                if error == switchboard_SSL_ERROR_WANT_READ() { return }
                if error == SSL_ERROR_ZERO_RETURN {
                    closeNotifyReceived = true
                    state = .closed
                    pending = []
                    pendingBytes = 0
                    output.events.append(.closeNotifyReceived)
                    // Answer with our own close_notify, as TLS asks (RFC 5246 §7.2.1).
                    ERR_clear_error()
                    _ = SSL_shutdown(ssl)
                    return
                }
                fail(.protocolError(OpenSSLError.drain("SSL_read").description), &output)
            }
        }
    }

    private func encrypt(_ message: UnsafeRawBufferPointer, _ output: inout Output) {
        guard let base = message.baseAddress else { return }
        let recordSize = min(max(configuration.maxRecordPayload, 1), 16_384)
        var offset = 0
        while offset < message.count, state == .connected {
            let length = min(recordSize, message.count - offset)
            ERR_clear_error()
            let written = SSL_write(ssl, base + offset, Int32(length))
            guard written == Int32(length) else {
                fail(.protocolError(OpenSSLError.drain("SSL_write").description), &output)
                return
            }
            offset += length
        }
    }

    private func fail(_ failure: DTLSFailure, _ output: inout Output) {
        state = .failed(failure)
        pending = []
        pendingBytes = 0
        output.events.append(.failed(failure))
    }

    /// What OpenSSL wrote (records, and the alert a failure sends), cut into DTLS records and
    /// packed into datagrams of at most `mtu` bytes.
    private func drainOutgoing(into output: inout Output) {
        var data: UnsafeMutablePointer<CChar>?
        let length = switchboard_BIO_get_mem_data(outgoing, &data)
        guard let data, length > 0 else { return }
        let bytes = UnsafeRawBufferPointer(start: data, count: length)
        output.datagrams += DTLSRecords.pack(bytes, mtu: configuration.mtu)
        _ = switchboard_BIO_reset(outgoing)
    }
}

/// OpenSSL's retransmission timer (`DTLS_set_timer_cb`): the endpoint's first timeout, then
/// doubling up to 60 s (RFC 6347 §4.2.4.1). `previous` is 0 when a new flight starts.
private func retransmissionTimeout(_ ssl: OpaquePointer?, _ previous: UInt32) -> UInt32 {
    let maximum: UInt32 = 60_000_000
    guard previous == 0 else { return previous >= maximum / 2 ? maximum : previous * 2 }
    guard let ssl, let endpoint = DTLSEndpoint.owner(of: ssl) else { return 1_000_000 }
    let (seconds, attoseconds) = endpoint.configuration.initialRetransmissionTimeout.components
    let microseconds = seconds * 1_000_000 + attoseconds / 1_000_000_000_000
    return UInt32(clamping: max(microseconds, 1000))
}

/// DTLSRecords splits a run of DTLS records at their headers (RFC 6347 §4.1: type, version,
/// epoch, sequence number, then a 16-bit length — 13 bytes) and packs them into datagrams:
/// a memory BIO keeps no datagram boundaries, the record headers do.
package enum DTLSRecords {
    package static let headerLength = 13

    package static func pack(_ bytes: some RandomAccessCollection<UInt8>, mtu: Int) -> [[UInt8]] {
        var datagrams: [[UInt8]] = []
        var current: [UInt8] = []
        var offset = bytes.startIndex
        while bytes.distance(from: offset, to: bytes.endIndex) >= headerLength {
            let length = Int(bytes[bytes.index(offset, offsetBy: 11)]) << 8 | Int(bytes[bytes.index(offset, offsetBy: 12)])
            let end = bytes.index(offset, offsetBy: min(bytes.distance(from: offset, to: bytes.endIndex), headerLength + length))
            if !current.isEmpty && current.count + bytes.distance(from: offset, to: end) > mtu {
                datagrams.append(current)
                current = []
            }
            current += bytes[offset..<end]
            offset = end
        }
        if offset < bytes.endIndex { current += bytes[offset...] }  // a stray tail: pass it on as it is
        if !current.isEmpty { datagrams.append(current) }
        return datagrams
    }
}
