import NIOCore

/// RestartPolicy decides when a peer connection restarts ICE and what a trickle fragment's
/// credentials mean (RFC 8838/8840: new ones are the peer's restart). Pure state: the
/// connection reports what it sent and received and asks; it never looks at a clock itself.
struct RestartPolicy: Sendable {
    /// How long bytes we sent may go without any answer on the path before ICE restarts. SCTP
    /// acknowledges within 200 ms and its heartbeats are answered at once, so silence this long
    /// while we send means the path broke (a NAT forgot or changed its mapping, an address went).
    var silence: TimeAmount = .seconds(1)
    /// How long the peer's datagrams may stop before we probe the path once (a consent request
    /// at once; unanswered for `silence`, it restarts ICE). A side that only receives sends nothing of its own
    /// when the path breaks under it: without the probe it would notice only at its next
    /// scheduled consent request (4–6 s), and its NAT, which forgot the mapping, would drop
    /// everything the peer sends until then.
    var quiet: TimeAmount = .milliseconds(500)
    /// At most one restart per this long (one that got no answer is tried again after it).
    var spacing: TimeAmount = .seconds(5)
    /// Older generations remembered (their late fragments are dropped).
    static let staleLimit = 16

    /// The remote ufrag of the current generation.
    private(set) var remoteUfrag: String?
    private var stale: [String] = []
    /// We restarted and wait for the peer's new credentials.
    private(set) var awaitingPeer = false
    private var lastRestart: NIODeadline?
    /// When we first sent after the peer's last datagram on a checked path.
    private var sentSinceReceive: NIODeadline?
    /// When the peer's last datagram (not a consent answer) arrived, and whether we probed
    /// since: one probe per quiet spell, so an idle connection costs nothing more.
    private var lastReceived: NIODeadline?
    private var probedSinceReceive = false
    /// When our probe went, until the pair answers it (or the peer's datagrams come back).
    private var probeSentAt: NIODeadline?
    private(set) var restarts = 0

    /// The description's credentials: the first generation.
    mutating func described(ufrag: String) {
        remoteUfrag = ufrag
    }

    /// We sent the peer datagrams (DTLS) on the path.
    mutating func sent(at now: NIODeadline) {
        if sentSinceReceive == nil { sentSinceReceive = now }
    }

    /// A datagram from the peer on a checked path: the answer to what we sent, and the path is
    /// busy again.
    mutating func received(at now: NIODeadline) {
        sentSinceReceive = nil
        probeSentAt = nil
        lastReceived = now
        probedSinceReceive = false
    }

    /// Whether to probe the path now: the peer's datagrams stopped `quiet` ago and we have not
    /// probed since. The caller sends a consent request at once.
    mutating func probeDue(now: NIODeadline) -> Bool {
        guard let lastReceived, !probedSinceReceive, now - lastReceived >= quiet else { return false }
        probedSinceReceive = true
        probeSentAt = now
        return true
    }

    /// The selected pair answered a consent request. It answers our probe, not our datagrams:
    /// a NAT that changed its mapping passes consent on the new one while the peer's datagrams
    /// still go to the old, so silence after sending still restarts.
    mutating func answered() {
        probeSentAt = nil
    }

    /// Why ICE should restart now, if it should.
    func restartReason(now: NIODeadline, consentLost: Bool) -> String? {
        let silent = sentSinceReceive.map { now - $0 >= silence } ?? false
        let unanswered = probeSentAt.map { now - $0 >= silence } ?? false
        guard silent || unanswered || consentLost else { return nil }
        if let lastRestart, now - lastRestart < spacing { return nil }
        if silent { return "no answer on the path for \(silence.nanoseconds / 1_000_000) ms" }
        return unanswered ? "the quiet path did not answer a consent request" : "consent unanswered"
    }

    /// We restart ICE now: on our own (we then wait for the peer's new credentials) or
    /// answering the peer's restart (its credentials are already taken).
    mutating func restarting(at now: NIODeadline, answeringPeer: Bool = false) {
        restarts += 1
        lastRestart = now
        if !answeringPeer { awaitingPeer = true }
    }

    enum Verdict: Equatable {
        /// Candidates of the current generation: check them.
        case current
        /// A late fragment of an older generation (or of the one our restart left): drop it.
        case old
        /// The peer restarted: `alsoRestart` when the restart was not ours (we restart too,
        /// then take its credentials).
        case peerRestarted(alsoRestart: Bool)
        /// New credentials without a password: unusable.
        case unusable
    }

    /// What a fragment with `ufrag` (and a password or not) means. For `.peerRestarted` the
    /// fragment's credentials become the current generation's.
    mutating func fragment(ufrag: String?, hasPassword: Bool) -> Verdict {
        guard let ufrag, let current = remoteUfrag, ufrag != current else {
            return awaitingPeer ? .old : .current
        }
        if stale.contains(ufrag) { return .old }
        guard hasPassword else { return .unusable }
        let alsoRestart = !awaitingPeer
        awaitingPeer = false
        stale.append(current)
        if stale.count > Self.staleLimit { stale.removeFirst() }
        remoteUfrag = ufrag
        return .peerRestarted(alsoRestart: alsoRestart)
    }
}
