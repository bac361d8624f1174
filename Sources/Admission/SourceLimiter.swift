import Metrics
import NIOConcurrencyHelpers
import Wire

/// SourceLimiter limits what one client source (an IPv4 address or an IPv6 /64) may do: a
/// token bucket per source, shared by the event loops behind a lock.
///
/// Failed logins: there is no limit per peer ID, since IDs are not secret and keys are 256
/// random bits, so a limit per ID protects nothing and would let anyone lock a peer out with
/// a few wrong guesses. Each attempt takes a token in the same call that decides whether it
/// may go ahead (no window between a check and a later update for concurrent attempts to
/// slip through); the right key gives its token back. WHEP offers: every POST takes one.
/// A source that is out of tokens gets 429 with Retry-After until one refills.
package final class SourceLimiter: Sendable {
    /// A bucket of `burst` failures refilling one every `interval`.
    package struct Limits: Sendable, Equatable {
        package var burst: Int
        package var interval: Duration
        package init(burst: Int, interval: Duration) {
            self.burst = burst
            self.interval = interval
        }
    }

    private let buckets: NIOLockedValueBox<TokenBuckets<ClientSource>>
    private let evicted: Counter

    /// `name` labels the evictions counter: `switchboard_NAME_limiter_evictions_total`.
    package init(limits: Limits = Limits(burst: 20, interval: .seconds(5)), capacity: Int = 100_000, name: String = "login") {
        buckets = NIOLockedValueBox(TokenBuckets(burst: limits.burst, interval: limits.interval, capacity: capacity))
        evicted = Counter(label: "switchboard_\(name)_limiter_evictions_total")
    }

    /// Decides and records in one step: nil when a login from `source` may go ahead (it has
    /// taken a token, which `succeeded` gives back), or how long to wait before trying again.
    package func admit(_ source: ClientSource, now: ContinuousClock.Instant = .now) -> Duration? {
        let (wait, evicted) = buckets.withLockedValue { buckets in
            let before = buckets.evictions
            let wait = buckets.take(source, now: now)
            return (wait, buckets.evictions - before)
        }
        if evicted > 0 { self.evicted.increment(by: Int64(evicted)) }
        return wait
    }

    /// The key was right: the attempt's token goes back, so logging in costs nothing.
    package func succeeded(_ source: ClientSource, now: ContinuousClock.Instant = .now) {
        buckets.withLockedValue { $0.giveBack(source, now: now) }
    }

    /// Sources dropped while their buckets still had failures in them, to make room.
    package var evictions: Int { buckets.withLockedValue { $0.evictions } }
    /// Sources tracked now.
    package var trackedSources: Int { buckets.withLockedValue { $0.count } }

    /// Whole seconds for a Retry-After header: rounded up, at least 1.
    package static func retryAfterSeconds(_ wait: Duration) -> Int {
        let (seconds, attoseconds) = wait.components
        return max(1, Int(seconds) + (attoseconds > 0 ? 1 : 0))
    }
}
