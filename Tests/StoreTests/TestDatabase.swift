import Foundation
@testable import Store

/// A fresh data directory under the system temp folder, removed when the test ends.
final class TemporaryDirectory {
    let path: String

    init() {
        path = NSTemporaryDirectory() + "switchboard-test-" + UUID().uuidString
        try! FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: true)
    }

    deinit { try? FileManager.default.removeItem(atPath: path) }

    var databasePath: String { path + "/switchboard.db" }

    /// Every byte SQLite has written for the database: the main file and its WAL.
    func databaseBytes() -> Data {
        var data = Data()
        for suffix in ["", "-wal"] {
            if let chunk = FileManager.default.contents(atPath: databasePath + suffix) { data.append(chunk) }
        }
        return data
    }
}
