import Metrics
import Synchronization
import Wire

/// LoginLimiter throttles failed logins per source: an IPv4 address or an IPv6 /64. There
/// is no limit per peer ID: IDs are not secret and keys are 256 random bits, so a limit per
/// ID protects nothing and would let anyone lock a peer out with a few wrong guesses.
///
/// Each attempt takes a token from its source's bucket in the same call that decides
/// whether it may go ahead (no window between a check and a later update for concurrent
/// attempts to slip through); the right key gives its token back. A source that is out of
/// tokens gets 429 with Retry-After, whatever key it sends, until one refills.
package final class LoginLimiter: Sendable {
    /// A bucket of `burst` failures refilling one every `interval`.
    package struct Limits: Sendable, Equatable {
        package var burst: Int
        package var interval: Duration
        package init(burst: Int, interval: Duration) {
            self.burst = burst
            self.interval = interval
        }
    }

    private let buckets: Mutex<TokenBuckets<LoginSource>>
    private static let evicted = Counter(label: "switchboard_login_limiter_evictions_total")

    package init(limits: Limits = Limits(burst: 20, interval: .seconds(5)), capacity: Int = 100_000) {
        buckets = Mutex(TokenBuckets(burst: limits.burst, interval: limits.interval, capacity: capacity))
    }

    /// Decides and records in one step: nil when a login from `source` may go ahead (it has
    /// taken a token, which `succeeded` gives back), or how long to wait before trying again.
    package func admit(_ source: LoginSource, now: ContinuousClock.Instant = .now) -> Duration? {
        let (wait, evicted) = buckets.withLock { buckets in
            let before = buckets.evictions
            let wait = buckets.take(source, now: now)
            return (wait, buckets.evictions - before)
        }
        if evicted > 0 { Self.evicted.increment(by: Int64(evicted)) }
        return wait
    }

    /// The key was right: the attempt's token goes back, so logging in costs nothing.
    package func succeeded(_ source: LoginSource, now: ContinuousClock.Instant = .now) {
        buckets.withLock { $0.giveBack(source, now: now) }
    }

    /// Sources dropped while their buckets still had failures in them, to make room.
    package var evictions: Int { buckets.withLock { $0.evictions } }
    /// Sources tracked now.
    package var trackedSources: Int { buckets.withLock { $0.count } }

    /// Whole seconds for a Retry-After header: rounded up, at least 1.
    package static func retryAfterSeconds(_ wait: Duration) -> Int {
        let (seconds, attoseconds) = wait.components
        return max(1, Int(seconds) + (attoseconds > 0 ? 1 : 0))
    }
}

/// LoginSource is what a login limit applies to. An IPv6 client is its /64, the usual
/// allocation of one subscriber, who could otherwise walk through 2^64 addresses; an
/// IPv4-mapped IPv6 address (how a dual-stack socket shows IPv4 clients) is the IPv4 one.
package enum LoginSource: Hashable, Sendable {
    case v4(UInt32)
    case v6Prefix(UInt64)
    /// No address (in-process tests) or one that does not parse: all such share one bucket.
    case unknown

    package init(_ address: String) {
        switch IPAddress(address) {
        case .v4(let value): self = .v4(value)
        case .v6(let value) where value >> 32 == 0xFFFF: self = .v4(UInt32(truncatingIfNeeded: value))
        case .v6(let value): self = .v6Prefix(UInt64(truncatingIfNeeded: value >> 64))
        case nil: self = .unknown
        }
    }
}

/// TokenBuckets is a token bucket per key, held as the instant the bucket is full again
/// (the generic cell rate algorithm): one value per key, exact integer time arithmetic, so
/// limits hold to the nanosecond at their boundaries. No I/O; the caller passes the time.
///
/// The table is bounded: a new key when it is full first drops the buckets that have
/// refilled (they say nothing an absent one would not), then, if that freed too little,
/// evicts the fullest eighth, those least recently drained, and counts them.
package struct TokenBuckets<Key: Hashable> {
    package let burst: Int
    package let interval: Duration
    package let capacity: Int
    private var fullAt: [Key: ContinuousClock.Instant] = [:]
    package private(set) var evictions = 0

    package init(burst: Int, interval: Duration, capacity: Int) {
        self.burst = max(1, burst)
        self.interval = interval
        self.capacity = max(1, capacity)
    }

    package var count: Int { fullAt.count }

    /// Takes a token for `key`: nil if it had one, or the wait until it has (nothing taken).
    package mutating func take(_ key: Key, now: ContinuousClock.Instant) -> Duration? {
        let known = fullAt[key]
        let drained = max(known ?? now, now) + interval
        let window = interval * burst
        guard drained - now <= window else { return drained - window - now }
        if known == nil && fullAt.count >= capacity { makeRoom(now: now) }
        fullAt[key] = drained
        return nil
    }

    /// Puts back a token `take` took.
    package mutating func giveBack(_ key: Key, now: ContinuousClock.Instant) {
        guard let drained = fullAt[key] else { return }
        let refilled = drained - interval
        fullAt[key] = refilled > now ? refilled : nil
    }

    /// The tokens `key` has at `now` (whole ones).
    package func tokens(_ key: Key, now: ContinuousClock.Instant) -> Int {
        guard let drained = fullAt[key], drained > now else { return burst }
        let missing = drained - now
        // Tokens owed, rounded up: a partly refilled token is not there yet.
        let owed = Int((missing / interval).rounded(.up))
        return max(0, burst - owed)
    }

    private mutating func makeRoom(now: ContinuousClock.Instant) {
        fullAt = fullAt.filter { $0.value > now }
        let wanted = max(1, capacity / 8)
        let free = capacity - fullAt.count
        guard free < wanted else { return }
        let victims = fullAt.sorted { $0.value < $1.value }.prefix(wanted - free)
        for victim in victims { fullAt[victim.key] = nil }
        evictions += victims.count
    }
}
