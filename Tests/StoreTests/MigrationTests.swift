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
        #expect(try db.appliedMigrations() == ["0001_first.sql", "0002_second.sql", "0003_third.sql"])
        let steps = try db.pool.read { try String.fetchAll($0, sql: "SELECT step FROM log ORDER BY rowid") }
        #expect(steps == ["second", "third"])
    }

    @Test func aNewMigrationIsAppliedOnTopOfExistingOnes() throws {
        let dir = TemporaryDirectory()
        let first = [Migration(version: 1, fileName: "0001_a.sql", sql: "CREATE TABLE a (x INTEGER);")]
        _ = try SwitchboardDatabase(path: dir.databasePath, migrations: first)
        let both = first + [Migration(version: 2, fileName: "0002_b.sql", sql: "CREATE TABLE b (y INTEGER);")]
        let db = try SwitchboardDatabase(path: dir.databasePath, migrations: both)
        #expect(try db.appliedMigrations() == ["0001_a.sql", "0002_b.sql"])
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

    @Test func aFailedFirstMigrationLeavesNoTraceAtAll() throws {
        let dir = TemporaryDirectory()
        let broken = [Migration(version: 1, fileName: "0001_bad.sql", sql: "CREATE TABLE t (x); SELEC 1;")]
        #expect(throws: StoreError.self) {
            _ = try SwitchboardDatabase(path: dir.databasePath, migrations: broken)
        }
        // Not even the bookkeeping table: the file is as empty as before.
        #expect(try Self.snapshot(dir.databasePath).isEmpty)
    }

    @Test func anEditedLandedMigrationIsRefused() throws {
        let dir = TemporaryDirectory()
        let original = Migration(version: 1, fileName: "0001_a.sql", sql: "CREATE TABLE a (x INTEGER);")
        _ = try SwitchboardDatabase(path: dir.databasePath, migrations: [original])
        var edited = original
        edited.sql = "CREATE TABLE a (x INTEGER, y TEXT);"
        #expect(throws: StoreError.migrationEdited(file: "0001_a.sql", appliedAs: "0001_a.sql")) {
            _ = try SwitchboardDatabase(path: dir.databasePath, migrations: [edited])
        }
    }

    /// Table rebuilds (SQLite's 12-step ALTER) must not cascade deletes into child tables.
    @Test func aTableRebuildKeepsChildRowsOfCascadingForeignKeys() throws {
        let dir = TemporaryDirectory()
        let base = [Migration(version: 1, fileName: "0001_base.sql", sql: """
            CREATE TABLE parent (id TEXT PRIMARY KEY);
            CREATE TABLE child (parent_id TEXT NOT NULL REFERENCES parent(id) ON DELETE CASCADE);
            INSERT INTO parent VALUES ('p'); INSERT INTO child VALUES ('p');
            """)]
        _ = try SwitchboardDatabase(path: dir.databasePath, migrations: base)
        let rebuild = Migration(version: 2, fileName: "0002_rebuild.sql", sql: """
            CREATE TABLE parent_new (id TEXT PRIMARY KEY, note TEXT);
            INSERT INTO parent_new (id) SELECT id FROM parent;
            DROP TABLE parent;
            ALTER TABLE parent_new RENAME TO parent;
            """)
        let db = try SwitchboardDatabase(path: dir.databasePath, migrations: base + [rebuild])
        #expect(try db.pool.read { try Int.fetchOne($0, sql: "SELECT count(*) FROM child") } == 1)
        #expect(try db.pool.read { try Int.fetchOne($0, sql: "PRAGMA foreign_keys") } == 1)
    }

    @Test func aMigrationThatBreaksForeignKeysIsRolledBack() throws {
        let dir = TemporaryDirectory()
        let base = [Migration(version: 1, fileName: "0001_base.sql", sql: """
            CREATE TABLE parent (id TEXT PRIMARY KEY);
            CREATE TABLE child (parent_id TEXT NOT NULL REFERENCES parent(id));
            """)]
        _ = try SwitchboardDatabase(path: dir.databasePath, migrations: base)
        let before = try Self.snapshot(dir.databasePath)
        let orphan = Migration(version: 2, fileName: "0002_orphan.sql", sql: "INSERT INTO child VALUES ('nobody');")
        #expect {
            _ = try SwitchboardDatabase(path: dir.databasePath, migrations: base + [orphan])
        } throws: { error in
            guard case StoreError.migrationFailed(let file, let message) = error else { return false }
            return file == "0002_orphan.sql" && message.contains("foreign key")
        }
        #expect(try Self.snapshot(dir.databasePath) == before)
    }

    /// Two processes (here: two pools) starting at once apply each migration exactly once.
    @Test func concurrentStartupsApplyEachMigrationOnce() async throws {
        let dir = TemporaryDirectory()
        let migrations = [
            Migration(version: 1, fileName: "0001_t.sql", sql: "CREATE TABLE t (x INTEGER);"),
            Migration(version: 2, fileName: "0002_row.sql", sql: "INSERT INTO t VALUES (1);"),
        ]
        let path = dir.databasePath
        try await withThrowingTaskGroup(of: Void.self) { group in
            for _ in 0..<8 {
                group.addTask { _ = try SwitchboardDatabase(path: path, migrations: migrations) }
            }
            try await group.waitForAll()
        }
        let db = try SwitchboardDatabase(path: path, migrations: migrations)
        #expect(try await db.pool.read { try Int.fetchOne($0, sql: "SELECT count(*) FROM t") } == 1)
        #expect(try db.appliedMigrations() == ["0001_t.sql", "0002_row.sql"])
    }

    @Test func aDatabaseFromANewerBinaryIsRefused() throws {
        let dir = TemporaryDirectory()
        let newer = [
            Migration(version: 1, fileName: "0001_a.sql", sql: "CREATE TABLE a (x INTEGER);"),
            Migration(version: 2, fileName: "0002_future.sql", sql: "CREATE TABLE f (x INTEGER);"),
        ]
        _ = try SwitchboardDatabase(path: dir.databasePath, migrations: newer)
        #expect(throws: StoreError.databaseNewerThanBinary(unknownMigrations: ["0002_future.sql"])) {
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

    @Test func theRealSchemaOpensInWALModeWithForeignKeysAndAWriterThatNeverWaitsInSQLite() throws {
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
        // The writer never waits inside SQLite for another process's lock: it tries again
        // later without holding the writer (see WriteLockTests).
        #expect(try db.pool.write { try Int.fetchOne($0, sql: "PRAGMA busy_timeout") } == 0)
        #expect(try db.appliedMigrations() == Migration.embedded.map(\.fileName))
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
