import NIOCore
import NIOPosix
@testable import Rendezvous
import Testing

@Suite struct HeartbeatsTests {
    /// Beats counted per stream, on the loop.
    final class Counts: @unchecked Sendable {
        var beats: [Int: Int] = [:]
        var times: [Int: [ContinuousClock.Instant]] = [:]

        func beat(_ stream: Int) {
            beats[stream, default: 0] += 1
            times[stream, default: []].append(.now)
        }
    }

    @Test func eachStreamBeatsOncePerPeriodUntilItLeaves() async throws {
        let group = MultiThreadedEventLoopGroup(numberOfThreads: 1)
        let loop = group.next()
        let period = Duration.milliseconds(160)  // a tick every 10 ms
        let heartbeats = Heartbeats(period: period)
        let counts = Counts()
        let memberships = try await loop.submit {
            (0..<40).map { stream in heartbeats.join(on: loop) { counts.beat(stream) } }
        }.get()
        #expect(try await loop.submit { heartbeats.members(on: loop) }.get() == 40)
        // Wait for every stream's second beat (a slow machine only stretches the ticks).
        for _ in 0..<500 {
            if try await loop.submit({ counts.beats.count == 40 && counts.beats.values.allSatisfy { $0 >= 2 } }).get() {
                break
            }
            try await Task.sleep(for: .milliseconds(20))
        }
        let times = try await loop.submit { counts.times }.get()
        #expect(times.count == 40 && times.values.allSatisfy { $0.count >= 2 })
        // Streams that joined together are spread over the period's ticks, not beaten at once.
        let firsts = times.values.compactMap(\.first)
        #expect(firsts.max()! - firsts.min()! >= period / 2)
        // And none beats twice within a period.
        let gaps = times.values.flatMap { beats in zip(beats, beats.dropFirst()).map { $1 - $0 } }
        #expect(gaps.allSatisfy { $0 >= period * 0.9 }, "\(gaps.min()!)")
        // A stream that left beats no more; the others go on.
        try await loop.submit { heartbeats.leave(memberships[0]) }.get()
        let (left, other) = try await loop.submit { (counts.beats[0]!, counts.beats[1]!) }.get()
        try await Task.sleep(for: period * 3)
        #expect(try await loop.submit { counts.beats[0]! }.get() == left)
        #expect(try await loop.submit { counts.beats[1]! }.get() > other)
        #expect(try await loop.submit { heartbeats.members(on: loop) }.get() == 39)
        try await group.shutdownGracefully()
    }

    @Test func theTimerStopsWhenItsServerIsGone() async throws {
        let group = MultiThreadedEventLoopGroup(numberOfThreads: 1)
        let loop = group.next()
        let counts = Counts()
        weak var released: Heartbeats?
        do {
            let heartbeats = Heartbeats(period: .milliseconds(16))
            released = heartbeats
            _ = try await loop.submit { heartbeats.join(on: loop) { counts.beat(0) } }.get()
            try await Task.sleep(for: .milliseconds(100))
        }
        #expect(released == nil)  // the loop's timer does not keep it
        let beats = try await loop.submit { counts.beats[0] ?? 0 }.get()
        #expect(beats > 0)
        try await Task.sleep(for: .milliseconds(100))
        #expect(try await loop.submit { counts.beats[0] ?? 0 }.get() == beats)
        try await group.shutdownGracefully()
    }
}
