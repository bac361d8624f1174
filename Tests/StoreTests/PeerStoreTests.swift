import Foundation
import GRDB
import NIOConcurrencyHelpers
import Testing
@testable import Store

@Suite struct PeerStoreTests {
    let dir = TemporaryDirectory()
    let clock = TestClock()
    var db: SwitchboardDatabase

    init() throws {
        db = try SwitchboardDatabase(dataDirectory: dir.path, now: { [clock] in clock.now })
    }

    @Test(arguments: ["a", "alice", "A.b_c-9", String(repeating: "x", count: 64), "...", "-", "_"])
    func validPeerIDsAreAccepted(id: String) throws {
        #expect(try PeerID(id).rawValue == id)
        _ = try db.addPeer(try PeerID(id))
        #expect(try db.peer(try PeerID(id))?.id == id)
    }

    @Test(arguments: ["", String(repeating: "x", count: 65), "a b", "a/b", "ali\u{e9}", "a\nb", "a:b",
                      "a\0b", "💡", "a;drop", "' OR 1=1 --"])
    func invalidPeerIDsAreRefused(id: String) {
        #expect(throws: StoreError.invalidPeerID(id)) { try PeerID(id) }
        #expect(throws: StoreError.invalidGroupName(id)) { try GroupName(id) }
    }

    @Test func aTokenCheckDoesNotQueueBehindAWriteUnderWay() async throws {
        let alice = try PeerID("alice")
        _ = try db.addPeer(alice)
        let token = try await db.issueToken(for: alice, lifetime: 60, source: nil).token
        let database = db
        // A write that holds the writer (as one waiting out the sqlite3 CLI's lock would).
        let holding = DispatchSemaphore(value: 0), release = DispatchSemaphore(value: 0)
        DispatchQueue.global().async { try? database.writeWaiting { _ in holding.signal(); release.wait() } }
        holding.wait()
        let answered = DispatchSemaphore(value: 0)
        let found = NIOLockedValueBox<String?>(nil)
        DispatchQueue.global().async {
            found.withLockedValue { $0 = try? database.peerID(forToken: token) }
            answered.signal()
        }
        let waited = answered.wait(timeout: .now() + 10)
        release.signal()
        #expect(waited == .success)  // answered by a reader while the writer was taken
        if waited != .success { answered.wait() }
        #expect(found.withLockedValue { $0 } == "alice")
        // Nothing under way: read on the writer, same answer.
        #expect(try db.peerID(forToken: token) == "alice")
        #expect(try db.peerID(forToken: "not-a-token") == nil)
    }

    /// The same rule holds for rows written with the sqlite3 CLI, through the CHECK constraints.
    @Test func theSchemaRefusesInvalidIDsWrittenBehindTheStoresBack() throws {
        for bad in ["", "a b", String(repeating: "x", count: 65), "é"] {
            #expect(throws: DatabaseError.self) {
                try db.pool.write { conn in
                    try conn.execute(
                        sql: "INSERT INTO peers (id, key_hash, created_at, key_changed_at) VALUES (?, 'h', 0, 0)",
                        arguments: [bad])
                }
            }
        }
        #expect(try db.peers().isEmpty)
    }

    @Test func anAddedPeerLogsInWithItsKeyOnly() throws {
        let alice = try PeerID("alice")
        let key = try db.addPeer(alice, groups: [try GroupName("cams"), try GroupName("alpha"), try GroupName("cams")])
        let peer = try #require(try db.verifyKey(alice, key: key.text))
        #expect(peer.groups == ["alpha", "cams"])
        #expect(peer.disabled == false)
        #expect(peer.createdAt == Date(timeIntervalSince1970: 1_800_000_000))
        #expect(try db.verifyKey(alice, key: PeerKey.generate().text) == nil)
        #expect(try db.verifyKey(try PeerID("bob"), key: key.text) == nil)
    }

    @Test func theKeyIsNowhereInTheDatabaseFile() throws {
        var keys: [String] = []
        for index in 0..<20 { keys.append(try db.addPeer(try PeerID("peer\(index)")).text) }
        keys.append(try db.rotateKey(try PeerID("peer3")).text)
        let bytes = dir.databaseBytes()
        #expect(bytes.count > 0)
        for key in keys {
            #expect(bytes.range(of: Data(key.utf8)) == nil, "key found in database bytes")
        }
    }

    @Test func aDuplicateIDIsRefusedAndTheOriginalIsKept() throws {
        let alice = try PeerID("alice")
        let key = try db.addPeer(alice, groups: [try GroupName("one")])
        let auditBefore = try db.auditLog().count
        #expect(throws: StoreError.peerExists("alice")) {
            _ = try db.addPeer(alice, groups: [try GroupName("two")])
        }
        #expect(try db.verifyKey(alice, key: key.text)?.groups == ["one"])
        #expect(try db.auditLog().count == auditBefore)
    }

    @Test func unknownIDsAreReportedByEveryChange() throws {
        let ghost = try PeerID("ghost")
        #expect(throws: StoreError.peerNotFound("ghost")) { try db.setDisabled(ghost, true) }
        #expect(throws: StoreError.peerNotFound("ghost")) { try db.setDisabled(ghost, false) }
        #expect(throws: StoreError.peerNotFound("ghost")) { _ = try db.rotateKey(ghost) }
        #expect(throws: StoreError.peerNotFound("ghost")) { try db.removePeer(ghost) }
        #expect(try db.peer(ghost) == nil)
        #expect(try db.auditLog().isEmpty)
    }

    @Test func aDisabledPeerCannotLogInUntilEnabled() throws {
        let alice = try PeerID("alice")
        let key = try db.addPeer(alice)
        #expect(try db.setDisabled(alice, true))
        #expect(try db.setDisabled(alice, true) == false)
        #expect(try db.verifyKey(alice, key: key.text) == nil)
        #expect(try db.peer(alice)?.disabled == true)
        #expect(try db.setDisabled(alice, false))
        #expect(try db.verifyKey(alice, key: key.text) != nil)
    }

    @Test func rotatingTheKeyRetiresTheOldOne() throws {
        let alice = try PeerID("alice")
        let old = try db.addPeer(alice)
        clock.advance(by: 60)
        let new = try db.rotateKey(alice)
        #expect(old != new)
        #expect(try db.verifyKey(alice, key: old.text) == nil)
        #expect(try db.verifyKey(alice, key: new.text) != nil)
        #expect(try db.peer(alice)?.keyChangedAt == Date(timeIntervalSince1970: 1_800_000_060))
    }

    @Test func disablingRotatingOrRemovingRevokesLoginTokens() throws {
        let alice = try PeerID("alice")
        _ = try db.addPeer(alice, groups: [try GroupName("g")])
        func tokenCount() throws -> Int {
            try db.pool.read { try Int.fetchOne($0, sql: "SELECT count(*) FROM login_tokens WHERE peer_id = 'alice'")! }
        }
        func issueToken(_ name: String) throws {
            try db.pool.write { conn in
                try conn.execute(
                    sql: "INSERT INTO login_tokens (token_hash, peer_id, created_at, expires_at) VALUES (?, 'alice', 0, 9999999999)",
                    arguments: [name])
            }
        }
        try issueToken("t1")
        try db.setDisabled(alice, true)
        #expect(try tokenCount() == 0)
        try db.setDisabled(alice, false)
        try issueToken("t2")
        _ = try db.rotateKey(alice)
        #expect(try tokenCount() == 0)
        try issueToken("t3")
        try db.removePeer(alice)
        #expect(try tokenCount() == 0)
        let groups = try db.pool.read { try Int.fetchOne($0, sql: "SELECT count(*) FROM peer_groups")! }
        #expect(groups == 0)
    }

    @Test func everyAdminActionIsAudited() throws {
        let alice = try PeerID("alice")
        _ = try db.addPeer(alice, actor: .cli)
        try db.setDisabled(alice, true)
        try db.setDisabled(alice, false)
        _ = try db.rotateKey(alice)
        try db.removePeer(alice)
        let actions = try db.auditLog().reversed().map(\.action)
        #expect(actions == ["peer.add", "peer.disable", "peer.enable", "peer.rotate-key", "peer.remove"])
        #expect(try db.auditLog().allSatisfy { $0.peerID == "alice" && $0.actor == "cli" })
    }

    /// Two handles on one file stand for the server and the CLI writing at once.
    @Test func concurrentWritersFromTwoConnectionsLoseNothing() async throws {
        let other = try SwitchboardDatabase(dataDirectory: dir.path)
        let handles = [db, other]
        try await withThrowingTaskGroup(of: Void.self) { group in
            for index in 0..<100 {
                let handle = handles[index % 2]
                group.addTask {
                    _ = try handle.addPeer(try PeerID("p\(index)"), groups: [try GroupName("g\(index % 3)")])
                    if index % 10 == 0 { _ = try handle.rotateKey(try PeerID("p\(index)")) }
                }
            }
            try await group.waitForAll()
        }
        #expect(try db.peers().count == 100)
        #expect(try other.peers().map(\.id).sorted() == (0..<100).map { "p\($0)" }.sorted())
        #expect(try db.auditLog(limit: 1000).count == 110)
    }

    @Test func theOverviewViewAnswersTheCommonAdminQuestion() throws {
        _ = try db.addPeer(try PeerID("alice"), groups: [try GroupName("cams"), try GroupName("lobby")])
        _ = try db.addPeer(try PeerID("bob"))
        try db.setDisabled(try PeerID("bob"), true)
        let rows = try db.pool.read { conn in
            try Row.fetchAll(conn, sql: "SELECT id, status, groups, created FROM peers_overview ORDER BY id")
        }
        #expect(rows.count == 2)
        let table = rows.map { row -> [String?] in
            [row["id"], row["status"], row["groups"], row["created"]]
        }
        #expect(table == [["alice", "enabled", "cams,lobby", "2027-01-15 08:00:00"],
                          ["bob", "disabled", nil, "2027-01-15 08:00:00"]])
    }
}

/// A settable clock for the Store's timestamps.
final class TestClock: @unchecked Sendable {
    private let lock = NSLock()
    private var current = Date(timeIntervalSince1970: 1_800_000_000)

    var now: Date { lock.withLock { current } }

    func advance(by seconds: TimeInterval) { lock.withLock { current += seconds } }
}
