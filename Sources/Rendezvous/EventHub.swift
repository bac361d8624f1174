import Foundation

/// EventHub wakes a peer's event stream or long-poll when an event for it is stored. Events
/// themselves live in SQLite; the hub only says "look again". A version per peer closes the
/// gap between reading the events and starting to wait.
///
/// Waits time out through one sweeper task for the whole hub (every `tick`), not a timer
/// task per wait: a parked stream then costs a dictionary entry, which matters at 10k
/// connected peers.
package actor EventHub {
    /// A parked stream: resumed by `notify`, by its deadline, by cancellation or by
    /// shutdown, whichever comes first.
    private struct Waiter {
        var continuation: CheckedContinuation<Void, Never>
        var deadline: ContinuousClock.Instant
    }

    private var versions: [String: Int] = [:]
    private var waiters: [String: [UInt64: Waiter]] = [:]
    private var nextWaiterID: UInt64 = 0
    private var openStreams: [String: Int] = [:]
    private var sweeper: Task<Void, Never>?
    private let tick: Duration
    /// Set on graceful shutdown: waits return at once and streams end.
    package private(set) var isShuttingDown = false

    package init(tick: Duration = .milliseconds(250)) { self.tick = tick }

    package func version(of peer: String) -> Int { versions[peer, default: 0] }

    package func notify(_ peer: String) {
        versions[peer, default: 0] += 1
        if let waiting = waiters.removeValue(forKey: peer) {
            for waiter in waiting.values { waiter.continuation.resume() }
        }
    }

    /// Wakes every waiter and makes later waits return at once.
    package func shutDown() {
        isShuttingDown = true
        for waiting in waiters.values {
            for waiter in waiting.values { waiter.continuation.resume() }
        }
        waiters.removeAll()
        sweeper?.cancel()
        sweeper = nil
    }

    /// Returns when the peer's version moves past `seen`, or after `timeout` (to within one
    /// tick), or when the calling task is cancelled.
    package func wait(_ peer: String, since seen: Int, timeout: Duration) async {
        if versions[peer, default: 0] != seen || isShuttingDown { return }
        nextWaiterID += 1
        let id = nextWaiterID
        startSweeper()
        await withTaskCancellationHandler {
            await withCheckedContinuation { (continuation: CheckedContinuation<Void, Never>) in
                guard !Task.isCancelled else {
                    continuation.resume()
                    return
                }
                waiters[peer, default: [:]][id] = Waiter(continuation: continuation, deadline: .now + timeout)
            }
        } onCancel: {
            Task { await self.wake(peer, id) }
        }
    }

    private func wake(_ peer: String, _ id: UInt64) {
        waiters[peer]?.removeValue(forKey: id)?.continuation.resume()
        if waiters[peer]?.isEmpty == true { waiters[peer] = nil }
    }

    private func startSweeper() {
        guard sweeper == nil, !isShuttingDown else { return }
        let tick = tick
        sweeper = Task { [weak self] in
            while !Task.isCancelled {
                try? await Task.sleep(for: tick)
                guard let self, await self.sweep() else { return }
            }
        }
    }

    /// Resumes every waiter past its deadline; false once the hub has shut down.
    private func sweep() -> Bool {
        guard !isShuttingDown else { return false }
        let now = ContinuousClock.now
        for (peer, waiting) in waiters {
            let due = waiting.filter { $0.value.deadline <= now }
            guard !due.isEmpty else { continue }
            for (id, waiter) in due {
                waiters[peer]?.removeValue(forKey: id)
                waiter.continuation.resume()
            }
            if waiters[peer]?.isEmpty == true { waiters[peer] = nil }
        }
        return true
    }

    /// How many streams and polls are parked right now (for tests and metrics).
    package var waiting: Int { waiters.values.reduce(0) { $0 + $1.count } }

    package func streamOpened(_ peer: String) { openStreams[peer, default: 0] += 1 }

    package func streamClosed(_ peer: String) {
        let count = openStreams[peer, default: 1] - 1
        openStreams[peer] = count > 0 ? count : nil
    }

    /// True while the peer holds an SSE or WebSocket stream (it counts as online).
    package func isStreaming(_ peer: String) -> Bool { openStreams[peer] != nil }
}
