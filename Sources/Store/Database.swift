import Foundation
import GRDB
import GRDBSQLite
import Logging
import Synchronization

/// SwitchboardDatabase is the embedded SQLite store: one WAL-mode file, `switchboard.db`,
/// inside the data directory, that admins may query live with the sqlite3 CLI.
package final class SwitchboardDatabase: Sendable {
    package static let fileName = "switchboard.db"

    /// The pool every query goes through. Stays inside Store: no SQL leaves this target.
    let pool: DatabasePool
    /// Runs the writer's WAL checkpoints in the background (see WALCheckpointer).
    let checkpointer: WALCheckpointer
    package let path: String
    let now: @Sendable () -> Date
    /// Writes under way in this process, through `writeInPlace` and `write` (see `readOnWriter`).
    private let writesUnderWay = Atomic<Int>(0)
    /// How long a request's write may wait for another process's write lock before it fails
    /// with `StoreError.busy` (503 over HTTP).
    package let writeTimeout: Duration
    /// How long a CLI command (`peer add` next to a running server) waits for the lock.
    let busyTimeout: Duration

    /// Opens (creating if needed) the database in `dataDirectory` and applies pending migrations.
    package convenience init(
        dataDirectory: String,
        migrations: [Migration] = Migration.embedded,
        busyTimeout: Duration = .seconds(5),
        writeTimeout: Duration = defaultWriteTimeout,
        checkpoints: CheckpointPolicy = CheckpointPolicy(),
        now: @escaping @Sendable () -> Date = Date.init
    ) throws {
        do {
            try FileManager.default.createDirectory(
                atPath: dataDirectory, withIntermediateDirectories: true,
                attributes: [.posixPermissions: 0o700])
        } catch {
            throw StoreError.cannotOpen(path: dataDirectory, message: "cannot create data directory: \(error.localizedDescription)")
        }
        let path = (dataDirectory as NSString).appendingPathComponent(Self.fileName)
        try self.init(path: path, migrations: migrations, busyTimeout: busyTimeout, writeTimeout: writeTimeout,
                      checkpoints: checkpoints, now: now)
    }

    /// Opens (creating if needed) the database file at `path` and applies pending migrations.
    package init(
        path: String,
        migrations: [Migration] = Migration.embedded,
        busyTimeout: Duration = .seconds(5),
        writeTimeout: Duration = defaultWriteTimeout,
        checkpoints: CheckpointPolicy = CheckpointPolicy(),
        now: @escaping @Sendable () -> Date = Date.init
    ) throws {
        var configuration = Configuration()
        configuration.foreignKeysEnabled = true
        configuration.busyMode = .timeout(TimeInterval(busyTimeout.components.seconds)
            + TimeInterval(busyTimeout.components.attoseconds) / 1e18)
        // GRDB's DatabasePool opens write transactions with BEGIN IMMEDIATE, so a writer
        // waits for the lock (busy timeout) up front instead of failing with SQLITE_BUSY
        // when another process (the CLI next to a running server) writes.
        configuration.label = "switchboard"
        let checkpointer = WALCheckpointer(path: path, policy: checkpoints)
        configuration.prepareDatabase { db in
            try db.execute(sql: "PRAGMA synchronous = NORMAL")
            if !db.configuration.readonly { checkpointer.install(on: db) }
        }
        let pool = try Self.openPool(path: path, configuration: configuration, patience: busyTimeout)
        checkpointer.finishWith { [weak pool, unowned checkpointer] in
            guard let pool else { return -1 }
            return try pool.writeWithoutTransaction { db in
                try WALCheckpointer.startOver(db, after: db.checkpoint(.passive))
                    ?? checkpointer.lengthAtLastCommit.load(ordering: .relaxed)
            }
        }
        self.pool = pool
        self.checkpointer = checkpointer
        self.path = path
        self.now = now
        self.writeTimeout = writeTimeout
        self.busyTimeout = busyTimeout
        try SchemaMigrator(migrations: migrations, now: now).migrate(pool)
        // From here on the writer never waits inside SQLite for another process's lock: a
        // write that finds it taken is tried again later, without holding the writer (see
        // `attemptWrite`). Readers keep the busy timeout (WAL readers rarely need it).
        pool.writeWithoutTransaction { db in _ = sqlite3_busy_timeout(db.sqliteConnection, 0) }
    }

    /// How long background writes (purges, relay and viewer records) wait for the lock: what
    /// they store is not lost for a longer admin transaction, and no request waits on them.
    static let housekeepingTimeout: Duration = .seconds(30)

    /// The default `writeTimeout`: below the 5-10 s HTTP clients commonly give up after.
    package static let defaultWriteTimeout: Duration = .seconds(3)

    deinit {
        // The hook points at the checkpointer without retaining it.
        pool.writeWithoutTransaction { db in WALCheckpointer.uninstall(from: db) }
        checkpointer.drain()
    }

    /// Opens the pool. Switching a new file to WAL needs a moment of exclusive access, which a
    /// second process opening the same new file at that moment does not get: it retries for
    /// up to `patience` instead of failing with "database is locked".
    private static func openPool(path: String, configuration: Configuration, patience: Duration) throws -> DatabasePool {
        let deadline = ContinuousClock.now + patience
        while true {
            do {
                return try DatabasePool(path: path, configuration: configuration)
            } catch let error as DatabaseError {
                if error.resultCode == .SQLITE_BUSY && ContinuousClock.now < deadline {
                    Thread.sleep(forTimeInterval: 0.02)
                    continue
                }
                throw StoreError.cannotOpen(path: path, message: error.message ?? "\(error.resultCode)")
            }
        }
    }

    /// The migrations applied to this database, in order.
    package func appliedMigrations() throws -> [String] {
        try SchemaMigrator().applied(pool)
    }

    /// A cheap round trip used by health checks.
    package func ping() async throws {
        _ = try await pool.read { db in try Int.fetchOne(db, sql: "SELECT 1") }
    }

    /// Runs a short read on the calling thread. GRDB's synchronous read takes a reader
    /// connection and, when that connection's queue is idle, dispatch runs the block in place:
    /// no hop to GRDB's queue and back, which on the request path costs more than the query.
    /// WAL readers never wait for locks, so this does not block on other processes. For
    /// indexed lookups only; long reads belong on `pool.read` with `await`.
    func readInPlace<T>(_ value: (Database) throws -> T) throws -> T {
        try pool.read(value)
    }

    /// Runs a short read on the writer's connection, on the calling thread, outside any
    /// transaction, when no write is under way in this process; on a reader otherwise. A
    /// reader's page cache is dropped whenever another connection commits, so on a write-heavy
    /// path each reader query reads its index pages again (from the WAL or the file, a pread
    /// each); the writer's cache survives its own commits. For the token check that every API
    /// request makes, between the signaling writes: 8% less server CPU at a thousand sessions
    /// a second. The fallback keeps the read from queueing behind a write (a purge batch); no
    /// write holds the writer while another process has the lock (see `attemptWrite`), so a
    /// write that starts just after the check delays this read by one short transaction.
    func readOnWriter<T>(_ value: (Database) throws -> T) throws -> T {
        if writesUnderWay.load(ordering: .relaxed) > 0 { return try pool.read(value) }
        return try pool.writeWithoutTransaction(value)
    }

    /// Runs a short write in place on the calling thread when the write lock is free: the
    /// signaling hot path, with no hop to another thread. When another process holds the
    /// lock (an admin's `sqlite3` transaction), the caller is suspended, not its thread, and
    /// tries again, until `timeout` (`writeTimeout` by default) and then throws
    /// `StoreError.busy`. No event loop ever waits inside SQLite for the lock.
    func writeInPlace<T>(timeout: Duration? = nil, _ updates: (Database) throws -> T) async throws -> T {
        if let value = try attemptWrite(updates) { return value }
        return try await retrying(for: timeout ?? writeTimeout) { try attemptWrite(updates) }
    }

    /// Runs a write on the calling thread, which waits for another process's lock up to the
    /// busy timeout: for CLI commands and start-up, never on an event loop.
    func writeWaiting<T>(_ updates: (Database) throws -> T) throws -> T {
        if let value = try attemptWrite(updates) { return value }
        let deadline = ContinuousClock.now + busyTimeout
        var attempt = 0
        while true {
            attempt += 1
            let pause = Self.retryPause(attempt: attempt, until: deadline)
            Thread.sleep(forTimeInterval: Double(pause.components.seconds) + Double(pause.components.attoseconds) / 1e18)
            if let value = try attemptWrite(updates) { return value }
            if ContinuousClock.now >= deadline { throw StoreError.busy(waited: busyTimeout) }
        }
    }

    /// Runs a write on GRDB's writer queue, off the caller's thread; when another process
    /// holds the lock, tries again the same way as `writeInPlace`. For writes that are not
    /// short or not on a request's path (relay and viewer records, presence).
    func write<T: Sendable>(timeout: Duration? = nil, _ updates: @escaping @Sendable (Database) throws -> T) async throws -> T {
        let attempt: @Sendable () async throws -> T? = { [self] in
            writesUnderWay.wrappingAdd(1, ordering: .relaxed)
            defer { writesUnderWay.wrappingSubtract(1, ordering: .relaxed) }
            return try await pool.writeWithoutTransaction { db in try Self.transaction(db, updates) }
        }
        if let value = try await attempt() { return value }
        return try await retrying(for: timeout ?? writeTimeout, attempt)
    }

    /// Tries `attempt` again, suspended between tries (see `retryPause`), until it gets the
    /// lock or `timeout` has passed since the first try.
    private func retrying<T>(for timeout: Duration, _ attempt: () async throws -> T?) async throws -> T {
        let deadline = ContinuousClock.now + timeout
        var number = 0
        while true {
            number += 1
            try await Task.sleep(for: Self.retryPause(attempt: number, until: deadline))
            if let value = try await attempt() { return value }
            if ContinuousClock.now >= deadline { throw StoreError.busy(waited: timeout) }
        }
    }

    /// One try at a write transaction on the calling thread: nil, at once, when another
    /// process holds the write lock (the writer's busy timeout is 0). The caller waits only
    /// for this process's own writer, which never waits for the lock either: microseconds.
    func attemptWrite<T>(_ updates: (Database) throws -> T) throws -> T? {
        writesUnderWay.wrappingAdd(1, ordering: .relaxed)
        defer { writesUnderWay.wrappingSubtract(1, ordering: .relaxed) }
        return try pool.writeWithoutTransaction { db in try Self.transaction(db, updates) }
    }

    /// `updates` in a BEGIN IMMEDIATE transaction, or nil when the BEGIN found the lock taken.
    private static func transaction<T>(_ db: Database, _ updates: (Database) throws -> T) throws -> T? {
        var result: T?
        var began = false
        do {
            try db.inTransaction(.immediate) {
                began = true
                result = try updates(db)
                return .commit
            }
        } catch let error as DatabaseError where error.resultCode == .SQLITE_BUSY && !began {
            return nil
        }
        return result
    }

    /// How long to wait before the next try: 1, 2, 4 … ms, at most 25 ms, and not past the
    /// deadline, so a lock let go is noticed within 25 ms without a tight loop.
    static func retryPause(attempt: Int, until deadline: ContinuousClock.Instant) -> Duration {
        let pause = Duration.milliseconds(min(25, 1 << min(attempt - 1, 5)))
        return max(.zero, min(pause, deadline - ContinuousClock.now))
    }

    /// The current time as stored: whole Unix seconds.
    var unixNow: Int64 { Int64(now().timeIntervalSince1970.rounded(.down)) }
}
