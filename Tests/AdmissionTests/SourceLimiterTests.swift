import Admission
import Testing

@Suite struct SourceLimiterTests {
    let start = ContinuousClock.now
    static let alice = ClientSource("192.0.2.1")

    @Test func aSourceGetsItsBurstThenWaitsExactlyOneIntervalPerToken() {
        let limiter = SourceLimiter(limits: .init(burst: 3, interval: .seconds(5)))
        for _ in 0..<3 { #expect(limiter.admit(Self.alice, now: start) == nil) }
        #expect(limiter.admit(Self.alice, now: start) == .seconds(5))
        // A refused attempt takes nothing: the wait only shrinks.
        #expect(limiter.admit(Self.alice, now: start + .seconds(5) - .nanoseconds(1)) == .nanoseconds(1))
        #expect(limiter.admit(Self.alice, now: start + .seconds(5)) == nil)
        #expect(limiter.admit(Self.alice, now: start + .seconds(5)) == .seconds(5))
        #expect(limiter.admit(Self.alice, now: start + .seconds(25)) == nil)
        #expect(limiter.admit(Self.alice, now: start + .seconds(25)) == nil)
        #expect(limiter.admit(Self.alice, now: start + .seconds(25)) == nil)
        #expect(limiter.admit(Self.alice, now: start + .seconds(25)) == .seconds(5))
    }

    @Test func theRightKeyGivesItsTokenBackAndOtherSourcesAreUntouched() {
        let limiter = SourceLimiter(limits: .init(burst: 2, interval: .seconds(60)))
        #expect(limiter.admit(Self.alice, now: start) == nil)
        for _ in 0..<10 {
            #expect(limiter.admit(Self.alice, now: start) == nil)
            limiter.succeeded(Self.alice, now: start)
        }
        #expect(limiter.admit(Self.alice, now: start) == nil)
        #expect(limiter.admit(Self.alice, now: start) != nil)
        // Failures from a hundred other addresses leave a fresh one its whole burst.
        for n in 0..<100 {
            let source = ClientSource("198.51.100.\(n)")
            #expect(limiter.admit(source, now: start) == nil)
            #expect(limiter.admit(source, now: start) == nil)
            #expect(limiter.admit(source, now: start) != nil)
        }
        #expect(limiter.admit(ClientSource("203.0.113.7"), now: start) == nil)
    }

    @Test func concurrentAttemptsGetExactlyTheBurst() async {
        let limiter = SourceLimiter(limits: .init(burst: 7, interval: .seconds(60)))
        let now = start
        let admitted = await withTaskGroup(of: Bool.self) { group in
            for _ in 0..<200 { group.addTask { limiter.admit(Self.alice, now: now) == nil } }
            return await group.reduce(0) { $0 + ($1 ? 1 : 0) }
        }
        #expect(admitted == 7)
    }

    @Test func IPv6SourcesAreTheir64AndMappedIPv4IsIPv4() {
        #expect(ClientSource("2001:db8:1:2::1") == ClientSource("2001:db8:1:2:ffff:eeee:dddd:cccc"))
        #expect(ClientSource("2001:db8:1:2::1") != ClientSource("2001:db8:1:3::1"))
        #expect(ClientSource("::ffff:192.0.2.1") == ClientSource("192.0.2.1"))
        #expect(ClientSource("::ffff:192.0.2.1") != ClientSource("::ffff:192.0.2.2"))
        #expect(ClientSource("192.0.2.1") != ClientSource("192.0.2.2"))
        #expect(ClientSource("fe80::1%eth0") == ClientSource("fe80::2"))
        #expect(ClientSource("not an address") == .unknown)
        #expect(ClientSource("") == .unknown)
        let limiter = SourceLimiter(limits: .init(burst: 1, interval: .seconds(60)))
        #expect(limiter.admit(ClientSource("2001:db8::1"), now: start) == nil)
        #expect(limiter.admit(ClientSource("2001:db8::2"), now: start) != nil)
    }

    @Test func aFullTableDropsRefilledSourcesThenEvictsTheFullest() {
        let limiter = SourceLimiter(limits: .init(burst: 2, interval: .seconds(10)), capacity: 16)
        // 16 sources, the first 8 failing once at 0 s, the other 8 twice at 5 s.
        for n in 0..<8 { #expect(limiter.admit(ClientSource("192.0.2.\(n)"), now: start) == nil) }
        for n in 8..<16 {
            for _ in 0..<2 { #expect(limiter.admit(ClientSource("192.0.2.\(n)"), now: start + .seconds(5)) == nil) }
        }
        #expect(limiter.trackedSources == 16)
        // A new source at 6 s: nobody has refilled, so the fullest eighth (2 of the first 8) goes.
        #expect(limiter.admit(ClientSource("198.51.100.1"), now: start + .seconds(6)) == nil)
        #expect(limiter.evictions == 2)
        #expect(limiter.trackedSources == 15)
        // The drained ones stayed: they are still refused.
        for n in 8..<16 { #expect(limiter.admit(ClientSource("192.0.2.\(n)"), now: start + .seconds(6)) != nil) }
        // At 10 s the first 8 have refilled; room is made from them without counting evictions.
        #expect(limiter.admit(ClientSource("198.51.100.2"), now: start + .seconds(10)) == nil)
        #expect(limiter.admit(ClientSource("198.51.100.3"), now: start + .seconds(10)) == nil)
        #expect(limiter.evictions == 2)
        #expect(limiter.trackedSources <= 16)
    }

    @Test func retryAfterIsWholeSecondsRoundedUp() {
        #expect(SourceLimiter.retryAfterSeconds(.nanoseconds(1)) == 1)
        #expect(SourceLimiter.retryAfterSeconds(.zero) == 1)
        #expect(SourceLimiter.retryAfterSeconds(.seconds(5)) == 5)
        #expect(SourceLimiter.retryAfterSeconds(.seconds(5) + .nanoseconds(1)) == 6)
    }

    @Test func tokenBucketsCountWholeTokens() {
        var buckets = TokenBuckets<Int>(burst: 3, interval: .seconds(2), capacity: 4)
        #expect(buckets.tokens(1, now: start) == 3)
        _ = buckets.take(1, now: start)
        _ = buckets.take(1, now: start)
        #expect(buckets.tokens(1, now: start) == 1)
        #expect(buckets.tokens(1, now: start + .seconds(1)) == 1)
        #expect(buckets.tokens(1, now: start + .seconds(2)) == 2)
        #expect(buckets.tokens(1, now: start + .seconds(4)) == 3)
    }
}

/// The per-source place count the HTTP server, the relay's connections and the media edge's
/// pending viewers share.
@Suite struct SourceCountsTests {
    @Test func aSourceHoldsUpToItsLimitAndEachReleaseMakesRoom() {
        var counts = SourceCounts(limit: 2)
        let a = ClientSource("2001:db8::1"), sameNetwork = ClientSource("2001:db8::2"), b = ClientSource("192.0.2.1")
        let first = counts.acquire(a), second = counts.acquire(sameNetwork), third = counts.acquire(a)
        #expect(first && second && !third && counts.isFull(a) && counts.count(a) == 2)
        let other = counts.acquire(b)
        #expect(other && counts.sources == 2)
        counts.release(a)
        #expect(!counts.isFull(a))
        let again = counts.acquire(a)
        #expect(again)
        counts.release(a)
        counts.release(a)
        #expect(counts.count(a) == 0 && counts.sources == 1)  // an empty source takes no room
        counts.release(a)  // a release too many does not go negative
        #expect(counts.count(a) == 0 && counts.sources == 1)
    }

    @Test func aLimitOfZeroIsNoLimit() {
        var counts = SourceCounts(limit: 0)
        var taken = 0
        for _ in 0..<1000 where counts.acquire(ClientSource("192.0.2.1")) { taken += 1 }
        #expect(taken == 1000)
        #expect(!counts.isFull(ClientSource("192.0.2.1")) && counts.count(ClientSource("192.0.2.1")) == 1000)
    }
}
