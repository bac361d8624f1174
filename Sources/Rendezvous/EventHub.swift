import Foundation

/// EventHub wakes a peer's event stream or long-poll when an event for it is stored. Events
/// themselves live in SQLite; the hub only says "look again". A version per peer closes the
/// gap between reading the events and starting to wait.
package actor EventHub {
    private var versions: [String: Int] = [:]
    private var waiters: [String: [UUID: CheckedContinuation<Void, Never>]] = [:]
    private var openStreams: [String: Int] = [:]
    /// Set on graceful shutdown: waits return at once and streams end.
    package private(set) var isShuttingDown = false

    package init() {}

    package func version(of peer: String) -> Int { versions[peer, default: 0] }

    package func notify(_ peer: String) {
        versions[peer, default: 0] += 1
        if let waiting = waiters.removeValue(forKey: peer) {
            for continuation in waiting.values { continuation.resume() }
        }
    }

    /// Wakes every waiter and makes later waits return at once.
    package func shutDown() {
        isShuttingDown = true
        for waiting in waiters.values {
            for continuation in waiting.values { continuation.resume() }
        }
        waiters.removeAll()
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
                waiters[peer, default: [:]][id] = continuation
                Task { [weak self] in
                    try? await Task.sleep(for: timeout)
                    await self?.timeOut(peer, id)
                }
            }
        } onCancel: {
            Task { await self.timeOut(peer, id) }
        }
    }

    private func timeOut(_ peer: String, _ id: UUID) {
        waiters[peer]?.removeValue(forKey: id)?.resume()
        if waiters[peer]?.isEmpty == true { waiters[peer] = nil }
    }

    package func streamOpened(_ peer: String) { openStreams[peer, default: 0] += 1 }

    package func streamClosed(_ peer: String) {
        let count = openStreams[peer, default: 1] - 1
        openStreams[peer] = count > 0 ? count : nil
    }

    /// True while the peer holds an SSE or WebSocket stream (it counts as online).
    package func isStreaming(_ peer: String) -> Bool { openStreams[peer] != nil }
}
