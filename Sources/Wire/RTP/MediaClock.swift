/// MediaClock converts time into the units RTP and RTCP put on the wire. Every result wraps
/// where the RFCs say the field wraps, and no input traps: the inputs come from clocks and
/// from gaps between packets, which a camera switched off for a weekend makes large.
package enum MediaClock {
    /// Ticks of a `clockRate` Hz clock in `nanos` nanoseconds, modulo 2^32 as RTP timestamps
    /// wrap (RFC 3550 §5.1). Exact for every input: whole seconds and the remainder are
    /// scaled apart, so no product needs more than 64 bits.
    package static func rtpTicks(nanos: UInt64, clockRate: UInt32) -> UInt32 {
        let (seconds, remainder) = nanos.quotientAndRemainder(dividingBy: 1_000_000_000)
        // remainder < 1e9 and clockRate < 2^32: the product is below 2^62.
        let fraction = remainder * UInt64(clockRate) / 1_000_000_000
        return UInt32(truncatingIfNeeded: seconds &* UInt64(clockRate) &+ fraction)
    }

    /// Nanoseconds from `earlier` to `later`, or 0 when a clock went backwards.
    package static func elapsed(from earlier: UInt64, to later: UInt64) -> UInt64 {
        later >= earlier ? later - earlier : 0
    }

    /// Seconds between the NTP epoch (1900) and the Unix epoch (1970).
    package static let ntpUnixOffset: Int64 = 2_208_988_800

    /// The 64-bit NTP timestamp (RFC 5905 §6: 32 bits of seconds, 32 of fraction) of a Unix
    /// time. The seconds field wraps at the end of era 0 (2036-02-07T06:28:16Z) and goes on
    /// in era 1 from 0, as RFC 5905 and RFC 3550 §4 expect receivers to handle. A time that is
    /// not a finite number gives 0 ("unknown" in an SR's NTP field is not defined; 0 is what
    /// RFC 5905 uses for an unsynchronized clock).
    package static func ntpTimestamp(unixSeconds: Double) -> UInt64 {
        guard unixSeconds.isFinite, abs(unixSeconds) < 1e15 else { return 0 }
        let whole = unixSeconds.rounded(.down)
        let seconds = UInt32(truncatingIfNeeded: Int64(whole) &+ ntpUnixOffset)
        // 0 ≤ unixSeconds - whole < 1; the product rounds down, and is at most 2^32 - 1.
        let fraction = min(UInt64(UInt32.max), UInt64((unixSeconds - whole) * 4_294_967_296))
        return UInt64(seconds) << 32 | fraction
    }
}
