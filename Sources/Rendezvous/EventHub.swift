import Foundation
import Store

/// A stream that is told, rather than waiting, when events are stored for its peer (the SSE
/// streams served straight from NIO, see `EventStreamHandler`). The calls come from the
/// hub and must return quickly: they hop to the stream's event loop.
package protocol EventSubscriber: Sendable {
    /// One event was stored, and here it is (with `previousID`): a stream that is up to date
    /// can send it as is; any other looks in the Store.
    func eventStored(_ event: EventRecord)
    func hubShutDown()
}

/// EventHub wakes a peer's event stream or long-poll when an event for it is stored. Events
/// themselves live in SQLite; the hub only says "look again". A version per peer closes the
/// gap between reading the events and starting to wait.
///
/// Waits time out through one sweeper task for the whole hub (every `tick`), not a timer
/// task per wait: a parked stream then costs a dictionary entry, which matters at 10k
/// connected peers. Deadlines are kept in buckets of one tick, so a sweep looks only at the
/// waits that are due, not at every parked stream (10k of them took the hub away from
/// `notify` for milliseconds four times a second).
package actor EventHub {
    /// A parked stream: resumed by `notify`, by its deadline, by cancellation or by
    /// shutdown, whichever comes first.
    private struct Waiter {
        var continuation: CheckedContinuation<Void, Never>
        var deadline: ContinuousClock.Instant
    }

    private var versions: [String: Int] = [:]
    private var waiters: [String: [UInt64: Waiter]] = [:]
    /// Waits by the tick their deadline falls in. Entries whose wait already ended (woken,
    /// cancelled) stay until their tick comes and are skipped then.
    private var deadlines: [Int64: [(peer: String, id: UInt64)]] = [:]
    /// The first tick not swept yet.
    private var nextTickToSweep: Int64?
    private let start = ContinuousClock.now
    private var nextWaiterID: UInt64 = 0
    private var openStreams: [String: Int] = [:]
    private var subscribers: [String: [UInt64: any EventSubscriber]] = [:]
    private var sweeper: Task<Void, Never>?
    private let tick: Duration
    /// Set on graceful shutdown: waits return at once and streams end.
    package private(set) var isShuttingDown = false

    package init(tick: Duration = .milliseconds(250)) { self.tick = tick }

    package func version(of peer: String) -> Int { versions[peer, default: 0] }

    /// The event that was just stored for its peer: subscribers get it, waiters are woken.
    package func notify(_ event: EventRecord) {
        let peer = event.peerID
        versions[peer, default: 0] += 1
        if let listening = subscribers[peer] {
            for subscriber in listening.values { subscriber.eventStored(event) }
        }
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
        deadlines.removeAll()
        for listening in subscribers.values {
            for subscriber in listening.values { subscriber.hubShutDown() }
        }
        subscribers.removeAll()
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
                let deadline = ContinuousClock.now + timeout
                waiters[peer, default: [:]][id] = Waiter(continuation: continuation, deadline: deadline)
                deadlines[tickIndex(of: deadline), default: []].append((peer, id))
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

    /// The tick an instant falls in, counted from the hub's start.
    private func tickIndex(of instant: ContinuousClock.Instant) -> Int64 {
        Int64(((instant - start) / tick).rounded(.down))
    }

    /// Resumes every waiter past its deadline; false once the hub has shut down.
    private func sweep() -> Bool {
        guard !isShuttingDown else { return false }
        let now = ContinuousClock.now
        let current = tickIndex(of: now)
        // Buckets before the current tick are wholly due; the current one is checked per wait.
        var index = nextTickToSweep ?? deadlines.keys.min() ?? current
        while index <= current {
            if let due = deadlines[index] {
                var later: [(peer: String, id: UInt64)] = []
                for (peer, id) in due {
                    guard let waiter = waiters[peer]?[id] else { continue }  // already ended
                    if waiter.deadline <= now {
                        waiters[peer]?.removeValue(forKey: id)
                        if waiters[peer]?.isEmpty == true { waiters[peer] = nil }
                        waiter.continuation.resume()
                    } else {
                        later.append((peer, id))
                    }
                }
                deadlines[index] = later.isEmpty ? nil : later
            }
            if index == current { break }
            index += 1
        }
        nextTickToSweep = current
        return true
    }

    /// How many streams and polls are parked right now (for tests and metrics).
    package var waiting: Int { waiters.values.reduce(0) { $0 + $1.count } }

    package func streamOpened(_ peer: String) { openStreams[peer, default: 0] += 1 }

    package func streamClosed(_ peer: String) {
        let count = openStreams[peer, default: 1] - 1
        openStreams[peer] = count > 0 ? count : nil
    }

    /// Registers a stream to be told of the peer's events until `unsubscribe`; it counts as an
    /// open stream. Nil once the hub has shut down.
    package func subscribe(_ peer: String, _ subscriber: any EventSubscriber) -> UInt64? {
        guard !isShuttingDown else { return nil }
        nextWaiterID += 1
        subscribers[peer, default: [:]][nextWaiterID] = subscriber
        return nextWaiterID
    }

    package func unsubscribe(_ peer: String, _ id: UInt64) {
        subscribers[peer]?.removeValue(forKey: id)
        if subscribers[peer]?.isEmpty == true { subscribers[peer] = nil }
    }

    /// True while the peer holds an SSE or WebSocket stream (it counts as online).
    package func isStreaming(_ peer: String) -> Bool { openStreams[peer] != nil || subscribers[peer] != nil }
}
