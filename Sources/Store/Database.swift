import Foundation
import GRDB
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

    /// Opens (creating if needed) the database in `dataDirectory` and applies pending migrations.
    package convenience init(
        dataDirectory: String,
        migrations: [Migration] = Migration.embedded,
        busyTimeout: Duration = .seconds(5),
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
        try self.init(path: path, migrations: migrations, busyTimeout: busyTimeout, checkpoints: checkpoints, now: now)
    }

    /// Opens (creating if needed) the database file at `path` and applies pending migrations.
    package init(
        path: String,
        migrations: [Migration] = Migration.embedded,
        busyTimeout: Duration = .seconds(5),
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
        try SchemaMigrator(migrations: migrations, now: now).migrate(pool)
    }

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
    /// a second. The fallback keeps the read from queueing behind a write: a purge batch, or
    /// one waiting out another process's lock (the sqlite3 CLI in a transaction). A write that
    /// starts just after the check may still go first; it is one write.
    func readOnWriter<T>(_ value: (Database) throws -> T) throws -> T {
        if writesUnderWay.load(ordering: .relaxed) > 0 { return try pool.read(value) }
        return try pool.writeWithoutTransaction(value)
    }

    /// Runs a short write on the calling thread, the same way. The caller waits while another
    /// connection writes (in this process: microseconds; another process, such as the CLI:
    /// as long as its transaction, at most the busy timeout). For the signaling hot path.
    func writeInPlace<T>(_ updates: (Database) throws -> T) throws -> T {
        writesUnderWay.wrappingAdd(1, ordering: .relaxed)
        defer { writesUnderWay.wrappingSubtract(1, ordering: .relaxed) }
        return try pool.write(updates)
    }

    /// Runs a write on GRDB's writer queue. Store's writes all go through this or
    /// `writeInPlace`, which count themselves for `readOnWriter`.
    func write<T: Sendable>(_ updates: @escaping @Sendable (Database) throws -> T) async throws -> T {
        writesUnderWay.wrappingAdd(1, ordering: .relaxed)
        defer { writesUnderWay.wrappingSubtract(1, ordering: .relaxed) }
        return try await pool.write(updates)
    }

    /// The current time as stored: whole Unix seconds.
    var unixNow: Int64 { Int64(now().timeIntervalSince1970.rounded(.down)) }
}
