import Crypto
import Foundation
import GRDB

/// Migration is one numbered SQL file from the top-level `Migrations/` folder.
///
/// The files are the single source of truth for the schema; the build embeds them
/// (see `Plugins/EmbedMigrations`), so the binary needs no files at run time.
package struct Migration: Sendable, Equatable {
    package var version: Int
    package var fileName: String
    package var sql: String

    package init(version: Int, fileName: String, sql: String) {
        self.version = version
        self.fileName = fileName
        self.sql = sql
    }

    init(version: Int, fileName: String, base64SQL: String) {
        let data = Data(base64Encoded: base64SQL) ?? Data()
        self.init(version: version, fileName: fileName, sql: String(decoding: data, as: UTF8.self))
    }

}

/// SchemaMigrator applies migrations in version order, each in its own transaction, and
/// records each one (version, file, SHA-256 of its SQL, time) in `schema_migrations`.
///
/// It is small and our own rather than GRDB's `DatabaseMigrator` for two guarantees that
/// one does not give: a failed migration leaves the file exactly as it was (the bookkeeping
/// table is created inside the first migration's transaction), and a landed migration that
/// was edited afterwards is refused by its checksum. Each transaction is BEGIN IMMEDIATE
/// and re-reads what is applied, so two processes starting at once apply each file once.
package struct SchemaMigrator: Sendable {
    package var migrations: [Migration]
    var now: @Sendable () -> Date

    package init(migrations: [Migration] = Migration.embedded, now: @escaping @Sendable () -> Date = Date.init) {
        self.migrations = migrations.sorted { $0.version < $1.version }
        self.now = now
    }

    struct Applied {
        var version: Int
        var fileName: String
        var sha256: String
    }

    /// Brings the schema up to date. Stops at the first migration that fails; that
    /// migration's transaction is rolled back, so the database stays as the previous
    /// migration left it.
    package func migrate(_ pool: DatabasePool) throws {
        try checkVersions()
        // The common case, every migration applied, needs no write lock.
        let applied = try pool.read { db in try Self.applied(db) }
        if try isUpToDate(applied) { return }

        for migration in migrations {
            try pool.writeWithoutTransaction { db in
                // Table rebuilds need foreign keys off (a DROP would cascade); they are checked
                // before commit instead, and switched back on whatever happens.
                try db.execute(sql: "PRAGMA foreign_keys = OFF")
                defer { try? db.execute(sql: "PRAGMA foreign_keys = ON") }
                try db.inTransaction(.immediate) {
                    try db.execute(sql: Self.createTable)
                    let applied = try Self.applied(db)
                    if try isApplied(migration, in: applied) { return .commit }
                    do {
                        try db.execute(sql: migration.sql)
                        if let violation = try Row.fetchOne(db, sql: "PRAGMA foreign_key_check") {
                            throw StoreError.migrationFailed(
                                file: migration.fileName,
                                message: "foreign key violation in table \(violation[0] as String? ?? "?")")
                        }
                    } catch let error as DatabaseError {
                        throw StoreError.migrationFailed(
                            file: migration.fileName, message: error.message ?? "\(error.resultCode)")
                    }
                    try db.execute(
                        sql: "INSERT INTO schema_migrations (version, file_name, sha256, applied_at) VALUES (?, ?, ?, ?)",
                        arguments: [migration.version, migration.fileName, migration.sha256,
                                    Int64(now().timeIntervalSince1970)])
                    return .commit
                }
            }
        }
    }

    /// The file names applied to this database, in version order.
    package func applied(_ reader: some DatabaseReader) throws -> [String] {
        try reader.read { db in try Self.applied(db).map(\.fileName) }
    }

    static let createTable = """
        CREATE TABLE IF NOT EXISTS schema_migrations (
            version    INTEGER NOT NULL PRIMARY KEY,
            file_name  TEXT    NOT NULL,
            sha256     TEXT    NOT NULL,
            applied_at INTEGER NOT NULL
        ) STRICT
        """

    static func applied(_ db: Database) throws -> [Applied] {
        guard try db.tableExists("schema_migrations") else { return [] }
        return try Row.fetchAll(db, sql: "SELECT version, file_name, sha256 FROM schema_migrations ORDER BY version")
            .map { Applied(version: $0["version"], fileName: $0["file_name"], sha256: $0["sha256"]) }
    }

    /// True when every known migration is applied; throws when the database has one this
    /// binary does not know, or one whose SQL changed since it was applied.
    private func isUpToDate(_ applied: [Applied]) throws -> Bool {
        let known = Set(migrations.map(\.version))
        let unknown = applied.filter { !known.contains($0.version) }
        if !unknown.isEmpty {
            throw StoreError.databaseNewerThanBinary(unknownMigrations: unknown.map(\.fileName))
        }
        var allApplied = true
        for migration in migrations where try !isApplied(migration, in: applied) {
            allApplied = false
        }
        return allApplied
    }

    private func isApplied(_ migration: Migration, in applied: [Applied]) throws -> Bool {
        guard let record = applied.first(where: { $0.version == migration.version }) else { return false }
        guard record.sha256 == migration.sha256 else {
            throw StoreError.migrationEdited(file: migration.fileName, appliedAs: record.fileName)
        }
        return true
    }

    private func checkVersions() throws {
        for (a, b) in zip(migrations, migrations.dropFirst()) where a.version == b.version {
            throw StoreError.migrationFailed(
                file: b.fileName, message: "version \(b.version) is also used by \(a.fileName)")
        }
    }
}

extension Migration {
    /// Hex SHA-256 of the SQL text, recorded when applied so later edits are caught.
    var sha256: String {
        SHA256.hash(data: Data(sql.utf8)).map { String(format: "%02x", $0) }.joined()
    }
}
