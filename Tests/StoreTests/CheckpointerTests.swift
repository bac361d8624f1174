import Foundation
import GRDB
import Testing
@testable import Store

@Suite struct CheckpointerTests {
    let dir = TemporaryDirectory()

    /// Frames in the WAL as another connection sees it (the sqlite3 CLI would see the same).
    func walFrames() throws -> Int {
        let probe = try DatabaseQueue(path: dir.databasePath)
        return try probe.writeWithoutTransaction { db in
            let row = try Row.fetchOne(db, sql: "PRAGMA wal_checkpoint(PASSIVE)")!
            return row[1] as Int
        }
    }

    /// A small policy, so that a test reaches the restart length quickly.
    static let restartEveryRun = CheckpointPolicy(threshold: 1000, restartLength: 1000)

    /// One commit of `threshold` pages into a filler table, which sets off one checkpoint;
    /// returns once it ran. Returns the threshold.
    @discardableResult
    func fillOneThreshold(_ database: SwitchboardDatabase) throws -> Int {
        let threshold = Int(database.checkpointer.policy.threshold)
        try database.writeWaiting { db in
            try db.execute(sql: "CREATE TABLE IF NOT EXISTS filler (data BLOB)")
            for _ in 0..<threshold { try db.execute(sql: "INSERT INTO filler VALUES (zeroblob(4000))") }
        }
        database.checkpointer.drain()
        return threshold
    }

    func userVersion(_ database: SwitchboardDatabase) throws -> Int {
        try database.pool.read { db in try Int.fetchOne(db, sql: "PRAGMA user_version") ?? -1 }
    }

    @Test func aWALPastTheRestartLengthIsCopiedAndStartedOverByTheCheckpointer() throws {
        let database = try SwitchboardDatabase(dataDirectory: dir.path, checkpoints: Self.restartEveryRun)
        #expect(database.checkpointer.counts == .init(runs: 0, failures: 0))
        let threshold = try fillOneThreshold(database)
        #expect(database.checkpointer.counts == .init(runs: 1, failures: 0, restarts: 1))
        // Everything was copied and the checkpointer's own write started the WAL over, so it
        // holds that one page, with no request's commit needed (left alone, it would still
        // hold the thousand pages above).
        #expect(try walFrames() <= 2)
        #expect(database.checkpointer.lengthAtLastRun.load(ordering: .relaxed) == 1)  // that write's page
        try database.writeWaiting { db in try db.execute(sql: "INSERT INTO filler VALUES (x'00')") }
        #expect(try walFrames() <= 5)
        #expect(try database.pool.read { db in try Int.fetchOne(db, sql: "SELECT count(*) FROM filler") } == threshold + 1)
        #expect(try userVersion(database) == 0)  // the write changed nothing
    }

    @Test func belowTheRestartLengthACheckpointCopiesAndKeepsTheWAL() throws {
        // The default: checkpoints every 1000 pages, the WAL started over every 16000.
        let database = try SwitchboardDatabase(dataDirectory: dir.path)
        #expect(database.checkpointer.policy == CheckpointPolicy(threshold: 1000, restartLength: 16000))
        let threshold = try fillOneThreshold(database)
        #expect(database.checkpointer.counts == .init(runs: 1, failures: 0, restarts: 0))
        let length = Int(database.checkpointer.lengthAtLastRun.load(ordering: .relaxed))
        #expect(length >= threshold)
        // With no commit during the checkpoint it copied everything, so SQLite itself starts
        // the WAL over in the next commit (under load there always is one, and the WAL grows
        // to the restart length). The next run waits for another thousand pages.
        for _ in 0..<10 {
            try database.writeWaiting { db in try db.execute(sql: "INSERT INTO filler VALUES (x'00')") }
        }
        database.checkpointer.drain()
        #expect(database.checkpointer.counts.runs == 1)
        #expect(try walFrames() <= 20)
    }

    @Test func underSteadySmallCommitsTheWALStaysBounded() throws {
        // The signaling hot path: many small commits while checkpoints run concurrently. The
        // WAL is started over once it reaches the restart length instead of growing with
        // every commit.
        let database = try SwitchboardDatabase(
            dataDirectory: dir.path, checkpoints: CheckpointPolicy(threshold: 100, restartLength: 500))
        try database.writeWaiting { db in try db.execute(sql: "CREATE TABLE filler (data BLOB)") }
        let commits = 3000
        for _ in 0..<commits {
            try database.writeWaiting { db in try db.execute(sql: "INSERT INTO filler VALUES (zeroblob(3000))") }
        }
        database.checkpointer.drain()
        let counts = database.checkpointer.counts
        #expect(counts.runs >= 2)
        #expect(counts.restarts >= 1)
        #expect(counts.failures == 0, "\(counts.lastFailure ?? "")")
        // Each commit above wrote at least one page: a WAL shorter than the number of commits
        // was started over while the commits went on.
        #expect(try walFrames() < commits)
        #expect(try database.pool.read { db in try Int.fetchOne(db, sql: "SELECT count(*) FROM filler") } == commits)
        #expect(try userVersion(database) == 0)
    }

    @Test func aReaderHoldingASnapshotDelaysTheResetUntilItEnds() throws {
        // An admin's sqlite3 session with an open read transaction: checkpoints cannot copy
        // past its snapshot, so the WAL keeps growing; once it ends, the next checkpoint
        // catches up and starts the WAL over.
        let database = try SwitchboardDatabase(dataDirectory: dir.path, checkpoints: Self.restartEveryRun)
        try database.writeWaiting { db in try db.execute(sql: "CREATE TABLE filler (data BLOB)") }
        let threshold = Int(database.checkpointer.policy.threshold)
        var holding = Configuration()
        holding.allowsUnsafeTransactions = true  // a transaction left open across accesses, on purpose
        let admin = try DatabaseQueue(path: dir.databasePath, configuration: holding)
        try admin.inDatabase { db in
            try db.execute(sql: "BEGIN")
            _ = try Int.fetchOne(db, sql: "SELECT count(*) FROM filler")
        }
        try fillOneThreshold(database)
        try fillOneThreshold(database)
        #expect(try walFrames() >= 2 * threshold)  // held back by the open snapshot
        #expect(database.checkpointer.counts.restarts == 0)
        // Small commits meanwhile do not each set off another checkpoint: the next one waits
        // for a threshold's worth of pages, as always.
        let runs = database.checkpointer.counts.runs
        for _ in 0..<50 {
            try database.writeWaiting { db in try db.execute(sql: "INSERT INTO filler VALUES (x'00')") }
            database.checkpointer.drain()
        }
        #expect(database.checkpointer.counts.runs == runs)
        try admin.inDatabase { db in try db.execute(sql: "COMMIT") }
        try fillOneThreshold(database)
        #expect(database.checkpointer.counts.failures == 0)
        #expect(database.checkpointer.counts.restarts == 1)
        #expect(try walFrames() <= 2)
    }

    @Test func aBusyCheckpointIsTriedAgainAndOtherErrorsAreNot() throws {
        var tries = 0
        try WALCheckpointer.retryingBusy {
            tries += 1
            if tries < 3 { throw DatabaseError(resultCode: .SQLITE_BUSY) }
        }
        #expect(tries == 3)
        tries = 0
        #expect(throws: DatabaseError.self) {
            try WALCheckpointer.retryingBusy(attempts: 4) { tries += 1; throw DatabaseError(resultCode: .SQLITE_BUSY) }
        }
        #expect(tries == 4)
        tries = 0
        #expect(throws: DatabaseError.self) {
            try WALCheckpointer.retryingBusy { tries += 1; throw DatabaseError(resultCode: .SQLITE_IOERR) }
        }
        #expect(tries == 1)
    }

    @Test func aPolicyKeepsItsLimitsInOrder() {
        #expect(CheckpointPolicy(threshold: 0, restartLength: 0) == CheckpointPolicy(threshold: 1, restartLength: 1))
        #expect(CheckpointPolicy(threshold: 500, restartLength: 100).restartLength == 500)
    }

    @Test func belowTheThresholdNothingRuns() throws {
        let database = try SwitchboardDatabase(dataDirectory: dir.path)
        try database.writeWaiting { db in try db.execute(sql: "CREATE TABLE filler (data BLOB)") }
        for _ in 0..<10 {
            try database.writeWaiting { db in try db.execute(sql: "INSERT INTO filler VALUES (x'01')") }
        }
        database.checkpointer.drain()
        #expect(database.checkpointer.counts.runs == 0)
    }
}
