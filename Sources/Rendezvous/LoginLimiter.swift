import Foundation

/// LoginLimiter throttles failed logins per source IP and per peer ID (token buckets with a
/// bounded number of keys). A key that is out of tokens gets 429 with Retry-After until one
/// refills; successful logins cost nothing.
package actor LoginLimiter {
    private struct Bucket {
        var tokens: Double
        var updated: ContinuousClock.Instant
    }

    package struct Limits: Sendable {
        package var burst: Double
        package var perSecond: Double
        package init(burst: Double, perSecond: Double) {
            self.burst = burst
            self.perSecond = perSecond
        }
    }

    private let perIP: Limits
    private let perPeer: Limits
    private var ips: [String: Bucket] = [:]
    private var peers: [String: Bucket] = [:]
    private let maximumKeys = 100_000

    package init(perIP: Limits = .init(burst: 20, perSecond: 0.2), perPeer: Limits = .init(burst: 10, perSecond: 0.1)) {
        self.perIP = perIP
        self.perPeer = perPeer
    }

    /// Seconds to wait before trying again, or nil when this attempt may go ahead.
    package func retryAfter(ip: String, peerID: String, now: ContinuousClock.Instant = .now) -> Int? {
        let waits = [wait(ips[ip], perIP, now), wait(peers[peerID], perPeer, now)].compactMap { $0 }
        return waits.max()
    }

    package func recordFailure(ip: String, peerID: String, now: ContinuousClock.Instant = .now) {
        take(&ips, ip, perIP, now)
        take(&peers, peerID, perPeer, now)
    }

    private func wait(_ bucket: Bucket?, _ limits: Limits, _ now: ContinuousClock.Instant) -> Int? {
        guard let bucket else { return nil }
        let tokens = refilled(bucket, limits, now).tokens
        guard tokens < 1 else { return nil }
        return Int(((1 - tokens) / limits.perSecond).rounded(.up))
    }

    private func take(_ buckets: inout [String: Bucket], _ key: String, _ limits: Limits, _ now: ContinuousClock.Instant) {
        var bucket = buckets[key].map { refilled($0, limits, now) } ?? Bucket(tokens: limits.burst, updated: now)
        bucket.tokens = max(0, bucket.tokens - 1)
        if buckets[key] == nil && buckets.count >= maximumKeys {
            buckets = buckets.filter { refilled($0.value, limits, now).tokens < limits.burst }
        }
        if buckets[key] != nil || buckets.count < maximumKeys { buckets[key] = bucket }
    }

    private func refilled(_ bucket: Bucket, _ limits: Limits, _ now: ContinuousClock.Instant) -> Bucket {
        let elapsed = now - bucket.updated
        let seconds = Double(elapsed.components.seconds) + Double(elapsed.components.attoseconds) / 1e18
        return Bucket(tokens: min(limits.burst, bucket.tokens + seconds * limits.perSecond), updated: now)
    }
}
