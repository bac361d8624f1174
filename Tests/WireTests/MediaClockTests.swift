import Testing
@testable import Wire

/// RTP clock ticks and NTP timestamps for any input: exact, wrapping where the field wraps,
/// never trapping.
@Suite struct MediaClockTests {
    /// The exact value by 128-bit arithmetic, for comparison.
    static func reference(_ nanos: UInt64, _ rate: UInt32) -> UInt32 {
        let product = UInt128(nanos) * UInt128(rate)
        return UInt32(truncatingIfNeeded: product / 1_000_000_000)
    }

    @Test func rtpTicksAreExactForEveryMagnitude() {
        let rates: [UInt32] = [8000, 48000, 90000, UInt32.max]
        var inputs: [UInt64] = [0, 1, 999_999_999, 1_000_000_000, 33_333_333, 60 * 3600 * 1_000_000_000,
                                204_963_823_770_000, UInt64.max, UInt64.max - 1]
        var generator = SystemRandomNumberGenerator()
        for _ in 0..<2000 { inputs.append(.random(in: 0...UInt64.max, using: &generator)) }
        for rate in rates {
            for nanos in inputs {
                #expect(MediaClock.rtpTicks(nanos: nanos, clockRate: rate) == Self.reference(nanos, rate),
                        "nanos \(nanos) rate \(rate)")
            }
        }
        #expect(MediaClock.rtpTicks(nanos: 1_000_000_000, clockRate: 90000) == 90000)
        #expect(MediaClock.rtpTicks(nanos: 11_111, clockRate: 90000) == 0)  // 0.99999 ticks rounds down
    }

    @Test func elapsedIsZeroWhenTheClockWentBackwards() {
        #expect(MediaClock.elapsed(from: 5, to: 7) == 2)
        #expect(MediaClock.elapsed(from: 7, to: 5) == 0)
        #expect(MediaClock.elapsed(from: 0, to: .max) == .max)
    }

    /// RFC 5905 §6: era 0 ends at 2036-02-07T06:28:16Z (Unix 2085978496), where the 32-bit
    /// seconds field wraps to 0.
    @Test func ntpTimestampsWrapAtTheEndOfEraZero() {
        #expect(MediaClock.ntpTimestamp(unixSeconds: 0) == UInt64(2_208_988_800) << 32)
        #expect(MediaClock.ntpTimestamp(unixSeconds: 1.5) == (UInt64(2_208_988_801) << 32 | 0x8000_0000))
        #expect(MediaClock.ntpTimestamp(unixSeconds: 2_085_978_495.75) == (UInt64(UInt32.max) << 32 | 0xC000_0000))
        #expect(MediaClock.ntpTimestamp(unixSeconds: 2_085_978_496) == 0)
        #expect(MediaClock.ntpTimestamp(unixSeconds: 2_085_978_497.25) == (1 << 32 | 0x4000_0000))
        // Before 1900 wraps backwards into era -1; nonsense is 0, never a trap.
        #expect(MediaClock.ntpTimestamp(unixSeconds: -2_208_988_801) == UInt64(UInt32.max) << 32)
        for value in [Double.nan, .infinity, -.infinity, 1e300, -1e300] {
            #expect(MediaClock.ntpTimestamp(unixSeconds: value) == 0)
        }
    }
}
