import Foundation
import GRDB
import Testing
@testable import Store

@Suite struct MigrationTests {
    static let repositoryRoot = URL(fileURLWithPath: #filePath)
        .deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()

    @Test func embeddedMigrationsMatchTheFilesInMigrationsFolder() throws {
        let folder = Self.repositoryRoot.appending(path: "Migrations")
        let files = try FileManager.default.contentsOfDirectory(atPath: folder.path)
            .filter { $0.hasSuffix(".sql") }.sorted()
        #expect(!files.isEmpty)
        #expect(Migration.embedded.map(\.fileName) == files)
        for migration in Migration.embedded {
            let onDisk = try String(contentsOf: folder.appending(path: migration.fileName), encoding: .utf8)
            #expect(migration.sql == onDisk, "embedded \(migration.fileName) differs from the file")
        }
        let versions = Migration.embedded.map(\.version)
        #expect(versions == versions.sorted() && Set(versions).count == versions.count)
        #expect(Migration.embedded.first?.fileName == "0001_initial.sql")
    }

    @Test func migrationsAreAppliedOnceAndInOrder() throws {
        let dir = TemporaryDirectory()
        // Listed out of order on purpose: the migrator sorts by version.
        let migrations = [
            Migration(version: 3, fileName: "0003_third.sql", sql: "INSERT INTO log VALUES ('third');"),
            Migration(version: 1, fileName: "0001_first.sql", sql: "CREATE TABLE log (step TEXT NOT NULL);"),
            Migration(version: 2, fileName: "0002_second.sql", sql: "INSERT INTO log VALUES ('second');"),
        ]
        for _ in 0..<3 {
            _ = try SwitchboardDatabase(path: dir.databasePath, migrations: migrations)
        }
        let db = try SwitchboardDatabase(path: dir.databasePath, migrations: migrations)
        #expect(try db.appliedMigrations() == ["0001_first", "0002_second", "0003_third"])
        let steps = try db.pool.read { try String.fetchAll($0, sql: "SELECT step FROM log ORDER BY rowid") }
        #expect(steps == ["second", "third"])
    }

    @Test func aNewMigrationIsAppliedOnTopOfExistingOnes() throws {
        let dir = TemporaryDirectory()
        let first = [Migration(version: 1, fileName: "0001_a.sql", sql: "CREATE TABLE a (x INTEGER);")]
        _ = try SwitchboardDatabase(path: dir.databasePath, migrations: first)
        let both = first + [Migration(version: 2, fileName: "0002_b.sql", sql: "CREATE TABLE b (y INTEGER);")]
        let db = try SwitchboardDatabase(path: dir.databasePath, migrations: both)
        #expect(try db.appliedMigrations() == ["0001_a", "0002_b"])
    }

    @Test func aBrokenMigrationIsRolledBackAndNamesItsFile() throws {
        let dir = TemporaryDirectory()
        let good = [
            Migration(version: 1, fileName: "0001_base.sql",
                      sql: "CREATE TABLE kept (x INTEGER); INSERT INTO kept VALUES (42);"),
        ]
        _ = try SwitchboardDatabase(path: dir.databasePath, migrations: good)
        let before = try Self.snapshot(dir.databasePath)

        // Its first statements succeed; the third fails: all three must be undone.
        let broken = Migration(
            version: 2, fileName: "0002_broken.sql",
            sql: """
                CREATE TABLE half (y INTEGER);
                UPDATE kept SET x = 0;
                INSERT INTO no_such_table VALUES (1);
                """)
        #expect {
            _ = try SwitchboardDatabase(path: dir.databasePath, migrations: good + [broken])
        } throws: { error in
            guard case StoreError.migrationFailed(let file, let message) = error else { return false }
            return file == "0002_broken.sql" && message.contains("no such table: no_such_table")
                && "\(error)".contains("0002_broken.sql")
        }
        #expect(try Self.snapshot(dir.databasePath) == before)
    }

    @Test func aDatabaseFromANewerBinaryIsRefused() throws {
        let dir = TemporaryDirectory()
        let newer = [
            Migration(version: 1, fileName: "0001_a.sql", sql: "CREATE TABLE a (x INTEGER);"),
            Migration(version: 2, fileName: "0002_future.sql", sql: "CREATE TABLE f (x INTEGER);"),
        ]
        _ = try SwitchboardDatabase(path: dir.databasePath, migrations: newer)
        #expect(throws: StoreError.databaseNewerThanBinary(unknownMigrations: ["0002_future"])) {
            _ = try SwitchboardDatabase(path: dir.databasePath, migrations: Array(newer.prefix(1)))
        }
    }

    @Test func twoMigrationsWithOneVersionAreRefused() throws {
        let dir = TemporaryDirectory()
        let clash = [
            Migration(version: 1, fileName: "0001_a.sql", sql: "CREATE TABLE a (x INTEGER);"),
            Migration(version: 1, fileName: "0001_b.sql", sql: "CREATE TABLE b (x INTEGER);"),
        ]
        #expect(throws: StoreError.self) {
            _ = try SwitchboardDatabase(path: dir.databasePath, migrations: clash)
        }
        let tables = try Self.snapshot(dir.databasePath).filter { $0.hasPrefix("table|a|") || $0.hasPrefix("table|b|") }
        #expect(tables.isEmpty)
    }

    @Test func theRealSchemaOpensInWALModeWithForeignKeysAndABusyTimeout() throws {
        let dir = TemporaryDirectory()
        let db = try SwitchboardDatabase(dataDirectory: dir.path)
        #expect(db.path == dir.databasePath)
        try db.pool.read { conn in
            #expect(try String.fetchOne(conn, sql: "PRAGMA journal_mode") == "wal")
            #expect(try Int.fetchOne(conn, sql: "PRAGMA foreign_keys") == 1)
            let names = try String.fetchSet(conn, sql: "SELECT name FROM sqlite_master")
            for name in ["peers", "peer_groups", "login_tokens", "audit_log",
                         "peers_overview", "group_members", "recent_audit", "login_failures_24h"] {
                #expect(names.contains(name), "missing \(name)")
            }
        }
        // The writer waits up to the busy timeout for another process's write lock.
        let timeout = try db.pool.write { try Int.fetchOne($0, sql: "PRAGMA busy_timeout") }
        #expect(timeout == 5000)
        #expect(try db.appliedMigrations() == Migration.embedded.map(\.identifier))
    }

    /// Schema and every row of every table, as text: equal snapshots mean an untouched database.
    static func snapshot(_ path: String) throws -> [String] {
        let queue = try DatabaseQueue(path: path)
        return try queue.read { db in
            var lines = try Row.fetchAll(db, sql: "SELECT type, name, sql FROM sqlite_master ORDER BY type, name")
                .map { "\($0["type"] as String)|\($0["name"] as String)|\(($0["sql"] as String?) ?? "")" }
            let tables = try String.fetchAll(
                db, sql: "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%' ORDER BY name")
            for table in tables {
                lines += try Row.fetchAll(db, sql: "SELECT * FROM \"\(table)\"").map { "\(table): \($0)" }.sorted()
            }
            return lines
        }
    }
}
