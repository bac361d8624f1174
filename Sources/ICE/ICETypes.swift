import Wire

/// ICETime is "now" for the ICE agent: time since an arbitrary start on a monotonic clock.
/// The agent never reads a clock; the caller passes one in (tests pass a test clock).
package struct ICETime: Comparable, Hashable, Sendable, CustomStringConvertible {
    package var sinceStart: Duration

    package init(_ sinceStart: Duration) { self.sinceStart = sinceStart }

    package static let zero = ICETime(.zero)
    package static func milliseconds(_ value: Int64) -> ICETime { ICETime(.milliseconds(value)) }
    package static func seconds(_ value: Int64) -> ICETime { ICETime(.seconds(value)) }

    /// Whole milliseconds since the start (for logs and tests).
    package var milliseconds: Int64 {
        let (seconds, attoseconds) = sinceStart.components
        return seconds * 1000 + attoseconds / 1_000_000_000_000_000
    }

    package static func < (a: ICETime, b: ICETime) -> Bool { a.sinceStart < b.sinceStart }
    package static func + (a: ICETime, b: Duration) -> ICETime { ICETime(a.sinceStart + b) }
    package static func - (a: ICETime, b: ICETime) -> Duration { a.sinceStart - b.sinceStart }

    package var description: String { "\(milliseconds)ms" }
}

/// ICERole: the controlling agent nominates, the controlled one follows (RFC 8445 §6.1.1).
package enum ICERole: Sendable, Hashable {
    case controlling, controlled

    var other: ICERole { self == .controlling ? .controlled : .controlling }
}

/// ICECredentials are one side's ufrag and password (RFC 8445 §5.3, RFC 8839 §5.4).
package struct ICECredentials: Sendable, Hashable {
    package var ufrag: String
    package var password: String

    package init(ufrag: String, password: String) {
        self.ufrag = ufrag
        self.password = password
    }

    /// Fresh credentials from the system CSPRNG: an 8-character ufrag (48 bits, RFC 8445 asks
    /// for at least 24) and a 24-character password (144 bits, at least 128 asked), in
    /// ice-chars (ALPHA / DIGIT / "+" / "/").
    package static func random() -> ICECredentials {
        ICECredentials(ufrag: iceChars(8), password: iceChars(24))
    }

    private static func iceChars(_ count: Int) -> String {
        let alphabet = Array("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/")
        return String(randomBytes(count).map { alphabet[Int($0 & 63)] })
    }
}

/// ICEBase is where the agent's datagrams leave from and arrive at: one local UDP socket, or
/// one TURN allocation. The caller numbers them; the agent only compares them.
package struct ICEBase: Hashable, Sendable, CustomStringConvertible {
    package let id: Int
    package init(id: Int) { self.id = id }
    package var description: String { "base\(id)" }
}

/// ICEState is the agent's overall state, as RTCIceConnectionState names it.
package enum ICEState: Sendable, Hashable {
    case new, checking, connected, disconnected, failed, closed
}

/// Why the agent went to `.failed`.
package enum ICEFailureReason: Sendable, Hashable {
    /// No candidate pair succeeded within `checkingTimeout` of the remote end-of-candidates
    /// (or within `checkingTimeoutWithoutEndOfCandidates` of the start of checks).
    case noPairSucceeded
    /// The selected pair had no consent response for `consentTimeout` (RFC 7675).
    case consentExpired
}

/// ICEAction is what the caller must do after a call into the agent.
package enum ICEAction: Sendable, Equatable {
    /// Send these bytes from `base` to `to` (through the TURN allocation when the base is one).
    case send(bytes: [UInt8], base: ICEBase, to: TransportAddress)
    /// A local candidate to signal to the peer (trickle): host and relay ones the caller
    /// added (with the foundation the agent gave them) and server-reflexive ones it found.
    case localCandidate(ICECandidate)
    /// Every STUN server added so far has answered or timed out.
    case gatheringComplete
    /// Send application data on this pair from now on.
    case selectedPair(ICECandidatePair)
    case state(ICEState)
}

/// ICEConfiguration holds the agent's timers and bounds, with documented defaults.
package struct ICEConfiguration: Sendable {
    /// Ta: one new connectivity check per this interval (RFC 8445 §14.2); the first at once.
    package var ta: Duration = .milliseconds(20)
    /// First retransmission timeout of a check or server request; it doubles each time.
    package var initialRTO: Duration = .milliseconds(500)
    /// Retransmissions of a connectivity check before the pair fails (sent at 0, 0.5, 1.5,
    /// 3.5, 7.5, 15.5 s; failed at 31.5 s with the default 5).
    package var checkRetransmissions = 5
    /// Retransmissions of a Binding request to a STUN server (failed at 7.5 s with 3).
    package var serverRetransmissions = 3
    /// How long the controlling agent waits for higher-priority pairs still pending before it
    /// nominates the best succeeded one (it uses that pair for data at once meanwhile).
    package var nominationWait: Duration = .milliseconds(300)
    /// No pair succeeded this long after the remote end-of-candidates: failed.
    package var checkingTimeout: Duration = .seconds(8)
    /// No pair succeeded this long after checks started, end-of-candidates or not: failed.
    package var checkingTimeoutWithoutEndOfCandidates: Duration = .seconds(30)
    /// Consent requests on the selected pair every random interval in this range (RFC 7675 §5.1).
    package var consentInterval: ClosedRange<Duration> = .seconds(4) ... .seconds(6)
    /// While a consent request is unanswered, another one this often.
    package var consentRetryInterval: Duration = .seconds(1)
    /// No consent response (nor other traffic) this long, with a request unanswered: disconnected.
    package var disconnectedAfter: Duration = .seconds(5)
    /// No consent response this long: failed (RFC 7675 §5.1: 30 s).
    package var consentTimeout: Duration = .seconds(30)
    package var maxLocalCandidates = 32
    package var maxRemoteCandidates = 64
    package var maxPairs = 100
    package var maxServers = 8

    package init() {}
}

/// ICECounters count what the agent dropped or refused; none of it changed its state.
package struct ICECounters: Sendable, Hashable {
    /// FINGERPRINT present and wrong.
    package var badFingerprints = 0
    /// MESSAGE-INTEGRITY missing or wrong (requests answered 401, responses dropped).
    package var badIntegrity = 0
    /// Requests refused for a missing USERNAME/PRIORITY or a USERNAME that is not ours.
    package var rejectedRequests = 0
    /// Responses that match no transaction of ours.
    package var unmatchedResponses = 0
    /// Error responses without valid integrity (ignored; the check times out instead).
    package var unauthenticatedErrors = 0
    /// Remote candidates over `maxRemoteCandidates`.
    package var remoteCandidatesOverLimit = 0
    /// Remote `.local` (mDNS) candidates: accepted, not paired.
    package var remoteMDNSCandidates = 0
    /// Remote candidates we cannot pair: TCP, an unresolved hostname, port 0, a stale ufrag.
    package var remoteCandidatesUnusable = 0
    /// Pairs not formed because the check list was full.
    package var pairsOverLimit = 0
    /// Local candidates refused (no base, not UDP, over the limit, duplicate).
    package var localCandidatesRefused = 0
    /// Times the role changed because of a conflict (RFC 8445 §7.3.1.1, §7.2.5.1).
    package var roleSwitches = 0
    /// 487 Role Conflict answers sent.
    package var roleConflictsAnswered = 0
    /// STUN requests on a base we do not know, or other methods than Binding.
    package var ignoredRequests = 0
    /// An ICE restart whose checks timed out while the previous pair kept working.
    package var restartsTimedOut = 0
}
