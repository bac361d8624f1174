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

    @Test func aWALPastTheThresholdIsCheckpointedInTheBackgroundAndStartsOver() throws {
        let database = try SwitchboardDatabase(dataDirectory: dir.path)
        #expect(database.checkpointer.counts == .init(runs: 0, failures: 0))
        try database.writeInPlace { db in try db.execute(sql: "CREATE TABLE filler (data BLOB)") }
        // One commit of more pages than the threshold: the hook schedules one checkpoint.
        let threshold = Int(database.checkpointer.threshold)
        try database.writeInPlace { db in
            for _ in 0..<threshold { try db.execute(sql: "INSERT INTO filler VALUES (zeroblob(4000))") }
        }
        database.checkpointer.drain()
        #expect(database.checkpointer.counts == .init(runs: 1, failures: 0))
        // Everything was copied, so the next commit starts the WAL over from its beginning
        // (left alone, it would still hold the thousand pages above).
        try database.writeInPlace { db in try db.execute(sql: "INSERT INTO filler VALUES (x'00')") }
        #expect(try walFrames() <= 5)
        #expect(try database.pool.read { db in try Int.fetchOne(db, sql: "SELECT count(*) FROM filler") } == threshold + 1)
    }

    @Test func underSteadySmallCommitsTheWALStaysBounded() throws {
        // The signaling hot path: many small commits while checkpoints run concurrently. The
        // WAL is started over after each checkpoint instead of growing with every commit.
        let database = try SwitchboardDatabase(dataDirectory: dir.path)
        try database.writeInPlace { db in try db.execute(sql: "CREATE TABLE filler (data BLOB)") }
        let threshold = Int(database.checkpointer.threshold)
        for _ in 0..<(3 * threshold) {
            try database.writeInPlace { db in try db.execute(sql: "INSERT INTO filler VALUES (zeroblob(3000))") }
        }
        database.checkpointer.drain()
        let counts = database.checkpointer.counts
        #expect(counts.runs >= 1)
        #expect(counts.failures == 0, "\(counts.lastFailure ?? "")")
        // Each commit above wrote at least one page, 3× the threshold in all: a WAL shorter
        // than that was started over while the commits went on.
        #expect(try walFrames() < 3 * threshold)
        #expect(try database.pool.read { db in try Int.fetchOne(db, sql: "SELECT count(*) FROM filler") } == 3 * threshold)
    }

    @Test func aReaderHoldingASnapshotDelaysTheResetUntilItEnds() throws {
        // An admin's sqlite3 session with an open read transaction: checkpoints cannot copy
        // past its snapshot, so the WAL keeps growing; once it ends, the next checkpoint
        // catches up and the WAL starts over.
        let database = try SwitchboardDatabase(dataDirectory: dir.path)
        try database.writeInPlace { db in try db.execute(sql: "CREATE TABLE filler (data BLOB)") }
        let threshold = Int(database.checkpointer.threshold)
        func fill() throws {
            try database.writeInPlace { db in
                for _ in 0..<threshold { try db.execute(sql: "INSERT INTO filler VALUES (zeroblob(4000))") }
            }
            database.checkpointer.drain()
        }
        var holding = Configuration()
        holding.allowsUnsafeTransactions = true  // a transaction left open across accesses, on purpose
        let admin = try DatabaseQueue(path: dir.databasePath, configuration: holding)
        try admin.inDatabase { db in
            try db.execute(sql: "BEGIN")
            _ = try Int.fetchOne(db, sql: "SELECT count(*) FROM filler")
        }
        try fill()
        try fill()
        #expect(try walFrames() >= 2 * threshold)  // held back by the open snapshot
        try admin.inDatabase { db in try db.execute(sql: "COMMIT") }
        try fill()
        #expect(database.checkpointer.counts.failures == 0)
        try database.writeInPlace { db in try db.execute(sql: "INSERT INTO filler VALUES (x'00')") }
        #expect(try walFrames() <= 5)
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

    @Test func belowTheThresholdNothingRuns() throws {
        let database = try SwitchboardDatabase(dataDirectory: dir.path)
        try database.writeInPlace { db in try db.execute(sql: "CREATE TABLE filler (data BLOB)") }
        for _ in 0..<10 {
            try database.writeInPlace { db in try db.execute(sql: "INSERT INTO filler VALUES (x'01')") }
        }
        database.checkpointer.drain()
        #expect(database.checkpointer.counts.runs == 0)
    }
}
