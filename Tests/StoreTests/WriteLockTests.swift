import Foundation
import GRDB
import Testing
@testable import Store

/// Another process holding SQLite's write lock (an admin's `sqlite3` in BEGIN IMMEDIATE),
/// played by a second connection to the same file.
@Suite struct WriteLockTests {
    let dir = TemporaryDirectory()

    /// A connection of its own, as the sqlite3 CLI would have, that takes the write lock.
    final class Admin: Sendable {
        let queue: DatabaseQueue
        init(path: String) throws {
            var configuration = Configuration()
            configuration.allowsUnsafeTransactions = true  // a transaction left open between calls
            queue = try DatabaseQueue(path: path, configuration: configuration)
        }
        func begin() throws { try queue.writeWithoutTransaction { try $0.execute(sql: "BEGIN IMMEDIATE; INSERT INTO audit_log (at, actor, action) VALUES (0, 'cli', 'admin.hold')") } }
        func commit() throws { try queue.writeWithoutTransaction { try $0.execute(sql: "COMMIT") } }
    }

    func peerCount(_ database: SwitchboardDatabase) throws -> Int {
        try database.pool.read { try Int.fetchOne($0, sql: "SELECT count(*) FROM peers") ?? -1 }
    }

    static func insertPeer(_ db: Database, _ id: String) throws {
        try db.execute(sql: "INSERT INTO peers (id, key_hash, created_at, key_changed_at) VALUES (?, 'x', 0, 0)", arguments: [id])
    }

    @Test func theFastPathDeclinesAtOnceWhileAnotherProcessHoldsTheLock() throws {
        let database = try SwitchboardDatabase(dataDirectory: dir.path)
        let admin = try Admin(path: dir.databasePath)
        try admin.begin()
        let started = ContinuousClock.now
        let result = try database.attemptWrite { db in try Self.insertPeer(db, "alice") }
        #expect(result == nil)
        #expect(ContinuousClock.now - started < .seconds(1))  // not the 5 s busy timeout; slack for a loaded machine
        try admin.commit()
        #expect(try database.attemptWrite { db in try Self.insertPeer(db, "alice") } != nil)
        #expect(try peerCount(database) == 1)
    }

    @Test func aWriteWaitingOffTheCallerCompletesOnceTheLockIsLetGo() async throws {
        let database = try SwitchboardDatabase(dataDirectory: dir.path, writeTimeout: .seconds(5))
        let admin = try Admin(path: dir.databasePath)
        try admin.begin()
        let started = ContinuousClock.now
        let write = Task { try await database.writeInPlace { db in try Self.insertPeer(db, "alice") } }
        let viaQueue = Task { try await database.write { db in try Self.insertPeer(db, "bob") } }
        try await Task.sleep(for: .milliseconds(300))
        // Meanwhile the writer is free: reads on it and in-process writes' attempts do not wait.
        let probe = ContinuousClock.now
        #expect(try database.readOnWriter { try Int.fetchOne($0, sql: "SELECT 1") } == 1)
        #expect(try database.attemptWrite { _ in () } == nil)
        #expect(ContinuousClock.now - probe < .seconds(1))  // not the 5 s busy timeout; slack for a loaded machine
        #expect(try peerCount(database) == 0)
        try admin.commit()
        let released = ContinuousClock.now
        try await write.value
        try await viaQueue.value
        #expect(released - started >= .milliseconds(300))
        // Retries are 25 ms apart; the rest is a loaded test machine's scheduling (2 cores,
        // suites in parallel, some blocking cooperative threads: 6.6 s was seen), so the
        // bound only catches a write that never goes through.
        #expect(ContinuousClock.now - released < .seconds(30))
        #expect(try peerCount(database) == 2)
    }

    @Test func aWriteGivesUpAfterItsBoundWithATypedError() async throws {
        let database = try SwitchboardDatabase(dataDirectory: dir.path, writeTimeout: .milliseconds(200))
        let admin = try Admin(path: dir.databasePath)
        try admin.begin()
        defer { try? admin.commit() }
        let started = ContinuousClock.now
        await #expect(throws: StoreError.busy(waited: .milliseconds(200))) {
            try await database.writeInPlace { db in try Self.insertPeer(db, "alice") }
        }
        let took = ContinuousClock.now - started
        // The error names the bound it waited; the time only checks that it did wait and
        // gave up (a loaded machine's cooperative pool delayed the retries by up to 6.6 s).
        #expect(took >= .milliseconds(200) && took < .seconds(30))
        await #expect(throws: StoreError.busy(waited: .milliseconds(100))) {
            try await database.write(timeout: .milliseconds(100)) { db in try Self.insertPeer(db, "bob") }
        }
        try admin.commit()
        #expect(try peerCount(database) == 0)
    }

    @Test func anAcknowledgingReadStillAnswersWhileTheLockIsHeld() async throws {
        let database = try SwitchboardDatabase(dataDirectory: dir.path)
        let alice = try PeerID("alice"), bob = try PeerID("bob")
        _ = try database.addPeer(alice)
        _ = try database.addPeer(bob)
        var offers: [Int64] = []
        for id in ["s1", "s2"] {
            offers.append(try await database.createSession(
                id: id, caller: alice, callee: bob, mode: .p2p, description: nil, offer: "v=0",
                offerTTL: 30, eventTTL: 300, eventData: "{}").1.id)
        }
        let admin = try Admin(path: dir.databasePath)
        try admin.begin()
        let started = ContinuousClock.now
        // The first is acknowledged: its deletion waits for a later call, the answer does not.
        #expect(try database.events(for: "bob", after: offers[0], deletingUpTo: offers[0]).map(\.id) == [offers[1]])
        #expect(ContinuousClock.now - started < .seconds(1))  // not the 5 s busy timeout; slack for a loaded machine
        try admin.commit()
        #expect(try database.events(for: "bob", after: 0).map(\.id) == offers)
        _ = try database.events(for: "bob", after: offers[0], deletingUpTo: offers[0])
        #expect(try database.events(for: "bob", after: 0).map(\.id) == [offers[1]])
    }
}
