import Foundation
import Store
import NIOConcurrencyHelpers

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
/// Its state sits behind a lock, not in an actor: every signaling request tells the hub of the
/// event it stored, and streams check in and out of it. Calls are short and synchronous, so a
/// request handler needs no executor switch (and no suspension point) to make them.
/// Subscribers are told and waiters resumed after the lock is let go, so that what they do
/// (a stream closing as it writes) cannot come back into a held lock.
///
/// Waits time out through one sweeper task for the whole hub (every `tick`), not a timer
/// task per wait: a parked stream then costs a dictionary entry, which matters at 10k
/// connected peers. Deadlines are kept in buckets of one tick, so a sweep looks only at the
/// waits that are due, not at every parked stream (10k of them took the hub away from
/// `notify` for milliseconds four times a second).
package final class EventHub: Sendable {
    /// A parked stream: resumed by `notify`, by its deadline, by cancellation or by
    /// shutdown, whichever comes first.
    private struct Waiter {
        var continuation: CheckedContinuation<Void, Never>
        var deadline: ContinuousClock.Instant
    }

    private struct State {
        var versions: [String: Int] = [:]
        var waiters: [String: [UInt64: Waiter]] = [:]
        /// Waits by the tick their deadline falls in. Entries whose wait already ended (woken,
        /// cancelled) stay until their tick comes and are skipped then.
        var deadlines: [Int64: [(peer: String, id: UInt64)]] = [:]
        /// The first tick not swept yet.
        var nextTickToSweep: Int64?
        var nextWaiterID: UInt64 = 0
        /// Each open stream's acknowledged cursor, by peer and stream.
        var consumers: [String: [UInt64: Int64]] = [:]
        var subscribers: [String: [UInt64: any EventSubscriber]] = [:]
        var sweeper: Task<Void, Never>?
        var isShuttingDown = false
    }

    private let state = NIOLockedValueBox(State())
    private let start = ContinuousClock.now
    private let tick: Duration

    package init(tick: Duration = .milliseconds(250)) { self.tick = tick }

    package func version(of peer: String) -> Int { state.withLockedValue { $0.versions[peer, default: 0] } }

    /// Set on graceful shutdown: waits return at once and streams end.
    package var isShuttingDown: Bool { state.withLockedValue { $0.isShuttingDown } }

    /// The event that was just stored for its peer: subscribers get it, waiters are woken.
    package func notify(_ event: EventRecord) {
        let peer = event.peerID
        let (listening, waiting) = state.withLockedValue { state in
            state.versions[peer, default: 0] += 1
            return (state.subscribers[peer], state.waiters.removeValue(forKey: peer))
        }
        if let listening {
            for subscriber in listening.values { subscriber.eventStored(event) }
        }
        if let waiting {
            for waiter in waiting.values { waiter.continuation.resume() }
        }
    }

    /// Wakes every waiter and makes later waits return at once.
    package func shutDown() {
        let (waiting, listening, sweeper) = state.withLockedValue { state in
            state.isShuttingDown = true
            defer {
                state.waiters.removeAll()
                state.deadlines.removeAll()
                state.subscribers.removeAll()
                state.sweeper = nil
            }
            return (state.waiters, state.subscribers, state.sweeper)
        }
        for waiting in waiting.values {
            for waiter in waiting.values { waiter.continuation.resume() }
        }
        for listening in listening.values {
            for subscriber in listening.values { subscriber.hubShutDown() }
        }
        sweeper?.cancel()
    }

    /// Returns when the peer's version moves past `seen`, or after `timeout` (to within one
    /// tick), or when the calling task is cancelled.
    package func wait(_ peer: String, since seen: Int, timeout: Duration) async {
        let id: UInt64? = state.withLockedValue { state in
            if state.versions[peer, default: 0] != seen || state.isShuttingDown { return nil }
            state.nextWaiterID += 1
            return state.nextWaiterID
        }
        guard let id else { return }
        startSweeper()
        await withTaskCancellationHandler {
            await withCheckedContinuation { (continuation: CheckedContinuation<Void, Never>) in
                let deadline = ContinuousClock.now + timeout
                let parked = state.withLockedValue { state in
                    // Checked again under the lock: an event, a shutdown or a cancellation
                    // (whose handler found nothing to wake yet) may have come in between.
                    guard state.versions[peer, default: 0] == seen, !state.isShuttingDown, !Task.isCancelled else {
                        return false
                    }
                    state.waiters[peer, default: [:]][id] = Waiter(continuation: continuation, deadline: deadline)
                    state.deadlines[tickIndex(of: deadline), default: []].append((peer, id))
                    return true
                }
                if !parked { continuation.resume() }
            }
        } onCancel: {
            wake(peer, id)
        }
    }

    private func wake(_ peer: String, _ id: UInt64) {
        let waiter = state.withLockedValue { state in
            defer { if state.waiters[peer]?.isEmpty == true { state.waiters[peer] = nil } }
            return state.waiters[peer]?.removeValue(forKey: id)
        }
        waiter?.continuation.resume()
    }

    private func startSweeper() {
        state.withLockedValue { state in
            guard state.sweeper == nil, !state.isShuttingDown else { return }
            let tick = tick
            state.sweeper = Task { [weak self] in
                while !Task.isCancelled {
                    try? await Task.sleep(for: tick)
                    guard let self, self.sweep() else { return }
                }
            }
        }
    }

    /// The tick an instant falls in, counted from the hub's start.
    private func tickIndex(of instant: ContinuousClock.Instant) -> Int64 {
        Int64(((instant - start) / tick).rounded(.down))
    }

    /// Resumes every waiter past its deadline; false once the hub has shut down.
    private func sweep() -> Bool {
        let now = ContinuousClock.now
        let current = tickIndex(of: now)
        let due: [Waiter]? = state.withLockedValue { state in
            guard !state.isShuttingDown else { return nil }
            var due: [Waiter] = []
            // Buckets before the current tick are wholly due; the current one is checked per wait.
            var index = state.nextTickToSweep ?? state.deadlines.keys.min() ?? current
            while index <= current {
                if let bucket = state.deadlines[index] {
                    var later: [(peer: String, id: UInt64)] = []
                    for (peer, id) in bucket {
                        guard let waiter = state.waiters[peer]?[id] else { continue }  // already ended
                        if waiter.deadline <= now {
                            state.waiters[peer]?.removeValue(forKey: id)
                            if state.waiters[peer]?.isEmpty == true { state.waiters[peer] = nil }
                            due.append(waiter)
                        } else {
                            later.append((peer, id))
                        }
                    }
                    state.deadlines[index] = later.isEmpty ? nil : later
                }
                if index == current { break }
                index += 1
            }
            state.nextTickToSweep = current
            return due
        }
        guard let due else { return false }
        for waiter in due { waiter.continuation.resume() }
        return true
    }

    /// How many streams and polls are parked right now (for tests and metrics).
    package var waiting: Int { state.withLockedValue { $0.waiters.values.reduce(0) { $0 + $1.count } } }

    /// A stream of `peer`'s events opens, having acknowledged everything up to `acknowledged`
    /// (the cursor it resumes from; 0 for none). It counts as an open stream until
    /// `closeConsumer`.
    package func openConsumer(_ peer: String, acknowledged: Int64) -> UInt64 {
        state.withLockedValue { state in
            state.nextWaiterID += 1
            state.consumers[peer, default: [:]][state.nextWaiterID] = max(0, acknowledged)
            return state.nextWaiterID
        }
    }

    package func closeConsumer(_ peer: String, _ id: UInt64) {
        state.withLockedValue { state in
            state.consumers[peer]?.removeValue(forKey: id)
            if state.consumers[peer]?.isEmpty == true { state.consumers[peer] = nil }
        }
    }

    /// A client acknowledged `peer`'s events up to `cursor`: on its open stream `id`, or with
    /// none (a long-poll's `after=`). Returns how far the events may be deleted: no further
    /// than every open stream of the peer has acknowledged. Two agents (or a browser and an
    /// agent) logged in as one peer each get every event; when the first to acknowledge
    /// deleted up to its own cursor, the other, which had not read that far yet, never got
    /// what lay between (a hang-up, an answer, candidates).
    package func acknowledge(_ peer: String, by id: UInt64?, upTo cursor: Int64) -> Int64 {
        state.withLockedValue { state in
            if let id, let previous = state.consumers[peer]?[id] { state.consumers[peer]?[id] = max(previous, cursor) }
            return min(cursor, state.consumers[peer]?.values.min() ?? cursor)
        }
    }

    /// Registers a stream to be told of the peer's events until `unsubscribe`; it counts as an
    /// open stream. Nil once the hub has shut down.
    package func subscribe(_ peer: String, _ subscriber: any EventSubscriber) -> UInt64? {
        state.withLockedValue { state in
            guard !state.isShuttingDown else { return nil }
            state.nextWaiterID += 1
            state.subscribers[peer, default: [:]][state.nextWaiterID] = subscriber
            return state.nextWaiterID
        }
    }

    package func unsubscribe(_ peer: String, _ id: UInt64) {
        state.withLockedValue { state in
            state.subscribers[peer]?.removeValue(forKey: id)
            if state.subscribers[peer]?.isEmpty == true { state.subscribers[peer] = nil }
        }
    }

    /// True while the peer holds an SSE or WebSocket stream (it counts as online).
    package func isStreaming(_ peer: String) -> Bool {
        state.withLockedValue { $0.consumers[peer] != nil || $0.subscribers[peer] != nil }
    }
}
