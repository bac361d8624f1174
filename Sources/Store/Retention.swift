import GRDB

extension SwitchboardDatabase {
    /// Deletes ended viewers (`media_viewer_history`) and audit log rows older than
    /// `retention` seconds; returns how many rows went. Both tables are written oldest first,
    /// so the purge deletes from the start of each, in small paced transactions like the
    /// session purge (`deleteOldestRows`), and a backlog is cleared over several calls.
    @discardableResult
    package func purgeOldHistory(retention: Int, batch: Int = 100) async throws -> Int {
        let cutoff = unixNow - Int64(retention)
        var total = 0
        for (table, column) in [("media_viewer_history", "ended_at"), ("audit_log", "at")] {
            let end = try await firstRow(of: table, where: "\(column) > ?", [cutoff])
            total += try await deleteOldestRows(table, before: end, where: "\(column) <= ?", [cutoff], batch: batch)
        }
        return total
    }
}
