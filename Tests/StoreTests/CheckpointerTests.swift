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
        try database.pool.write { db in try db.execute(sql: "CREATE TABLE filler (data BLOB)") }
        // Small commits, well past the threshold of pages, as the signaling hot path makes them.
        let blob = Data(repeating: 7, count: 3000)
        for _ in 0..<(Int(database.checkpointer.threshold) + 200) {
            try database.writeInPlace { db in try db.execute(sql: "INSERT INTO filler VALUES (?)", arguments: [blob]) }
        }
        database.checkpointer.drain()
        let counts = database.checkpointer.counts
        #expect(counts.runs >= 1)
        #expect(counts.failures == 0)
        // Everything was copied, so the next commit starts the WAL over from its beginning:
        // left to grow, it would hold every page written above.
        try database.writeInPlace { db in try db.execute(sql: "INSERT INTO filler VALUES (x'00')") }
        #expect(try walFrames() < Int(database.checkpointer.threshold) / 2)
        #expect(try database.pool.read { db in try Int.fetchOne(db, sql: "SELECT count(*) FROM filler") }
            == Int(database.checkpointer.threshold) + 201)
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
