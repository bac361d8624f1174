import Wire

/// RateLimiter is a token bucket per key with a bounded number of keys, for failed
/// authentications per source IP. It keeps no state for sources that never fail.
struct RateLimiter {
    private struct Bucket {
        var tokens: Double
        var updated: Int64
    }

    let burst: Double
    let perSecond: Double
    let maximumKeys: Int
    private var buckets: [IPAddress: Bucket] = [:]

    init(burst: Int, perSecond: Double, maximumKeys: Int = 100_000) {
        self.burst = Double(burst)
        self.perSecond = perSecond
        self.maximumKeys = maximumKeys
    }

    /// True while `key` has tokens left (its failures are under the limit).
    func allows(_ key: IPAddress, nowMillis: Int64) -> Bool {
        guard let bucket = buckets[key] else { return true }
        return refilled(bucket, now: nowMillis).tokens >= 1
    }

    /// Takes a token for one failure.
    mutating func recordFailure(_ key: IPAddress, nowMillis: Int64) {
        var bucket = buckets[key].map { refilled($0, now: nowMillis) } ?? Bucket(tokens: burst, updated: nowMillis)
        bucket.tokens = max(0, bucket.tokens - 1)
        if buckets[key] == nil && buckets.count >= maximumKeys { prune(nowMillis: nowMillis) }
        if buckets[key] != nil || buckets.count < maximumKeys { buckets[key] = bucket }
    }

    /// Drops buckets that have refilled completely (they say nothing a new one would not).
    mutating func prune(nowMillis: Int64) {
        buckets = buckets.filter { refilled($0.value, now: nowMillis).tokens < burst }
    }

    var trackedKeys: Int { buckets.count }

    private func refilled(_ bucket: Bucket, now: Int64) -> Bucket {
        let elapsed = Double(max(0, now - bucket.updated)) / 1000
        return Bucket(tokens: min(burst, bucket.tokens + elapsed * perSecond), updated: now)
    }
}
