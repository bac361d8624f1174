import HummingbirdCore
import Logging
import NIOCore

/// EventLoopExecutor runs a task's jobs on one NIO event loop (SE-0417 task executor).
package final class EventLoopExecutor: TaskExecutor {
    package let loop: any EventLoop

    package init(_ loop: any EventLoop) { self.loop = loop }

    package func enqueue(_ job: consuming ExecutorJob) {
        let job = UnownedJob(job)
        loop.execute { job.runSynchronously(on: self.asUnownedTaskExecutor()) }
    }
}

/// ConnectionOnItsLoop handles each HTTP connection in a task that prefers the connection's own
/// event loop as its executor. Without it a request went NIO loop → Swift's cooperative pool
/// (the handler, its Store calls) → NIO loop (the response): two thread switches and an
/// eventfd wake-up per request, about a third of the signaling server's CPU. On its loop, the
/// task reads its requests and writes its responses in place.
///
/// It is a preference for the whole connection task, so every write to the channel comes from
/// the channel's loop and none can overtake an earlier one still queued there (which is what
/// happens when a task moves between threads, e.g. with NIO installed as the global executor).
/// Actors and continuations the task awaits resume on the same loop. Blocking calls in a
/// handler block that loop's other connections, so Store calls made in place must stay short
/// (indexed lookups and small writes), and a write that finds another process holding the
/// write lock suspends its task instead of waiting in SQLite (Store's `writeInPlace`).
///
/// `connectionGuard`, when set, admits the connection and times it around the inner setup.
struct ConnectionOnItsLoop<Inner: ServerChildChannel>: ServerChildChannel {
    typealias Value = Inner.Value
    let inner: Inner
    var connectionGuard: HTTPConnectionGuard?

    func setup(channel: any Channel, logger: Logger) -> EventLoopFuture<Value> {
        guard let connectionGuard else { return inner.setup(channel: channel, logger: logger) }
        return connectionGuard.setup(channel: channel, logger: logger) { inner.setup(channel: channel, logger: logger) }
    }

    func handle(value: Value, logger: Logger) async {
        await withTaskExecutorPreference(EventLoopExecutor(value.channel.eventLoop)) {
            await inner.handle(value: value, logger: logger)
        }
    }
}
