import Foundation
import GRDB
import GRDBSQLite
import NIOConcurrencyHelpers
import Synchronization

/// When the background checkpoints run (see `WALCheckpointer`), in WAL pages.
package struct CheckpointPolicy: Sendable, Equatable {
    /// Pages committed since the last checkpoint that make the next one.
    package var threshold: Int32
    /// WAL length at which a checkpoint also starts the WAL over; at least `threshold`.
    package var restartLength: Int32

    package init(threshold: Int32 = 1000, restartLength: Int32 = 16000) {
        self.threshold = max(1, threshold)
        self.restartLength = max(restartLength, self.threshold)
    }
}

/// WALCheckpointer moves WAL checkpointing off the committing thread, and keeps the syncs
/// a checkpoint needs out of the commits that requests wait for.
///
/// SQLite's automatic checkpoint runs inside the commit that pushes the WAL past its limit:
/// that commit copies every page of the WAL into the database file and syncs both files, a
/// 15–20 ms stall at a thousand signaling sessions a second, for that request and for every
/// request queued behind the write lock. Here the writer's WAL hook only notices that
/// `threshold` pages were committed since the last checkpoint (`CheckpointPolicy`) and wakes
/// a background queue, which
/// 1. runs a PASSIVE checkpoint on a connection of its own, concurrently with the writer. It
///    copies what was committed so far, and picks up where the last one stopped.
/// 2. Once the WAL is `restartLength` pages long, it also copies what was committed meanwhile
///    with the write lock held (a few pages), so the WAL is fully copied, and then starts the
///    WAL over itself with a write that changes nothing. Without the copy, a steady stream of
///    commits keeps the WAL one step ahead of a concurrent checkpoint, and it is never reset.
///    Without the write, the next request's commit would start it over, and SQLite syncs the
///    new WAL header in that commit.
///
/// Step 2 holds the write lock through three syncs (the WAL, the database, the new header),
/// and every request that writes meanwhile waits, with the requests queued behind it. When it
/// ran after every checkpoint (each 1000 pages), at a thousand sessions a second (13–17 pages
/// each) the event loop waited twenty times a second for it, and synced a new WAL header in a
/// request's commit twenty times more: in 4 s, 84 waits for the write lock and 74 syncs on
/// the loop's thread; now 14 and none. The WAL grows to `restartLength` pages between resets
/// (64 MB by default, about a second at that rate); checkpoints still copy it every
/// `threshold` pages, and each copy also syncs the database file (`syncDatabaseFile`), so a
/// restart finds little left to copy or write: 0.5–2 ms for step 2's copy and its syncs and
/// 0.3 ms for the restart write, measured at 1000 sessions/s (1–17 ms before the copies
/// synced). With that, restarting every 16000 pages did as well as every 32000 (p99 1.8–2.7
/// ms against 2.1–2.7) with half the WAL file.
///
/// With no commit during a checkpoint (a quiet server) it copies everything, and SQLite
/// starts the WAL over in the next commit as usual.
///
/// A checkpoint that fails (the disk, another process holding a lock) is counted, and the
/// next commit past the threshold tries again; SQLite's checkpoint on close still runs.
final class WALCheckpointer: Sendable {
    let path: String
    let policy: CheckpointPolicy
    private let queue = DispatchQueue(label: "switchboard.checkpoint")
    private let scheduled = Atomic<Bool>(false)
    /// The WAL's length, in pages, when the last checkpoint ran (1, its own write's page, once
    /// it started the WAL over): the next runs `threshold` pages later. Counting from where
    /// the copy got to instead would run one after every commit while a reader's snapshot
    /// holds the copy back.
    let lengthAtLastRun = Atomic<Int32>(0)
    /// The WAL's length after the last commit, as the hook saw it.
    let lengthAtLastCommit = Atomic<Int32>(0)
    private let connection = NIOLockedValueBox<DatabaseQueue?>(nil)
    /// Step 2, set once the pool is open: a checkpoint with the pool's write lock held.
    private let finisher = NIOLockedValueBox<(@Sendable () throws -> Int32)?>(nil)
    private let counters = NIOLockedValueBox<Counters>(Counters())

    struct Counters: Equatable {
        var runs = 0
        var failures = 0
        /// Runs that started the WAL over.
        var restarts = 0
        /// What the last failed checkpoint said.
        var lastFailure: String?
    }

    /// Before step 2: copies without the lock, at most this many, until one finds fewer than
    /// `smallRemainder` new pages.
    static let catchUpPasses = 3
    static let smallRemainder = 64

    init(path: String, policy: CheckpointPolicy = CheckpointPolicy()) {
        self.path = path
        self.policy = policy
    }

    /// How many background checkpoints ran, and how many of those failed.
    var counts: Counters { counters.withLockedValue { $0 } }

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

    /// Sets step 2: `finish` must run a PASSIVE checkpoint while holding the write lock and,
    /// when that copied everything, make a write that starts the WAL over (`startOver`). It
    /// returns the WAL's length after it (after the write: `lengthAtLastCommit`), or -1 when
    /// the database is gone.
    func finishWith(_ finish: @escaping @Sendable () throws -> Int32) {
        finisher.withLockedValue { $0 = finish }
    }

    /// `frames` is the length of the WAL after a commit.
    private func committed(frames: Int32) {
        lengthAtLastCommit.store(frames, ordering: .relaxed)
        // Shorter than at the last run: the WAL has started over since.
        let last = lengthAtLastRun.load(ordering: .relaxed)
        let committed = frames >= last ? frames - last : frames
        guard committed >= policy.threshold, !scheduled.exchange(true, ordering: .acquiringAndReleasing) else { return }
        queue.async { [self] in
            checkpointNow()
            scheduled.store(false, ordering: .releasing)
        }
    }

    /// Runs both steps now, on the calling thread.
    func checkpointNow() {
        var failure: String?
        var restarted = false
        do {
            let db = try connection.withLockedValue { connection in
                if let connection { return connection }
                var configuration = Configuration()
                configuration.label = "switchboard.checkpoint"
                let opened = try DatabaseQueue(path: path, configuration: configuration)
                connection = opened
                return opened
            }
            func copy() throws -> Int {
                var length = 0
                try Self.retryingBusy {
                    try db.writeWithoutTransaction { db in
                        length = try db.checkpoint(.passive).walFrameCount
                        try Self.syncDatabaseFile(db)
                    }
                }
                lengthAtLastRun.store(Int32(clamping: length), ordering: .relaxed)
                return length
            }
            var length = try copy()
            if length >= policy.restartLength, let finish = finisher.withLockedValue({ $0 }) {
                // Catch up without the lock first: what was committed while the copy above ran
                // (hundreds of pages under load) would otherwise be copied, and synced to the
                // database file, with every request's write waiting.
                for _ in 0..<Self.catchUpPasses {
                    let before = length
                    length = try copy()
                    if length - before < Self.smallRemainder { break }
                }
                var left: Int32 = -1
                try Self.retryingBusy { left = try finish() }
                if left >= 0 {
                    lengthAtLastRun.store(left, ordering: .relaxed)
                    // Shorter than before: the write started it over. It does not when a
                    // reader still holds a place in the WAL; the write is then appended.
                    restarted = left < length
                }
            }
        } catch {
            failure = "\(error)"
        }
        counters.withLockedValue { counters in
            counters.runs += 1
            if restarted { counters.restarts += 1 }
            if let failure {
                counters.failures += 1
                counters.lastFailure = failure
            }
        }
    }

    /// Syncs the database file, here rather than under the write lock. A PASSIVE checkpoint
    /// syncs the file only when it copied the whole WAL, which under steady commits is only
    /// step 2: that one then wrote out every page copied since the last restart, tens of
    /// megabytes, while requests waited (10–17 ms at 1000 sessions/s). Through SQLite's own
    /// handle for the file: a descriptor of our own, once closed, would drop the POSIX locks
    /// SQLite holds on it.
    static func syncDatabaseFile(_ db: Database) throws {
        var file: UnsafeMutablePointer<sqlite3_file>?
        let found = sqlite3_file_control(db.sqliteConnection, "main", SQLITE_FCNTL_FILE_POINTER, &file)
        guard found == SQLITE_OK, let file, let sync = file.pointee.pMethods?.pointee.xSync else {
            throw DatabaseError(resultCode: ResultCode(rawValue: found == SQLITE_OK ? SQLITE_MISUSE : found))
        }
        let synced = sync(file, SQLITE_SYNC_NORMAL)
        guard synced == SQLITE_OK else { throw DatabaseError(resultCode: ResultCode(rawValue: synced)) }
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

    /// Step 2's write, on the writer's connection outside any transaction, right after a
    /// checkpoint that copied the whole WAL: it commits a page that changes nothing (the
    /// unused `user_version` header field, set to what it holds), so this commit is the one
    /// that starts the WAL over and syncs its new header. Returns nil once it wrote (the WAL's
    /// length is then the hook's), or the WAL's length if the copy left pages behind (a
    /// reader's snapshot held it back): that WAL stays, and a later checkpoint tries again.
    static func startOver(_ db: Database, after checkpoint: (walFrameCount: Int, checkpointedFrameCount: Int)) throws
        -> Int32?
    {
        guard checkpoint.walFrameCount > 0, checkpoint.checkpointedFrameCount == checkpoint.walFrameCount else {
            return Int32(clamping: max(1, checkpoint.walFrameCount))
        }
        let version = try Int.fetchOne(db, sql: "PRAGMA user_version") ?? 0
        try db.execute(sql: "PRAGMA user_version = \(version)")
        return nil
    }

    /// Waits for a scheduled checkpoint to finish.
    func drain() {
        queue.sync {}
    }
}
