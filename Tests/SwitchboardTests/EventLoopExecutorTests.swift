import Foundation
import NIOCore
import NIOPosix
import Rendezvous
import Testing

@Suite struct EventLoopExecutorTests {
    actor Counter {
        var value = 0
        func increment() -> Int {
            value += 1
            return value
        }
    }

    /// A task preferring a loop stays on it across awaits: after a sleep, an actor call and a
    /// continuation resumed from another thread.
    @Test func aTaskPreferringALoopRunsOnItAcrossAwaits() async throws {
        let group = MultiThreadedEventLoopGroup(numberOfThreads: 2)
        let loop = group.next()
        let counter = Counter()
        let onLoop: [Bool] = await withTaskExecutorPreference(EventLoopExecutor(loop)) {
            var seen = [loop.inEventLoop]
            try? await Task.sleep(for: .milliseconds(5))
            seen.append(loop.inEventLoop)
            _ = await counter.increment()
            seen.append(loop.inEventLoop)
            await withCheckedContinuation { continuation in
                Thread.detachNewThread { continuation.resume() }
            }
            seen.append(loop.inEventLoop)
            return seen
        }
        #expect(onLoop == [true, true, true, true])
        #expect(!loop.inEventLoop)
        try await group.shutdownGracefully()
    }
}
