import Foundation
import GRDB
import Testing
@testable import Store

@Suite struct SessionStoreTests {
    let dir = TemporaryDirectory()
    let clock = TestClock()
    let db: SwitchboardDatabase
    let alice: PeerID
    let bob: PeerID

    init() throws {
        let clock = clock
        db = try SwitchboardDatabase(dataDirectory: dir.path, now: { clock.now })
        alice = try PeerID("alice")
        bob = try PeerID("bob")
        _ = try db.addPeer(alice)
        _ = try db.addPeer(bob)
        _ = try db.addPeer(try PeerID("mallory"))
    }

    func offer(_ id: String = "s1", ttl: Int = 30) async throws -> (SessionRecord, EventRecord) {
        try await db.createSession(id: id, caller: alice, callee: bob, mode: .relay, description: "door",
                                   offer: "v=0\r\nm=audio 9 RTP/AVP 0\r\n", offerTTL: ttl, eventTTL: 300,
                                   eventData: #"{"session":"\#(id)"}"#)
    }

    @Test func anOfferAnswerTrickleAndCloseReachTheOtherSideInOrder() async throws {
        let (created, offerEvent) = try await offer()
        #expect(created.state == .offered && created.version == 1 && created.mode == .relay)
        #expect(offerEvent.peerID == "bob" && offerEvent.type == "offer" && offerEvent.sessionID == "s1")

        let (answered, answerEvent) = try await db.answerSession("s1", by: "bob", sdp: "v=0\r\nm=audio 9 RTP/AVP 0\r\n",
                                                                 ifMatch: .version(1), eventTTL: 300, eventData: "{}")
        #expect(answered.state == .answered && answered.version == 2 && answered.answer != nil)
        #expect(answerEvent.peerID == "alice" && answerEvent.type == "answer")

        let (trickled, fromCaller) = try await db.trickle("s1", by: "alice", ifMatch: .any, eventTTL: 300, eventData: "{}")
        #expect(trickled.version == 3)
        let (_, fromCallee) = try await db.trickle("s1", by: "bob", ifMatch: .version(3), eventTTL: 300, eventData: "{}")
        #expect(fromCaller.peerID == "bob" && fromCallee.peerID == "alice")

        let closed = try await db.closeSession("s1", by: "bob", eventTTL: 300, eventData: "{}")
        #expect(closed.peerID == "alice" && closed.type == "closed")
        // Closed is gone for both parties.
        await #expect(throws: SessionError.notFound) {
            try await db.closeSession("s1", by: "alice", eventTTL: 300, eventData: "{}")
        }
        await #expect(throws: SessionError.notFound) {
            try await db.trickle("s1", by: "alice", ifMatch: .any, eventTTL: 300, eventData: "{}")
        }
        #expect(try await db.session("s1", for: "alice") == nil)

        let aliceEvents = try db.events(for: "alice", after: 0)
        #expect(aliceEvents.map(\.type) == ["answer", "candidates", "closed"])
        #expect(aliceEvents.map(\.id) == aliceEvents.map(\.id).sorted())
        #expect(try db.events(for: "bob", after: 0).map(\.type) == ["offer", "candidates"])
    }

    @Test func whatAChangeReturnsIsWhatItStored() async throws {
        // The records a change returns are built in memory, not read back: they must match.
        let (created, _) = try await offer("s1")
        #expect(try await db.session("s1", for: "alice") == created)
        let (answered, _) = try await db.answerSession("s1", by: "bob", sdp: "v=0\r\nm=audio 9 RTP/AVP 0\r\n",
                                                       ifMatch: .version(1), eventTTL: 300, eventData: "{}")
        #expect(try await db.session("s1", for: "bob") == answered)
        let (trickled, _) = try await db.trickle("s1", by: "bob", ifMatch: .version(2), eventTTL: 300, eventData: "{}")
        #expect(try await db.session("s1", for: "alice") == trickled)
    }

    @Test func aStoredEventNamesThePeersEventBeforeIt() async throws {
        // What a stream needs to send an event without reading: the event stored for the
        // same peer just before it, whatever was stored for other peers in between.
        let (_, first) = try await offer("s1")
        #expect(first.previousID == 0)
        let (_, forAlice) = try await db.answerSession("s1", by: "bob", sdp: "v=0\r\nm=audio 9 RTP/AVP 0\r\n",
                                                       ifMatch: .any, eventTTL: 300, eventData: "{}")
        #expect(forAlice.previousID == 0)
        let (_, second) = try await offer("s2")
        #expect(second.previousID == first.id && second.id > forAlice.id)
        let (_, third) = try await db.trickle("s1", by: "alice", ifMatch: .any, eventTTL: 300, eventData: "{}")
        #expect(third.previousID == second.id)
        // Events read back do not claim to know.
        #expect(try db.events(for: "bob", after: 0).allSatisfy { $0.previousID == nil })
        // Once bob acknowledged everything (the rows are gone), the next one starts afresh:
        // a stream at bob's cursor then reads instead of sending it as is, which is safe.
        _ = try db.events(for: "bob", after: third.id, deletingUpTo: third.id)
        let (_, fourth) = try await offer("s3")
        #expect(fourth.previousID == 0)
    }

    @Test func anOfferIsAdmittedByTheACLAndTheRateInItsOwnTransaction() async throws {
        func offer(_ id: String, _ admission: OfferAdmission) async throws {
            _ = try await db.createSession(id: id, caller: alice, callee: bob, mode: .auto, description: nil,
                                           offer: "v=0\r\nm=audio 9 RTP/AVP 0\r\n", offerTTL: 30, eventTTL: 300,
                                           eventData: "{}", admission: admission)
        }
        // alice and bob share no group: only an open ACL lets the offer through.
        await #expect(throws: SessionError.unreachable) { try await offer("s1", OfferAdmission(open: false, limit: 10)) }
        try await offer("s1", OfferAdmission(open: true, limit: 2))
        try await offer("s2", OfferAdmission(open: true, limit: 2))
        await #expect(throws: SessionError.tooManySessions) { try await offer("s3", OfferAdmission(open: true, limit: 2)) }
        // A minute later the window has room again.
        clock.advance(by: 61)
        try await offer("s3", OfferAdmission(open: true, limit: 2))
        // Refused offers left nothing behind.
        #expect(try db.events(for: "bob", after: 0).map(\.sessionID) == ["s1", "s2", "s3"])
    }

    @Test func onlyTheTwoPartiesSeeOrChangeASession() async throws {
        _ = try await offer()
        #expect(try await db.session("s1", for: "mallory") == nil)
        await #expect(throws: SessionError.notFound) {
            try await db.answerSession("s1", by: "mallory", sdp: "x", ifMatch: .any, eventTTL: 1, eventData: "{}")
        }
        await #expect(throws: SessionError.notFound) {
            try await db.trickle("s1", by: "mallory", ifMatch: .any, eventTTL: 1, eventData: "{}")
        }
        await #expect(throws: SessionError.notFound) {
            try await db.closeSession("s1", by: "mallory", eventTTL: 1, eventData: "{}")
        }
        await #expect(throws: SessionError.notFound) {
            try await db.closeSession("nope", by: "alice", eventTTL: 1, eventData: "{}")
        }
        #expect(try db.events(for: "alice", after: 0).isEmpty)
    }

    @Test func theCallerCannotAnswerAndAStaleETagIsRefused() async throws {
        _ = try await offer()
        await #expect(throws: SessionError.conflict("only the callee answers")) {
            try await db.answerSession("s1", by: "alice", sdp: "x", ifMatch: .any, eventTTL: 1, eventData: "{}")
        }
        await #expect(throws: SessionError.versionMismatch) {
            try await db.answerSession("s1", by: "bob", sdp: "x", ifMatch: .version(7), eventTTL: 1, eventData: "{}")
        }
        await #expect(throws: SessionError.malformedPrecondition) {
            try await db.answerSession("s1", by: "bob", sdp: "x", ifMatch: .malformed, eventTTL: 1, eventData: "{}")
        }
        await #expect(throws: SessionError.notFound) {
            try await db.answerSession("nope", by: "bob", sdp: "x", ifMatch: .malformed, eventTTL: 1, eventData: "{}")
        }
        // Nothing changed: still version 1, no answer, no event for the caller.
        let session = try #require(try await db.session("s1", for: "bob"))
        #expect(session.version == 1 && session.answer == nil && session.state == .offered)
        #expect(try db.events(for: "alice", after: 0).isEmpty)
    }

    @Test func anUnansweredOfferExpiresAndTheCallerHearsOfIt() async throws {
        _ = try await offer(ttl: 30)
        clock.advance(by: 29)
        #expect(try await db.expireOffers(eventTTL: 300, eventData: { _ in "{}" }).isEmpty)
        clock.advance(by: 1)
        let expired = try await db.expireOffers(eventTTL: 300, eventData: { #"{"session":"\#($0)"}"# })
        #expect(expired.map(\.peerID) == ["alice"] && expired.map(\.type) == ["expired"])
        #expect(expired.first?.data == #"{"session":"s1"}"#)
        #expect(try await db.session("s1", for: "alice")?.state == .expired)
        await #expect(throws: SessionError.conflict("the session is expired")) {
            try await db.answerSession("s1", by: "bob", sdp: "x", ifMatch: .any, eventTTL: 1, eventData: "{}")
        }
        #expect(try await db.expireOffers(eventTTL: 300, eventData: { _ in "{}" }).isEmpty)
    }

    @Test func onlyAnAcknowledgedCursorDeletesEventsAndExpiredOnesGo() async throws {
        for n in 1...3 { _ = try await offer("s\(n)") }
        let all = try db.events(for: "bob", after: 0)
        #expect(all.count == 3)
        // A stream reading on does not delete what it read.
        #expect(try db.events(for: "bob", after: all[1].id).count == 1)
        #expect(try db.events(for: "bob", after: 0).count == 3)
        // An acknowledged cursor does.
        #expect(try db.events(for: "bob", after: all[0].id, deletingUpTo: all[0].id).map(\.id) == [all[1].id, all[2].id])
        #expect(try db.events(for: "bob", after: 0).count == 2)
        // Expiry: hidden at once, deleted by the purge.
        clock.advance(by: 300)
        #expect(try db.events(for: "bob", after: 0).isEmpty)
        #expect(try await db.purgeExpiredEvents() == 2)
    }

    @Test func expiredEventsAndTokensArePurgedInBatches() async throws {
        for n in 1...7 { _ = try await offer("s\(n)") }
        _ = try await db.issueToken(for: alice, lifetime: 60, source: nil)
        clock.advance(by: 300)
        let (_, fresh) = try await offer("s8")  // made after the clock moved: not expired
        #expect(try await db.purgeExpiredEvents(batch: 3) == 7)  // batches of 3, 3 and 1
        #expect(try db.events(for: "bob", after: 0).map(\.id) == [fresh.id])
        #expect(try await db.pool.read { db in try Int.fetchOne(db, sql: "SELECT count(*) FROM login_tokens") } == 0)
        #expect(try await db.purgeExpiredEvents(batch: 3) == 0)
    }

    @Test func sessionsUnchangedForTheRetentionAreDeletedOnceTheyAreNoLongerWaiting() async throws {
        for n in 1...6 { _ = try await offer("s\(n)", ttl: 10) }
        clock.advance(by: 10)
        _ = try await db.answerSession("s1", by: "bob", sdp: "v=0\r\nm=audio 9 RTP/AVP 0\r\n",
                                       ifMatch: .any, eventTTL: 300, eventData: "{}")
        _ = try await db.closeSession("s2", by: "alice", eventTTL: 300, eventData: "{}")
        clock.advance(by: 95)
        #expect(try await db.purgeOldSessions(retention: 100, batch: 2) == 0)  // nothing unchanged that long
        #expect(try await db.expireOffers(eventTTL: 300, eventData: { _ in "{}" }).count == 4)  // s3…s6, at 105 s
        clock.advance(by: 10)
        // s1 (answered) and s2 (closed) are unchanged for 105 s; s3…s6 expired 10 s ago.
        #expect(try await db.purgeOldSessions(retention: 100, batch: 1) == 2)  // one per transaction
        #expect(try await db.session("s1", for: "alice") == nil)
        #expect(try await db.session("s3", for: "alice")?.state == .expired)
        clock.advance(by: 100)
        #expect(try await db.purgeOldSessions(retention: 100, batch: 3) == 4)
        #expect(try await db.pool.read { db in try Int.fetchOne(db, sql: "SELECT count(*) FROM sessions") } == 0)
    }

    @Test func aWaitingOfferOrASessionYoungerThanAMinuteIsKept() async throws {
        _ = try await offer("waiting", ttl: 3600)
        clock.advance(by: 5)
        _ = try await offer("young", ttl: 3600)
        _ = try await db.closeSession("young", by: "alice", eventTTL: 300, eventData: "{}")
        clock.advance(by: 30)
        // Retention 1 s: "young" is closed and unchanged for 30 s, but the per-minute session
        // limit still counts it; "waiting" has not expired.
        #expect(try await db.purgeOldSessions(retention: 1) == 0)
        clock.advance(by: 30)
        #expect(try await db.purgeOldSessions(retention: 1) == 1)
        #expect(try await db.session("waiting", for: "alice")?.state == .offered)
    }

    @Test func theExpiryAndRetentionQueriesUseTheirIndexes() async throws {
        func plan(_ sql: String) async throws -> String {
            try await db.pool.read { db in
                try Row.fetchAll(db, sql: "EXPLAIN QUERY PLAN " + sql).map { $0["detail"] as String }.joined(separator: "; ")
            }
        }
        // The pending index holds only waiting offers, and the expiry query can use it.
        #expect(try await plan("SELECT id, caller FROM sessions WHERE state = 'offered' AND offer_expires_at <= 5")
            .contains("USING INDEX sessions_pending"))
        // The purges go through the oldest rows by rowid, with no index of their own to keep.
        for table in ["events", "sessions"] {
            #expect(try await plan("SELECT rowid FROM \(table) WHERE rowid > 1 AND rowid < 9 AND (created_at <= 5) ORDER BY rowid LIMIT 3")
                .contains("SEARCH \(table) USING INTEGER PRIMARY KEY (rowid>? AND rowid<?)"))
            #expect(try await plan("DELETE FROM \(table) WHERE rowid BETWEEN 1 AND 9 AND (created_at <= 5)")
                .contains("USING INTEGER PRIMARY KEY (rowid>? AND rowid<?)"))
        }
        let indexes = try await db.pool.read { db in
            try String.fetchAll(db, sql: "SELECT name FROM sqlite_schema WHERE type = 'index' AND tbl_name IN ('events', 'sessions')")
        }
        #expect(!indexes.contains("sessions_by_update") && !indexes.contains("events_by_expiry"))
    }

    @Test func aPurgeCallStopsAtItsBudgetAndTheNextGoesOn() async throws {
        for n in 1...5 { _ = try await offer("s\(n)") }
        clock.advance(by: 300)
        // No time at all: one batch, then the call returns.
        #expect(try await db.deleteOldestRows("events", before: .max, where: "expires_at <= ?", [db.unixNow],
                                              batch: 2, budget: .zero) == 2)
        #expect(try await db.deleteOldestRows("events", before: .max, where: "expires_at <= ?", [db.unixNow],
                                              batch: 2) == 3)
    }

    @Test func thePurgesTakeTheOldestRowsAndStopAtTheFirstKeptOne() async throws {
        // Three expired events, then one that lives longer (as if stored before a restart with
        // a longer TTL), then an expired one behind it: the purge stops at the live one.
        for n in 1...3 { _ = try await offer("s\(n)") }
        let (_, longLived) = try await offer("s4")
        try await db.pool.write { db in
            try db.execute(sql: "UPDATE events SET expires_at = expires_at + 1000 WHERE id = ?", arguments: [longLived.id])
        }
        _ = try await offer("s5")
        // A purge call may stop at its time budget (a slow machine, a sanitizer build): calls
        // go on until one finds nothing, as the server's next passes would.
        func purgeAll(_ purge: () async throws -> Int) async throws -> Int {
            var total = 0
            while case let purged = try await purge(), purged > 0 { total += purged }
            return total
        }
        clock.advance(by: 300)
        #expect(try await purgeAll { try await db.purgeExpiredEvents(batch: 2) } == 3)  // batches of 2 and 1
        #expect(try db.events(for: "bob", after: 0).map(\.id) == [longLived.id])
        clock.advance(by: 1000)
        #expect(try await purgeAll { try await db.purgeExpiredEvents(batch: 2) } == 2)
        #expect(try await db.pool.read { db in try Int.fetchOne(db, sql: "SELECT count(*) FROM events") } == 0)
        #expect(try await db.purgeExpiredEvents(batch: 2) == 0)  // an empty table
        // Sessions: a kept one (still waiting) among old ones does not stop the purge.
        try await db.pool.write { db in try db.execute(sql: "UPDATE sessions SET state = 'closed' WHERE id <> 's2'") }
        try await db.pool.write { db in try db.execute(sql: "UPDATE sessions SET state = 'offered' WHERE id = 's2'") }
        #expect(try await purgeAll { try await db.purgeOldSessions(retention: 100, batch: 1) } == 4)
        let left = try await db.pool.read { db in try String.fetchAll(db, sql: "SELECT id FROM sessions") }
        #expect(left == ["s2"])
    }

    @Test func removingAPeerTakesItsSessionsAndEventsWithIt() async throws {
        _ = try await offer()
        try db.removePeer(bob)
        #expect(try await db.session("s1", for: "alice") == nil)
        #expect(try db.events(for: "bob", after: 0).isEmpty)
    }

    /// A mode the enum does not have cannot be passed; the schema refuses it from sqlite3 too,
    /// and a row that has one anyway (the checks turned off) is no session.
    @Test func aLongDescriptionOrUnknownModeIsRefusedByTheSchema() async throws {
        #expect(throws: (any Error).self) {
            try db.pool.write { db in
                try db.execute(sql: """
                    INSERT INTO sessions (id, caller, callee, mode, state, offer, created_at, updated_at, offer_expires_at)
                    VALUES ('s8', 'alice', 'bob', 'carrier-pigeon', 'offered', 'v=0', 0, 0, 0)
                    """)
            }
        }
        try await db.pool.writeWithoutTransaction { db in
            try db.execute(sql: "PRAGMA ignore_check_constraints = ON")
            try db.execute(sql: """
                INSERT INTO sessions (id, caller, callee, mode, state, offer, created_at, updated_at, offer_expires_at)
                VALUES ('s8', 'alice', 'bob', 'carrier-pigeon', 'offered', 'v=0', 0, 0, 0)
                """)
            try db.execute(sql: "PRAGMA ignore_check_constraints = OFF")
        }
        #expect(try await db.session("s8", for: "alice") == nil)
        await #expect(throws: (any Error).self) {
            try await db.createSession(id: "s9", caller: alice, callee: bob, mode: .auto,
                                       description: String(repeating: "x", count: 257),
                                       offer: "v=0", offerTTL: 1, eventTTL: 1, eventData: "{}")
        }
        #expect(try await db.session("s9", for: "alice") == nil)
        #expect(try db.events(for: "bob", after: 0).isEmpty)
    }
}
