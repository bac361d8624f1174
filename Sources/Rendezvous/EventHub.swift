import Foundation

/// EventHub wakes a peer's event stream or long-poll when an event for it is stored. Events
/// themselves live in SQLite; the hub only says "look again". A version per peer closes the
/// gap between reading the events and starting to wait.
package actor EventHub {
    /// A parked stream: resumed by `notify`, by its timeout, by cancellation or by shutdown,
    /// whichever comes first; the timeout task is cancelled when something else wins.
    private struct Waiter {
        var continuation: CheckedContinuation<Void, Never>
        var timeout: Task<Void, Never>?
    }

    private var versions: [String: Int] = [:]
    private var waiters: [String: [UUID: Waiter]] = [:]
    private var openStreams: [String: Int] = [:]
    /// Set on graceful shutdown: waits return at once and streams end.
    package private(set) var isShuttingDown = false

    package init() {}

    package func version(of peer: String) -> Int { versions[peer, default: 0] }

    package func notify(_ peer: String) {
        versions[peer, default: 0] += 1
        if let waiting = waiters.removeValue(forKey: peer) {
            for waiter in waiting.values { Self.wake(waiter) }
        }
    }

    /// Wakes every waiter and makes later waits return at once.
    package func shutDown() {
        isShuttingDown = true
        for waiting in waiters.values {
            for waiter in waiting.values { Self.wake(waiter) }
        }
        waiters.removeAll()
    }

    private static func wake(_ waiter: Waiter) {
        waiter.timeout?.cancel()
        waiter.continuation.resume()
    }

    /// Returns when the peer's version moves past `seen`, or after `timeout`.
    package func wait(_ peer: String, since seen: Int, timeout: Duration) async {
        if versions[peer, default: 0] != seen || isShuttingDown { return }
        let id = UUID()
        await withTaskCancellationHandler {
            await withCheckedContinuation { (continuation: CheckedContinuation<Void, Never>) in
                guard !Task.isCancelled else {
                    continuation.resume()
                    return
                }
                let timeoutTask = Task { [weak self] in
                    try? await Task.sleep(for: timeout)
                    if !Task.isCancelled { await self?.timeOut(peer, id) }
                }
                waiters[peer, default: [:]][id] = Waiter(continuation: continuation, timeout: timeoutTask)
            }
        } onCancel: {
            Task { await self.timeOut(peer, id) }
        }
    }

    private func timeOut(_ peer: String, _ id: UUID) {
        if let waiter = waiters[peer]?.removeValue(forKey: id) { Self.wake(waiter) }
        if waiters[peer]?.isEmpty == true { waiters[peer] = nil }
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
