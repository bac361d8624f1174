/// TokenBuckets is a token bucket per key, held as the instant the bucket is full again
/// (the generic cell rate algorithm): one value per key, exact integer time arithmetic, so
/// limits hold to the nanosecond at their boundaries. No I/O; the caller passes the time.
///
/// The table is bounded: a new key when it is full first drops the buckets that have
/// refilled (they say nothing an absent one would not), then, if that freed too little,
/// evicts the fullest eighth, those least recently drained, and counts them.
package struct TokenBuckets<Key: Hashable & Sendable>: Sendable {
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
