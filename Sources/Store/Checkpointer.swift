import Foundation
import GRDB
import GRDBSQLite
import Synchronization

/// WALCheckpointer moves the bulk of WAL checkpointing off the committing thread.
///
/// SQLite's automatic checkpoint runs inside the commit that pushes the WAL past its limit:
/// that commit copies every page of the WAL into the database file and syncs both files, a
/// 15–20 ms stall at a thousand signaling sessions a second, for that request and for every
/// request queued behind the write lock. Here the writer's WAL hook only notices that the WAL
/// passed `threshold` pages and wakes a background queue, which
/// 1. runs a PASSIVE checkpoint on a connection of its own, concurrently with the writer:
///    this copies nearly everything;
/// 2. then copies what was committed meanwhile with the write lock held (a few pages, about
///    a millisecond), so the WAL is fully copied and the next commit starts it over from the
///    beginning. Without step 2 a steady stream of commits keeps the WAL one step ahead of a
///    concurrent checkpoint, and it is never reset.
/// A checkpoint that fails (the disk, another process holding a lock) is counted, and the
/// next commit past the threshold tries again; SQLite's checkpoint on close still runs.
final class WALCheckpointer: Sendable {
    let path: String
    let threshold: Int32
    private let queue = DispatchQueue(label: "switchboard.checkpoint")
    private let scheduled = Atomic<Bool>(false)
    private let connection = Mutex<DatabaseQueue?>(nil)
    /// Step 2, set once the pool is open: a checkpoint with the pool's write lock held.
    private let finisher = Mutex<(@Sendable () throws -> Void)?>(nil)
    private let counters = Mutex<Counters>(Counters())

    struct Counters: Equatable {
        var runs = 0
        var failures = 0
        /// What the last failed checkpoint said.
        var lastFailure: String?
    }

    init(path: String, threshold: Int32 = 1000) {
        self.path = path
        self.threshold = threshold
    }

    /// How many background checkpoints ran, and how many of those failed.
    var counts: Counters { counters.withLock { $0 } }

    /// Installs the hook on a connection that writes. SQLite calls it after each commit, on
    /// the committing thread with the write lock still held, so it must only signal. It
    /// replaces SQLite's automatic checkpoint on that connection. The hook does not retain
    /// the checkpointer: `uninstall` before the checkpointer goes.
    func install(on db: Database) {
        sqlite3_wal_hook(db.sqliteConnection, { context, _, _, frames in
            guard let context else { return SQLITE_OK }
            Unmanaged<WALCheckpointer>.fromOpaque(context).takeUnretainedValue().committed(frames: frames)
            return SQLITE_OK
        }, Unmanaged.passUnretained(self).toOpaque())
    }

    static func uninstall(from db: Database) {
        sqlite3_wal_hook(db.sqliteConnection, nil, nil)
    }

    /// Sets step 2: `finish` must run a PASSIVE checkpoint while holding the write lock.
    func finishWith(_ finish: @escaping @Sendable () throws -> Void) {
        finisher.withLock { $0 = finish }
    }

    private func committed(frames: Int32) {
        guard frames >= threshold, !scheduled.exchange(true, ordering: .acquiringAndReleasing) else { return }
        queue.async { [self] in
            checkpointNow()
            scheduled.store(false, ordering: .releasing)
        }
    }

    /// Runs both steps now, on the calling thread.
    func checkpointNow() {
        var failure: String?
        do {
            let db = try connection.withLock { connection in
                if let connection { return connection }
                var configuration = Configuration()
                configuration.label = "switchboard.checkpoint"
                let opened = try DatabaseQueue(path: path, configuration: configuration)
                connection = opened
                return opened
            }
            try Self.retryingBusy { try db.writeWithoutTransaction { db in _ = try db.checkpoint(.passive) } }
            if let finish = finisher.withLock({ $0 }) { try Self.retryingBusy(finish) }
        } catch {
            failure = "\(error)"
        }
        counters.withLock { counters in
            counters.runs += 1
            if let failure {
                counters.failures += 1
                counters.lastFailure = failure
            }
        }
    }

    /// Runs `step` again, a few milliseconds later, when it meets SQLITE_BUSY. A PASSIVE
    /// checkpoint that reads the WAL index while a commit is updating it answers SQLITE_BUSY
    /// at once, without consulting the busy handler. Measured with a checkpoint every 20
    /// pages under 20k small commits: 1–4 of about 700 checkpoints met it, and the first retry
    /// succeeded each time. Before the retry, one such checkpoint was counted as failed.
    static func retryingBusy(attempts: Int = 5, _ step: () throws -> Void) throws {
        for attempt in 1... {
            do {
                return try step()
            } catch let error as DatabaseError where error.resultCode == .SQLITE_BUSY && attempt < attempts {
                Thread.sleep(forTimeInterval: 0.002 * Double(attempt))
            }
        }
    }

    /// Waits for a scheduled checkpoint to finish.
    func drain() {
        queue.sync {}
    }
}
