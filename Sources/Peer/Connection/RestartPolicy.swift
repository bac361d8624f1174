import NIOCore

/// RestartPolicy decides when a peer connection restarts ICE and what a trickle fragment's
/// credentials mean (RFC 8838/8840: new ones are the peer's restart). Pure state: the
/// connection reports what it sent and received and asks; it never looks at a clock itself.
struct RestartPolicy: Sendable {
    /// How long bytes we sent may go without any answer on the path before ICE restarts. SCTP
    /// acknowledges within 200 ms and its heartbeats are answered at once, so silence this long
    /// while we send means the path broke (a NAT forgot or changed its mapping, an address went).
    var silence: TimeAmount = .seconds(1)
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
    /// When we first sent after the last datagram the peer sent us on a checked path.
    private var sentSinceReceive: NIODeadline?
    private(set) var restarts = 0

    /// The description's credentials: the first generation.
    mutating func described(ufrag: String) {
        remoteUfrag = ufrag
    }

    mutating func sent(at now: NIODeadline) {
        if sentSinceReceive == nil { sentSinceReceive = now }
    }

    mutating func received() {
        sentSinceReceive = nil
    }

    /// Why ICE should restart now, if it should.
    func restartReason(now: NIODeadline, consentLost: Bool) -> String? {
        let silent = sentSinceReceive.map { now - $0 >= silence } ?? false
        guard silent || consentLost else { return nil }
        if let lastRestart, now - lastRestart < spacing { return nil }
        return silent ? "no answer on the path for \(silence.nanoseconds / 1_000_000) ms" : "consent unanswered"
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
