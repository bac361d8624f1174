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

    /// The identifier recorded in the `grdb_migrations` table: the file name without `.sql`.
    package var identifier: String {
        fileName.hasSuffix(".sql") ? String(fileName.dropLast(4)) : fileName
    }
}

/// SchemaMigrator applies migrations in version order, each in its own transaction, and
/// records them, through GRDB's `DatabaseMigrator`.
package struct SchemaMigrator: Sendable {
    package var migrations: [Migration]

    package init(migrations: [Migration] = Migration.embedded) {
        self.migrations = migrations.sorted { $0.version < $1.version }
    }

    /// Brings the schema up to date. Stops at the first migration that fails; that
    /// migration's transaction is rolled back, so the database stays as the previous
    /// migration left it.
    package func migrate(_ writer: some DatabaseWriter) throws {
        try checkVersions()
        let known = Set(migrations.map(\.identifier))
        // Every identifier in grdb_migrations, registered here or not.
        let applied = try writer.read { db in try DatabaseMigrator().appliedIdentifiers(db) }
        let unknown = applied.subtracting(known)
        if !unknown.isEmpty {
            throw StoreError.databaseNewerThanBinary(unknownMigrations: unknown.sorted())
        }
        // Apply one at a time so that a failure names its file.
        var migrator = DatabaseMigrator()
        for migration in migrations {
            let sql = migration.sql
            migrator.registerMigration(migration.identifier) { db in
                try db.execute(sql: sql)
            }
            do {
                try migrator.migrate(writer, upTo: migration.identifier)
            } catch let error as DatabaseError {
                throw StoreError.migrationFailed(
                    file: migration.fileName,
                    message: error.message ?? "\(error.resultCode)")
            } catch {
                throw StoreError.migrationFailed(file: migration.fileName, message: "\(error)")
            }
        }
    }

    /// The identifiers already applied to this database, in application order.
    package func applied(_ reader: some DatabaseReader) throws -> [String] {
        try reader.read { db in
            guard try db.tableExists("grdb_migrations") else { return [] }
            return try String.fetchAll(db, sql: "SELECT identifier FROM grdb_migrations ORDER BY rowid")
        }
    }

    private func checkVersions() throws {
        for (a, b) in zip(migrations, migrations.dropFirst()) where a.version == b.version {
            throw StoreError.migrationFailed(
                file: b.fileName, message: "version \(b.version) is also used by \(a.fileName)")
        }
    }
}
