import Foundation
import GRDB

/// How a session's peers may connect (`Switchboard-Connect-Mode`): directly or through the
/// relay (`auto`), directly only (`p2p`), through the relay only (`relay`).
package enum SessionMode: String, Sendable, CaseIterable, Encodable {
    case auto, p2p, relay
}

/// Where a session is: an offer waits for its answer (or expires), then it is answered until
/// a party closes it.
package enum SessionState: String, Sendable, CaseIterable, Encodable {
    case offered, answered, closed, expired
}

/// SessionRecord is a brokered session as stored.
package struct SessionRecord: Sendable, Equatable {
    package var id: String
    package var caller: String
    package var callee: String
    package var mode: SessionMode
    package var description: String?
    package var state: SessionState
    package var offer: String
    package var answer: String?
    package var version: Int64
}

/// EventRecord is one event on a peer's stream.
package struct EventRecord: Sendable, Equatable {
    package var id: Int64
    package var peerID: String
    package var type: String
    package var sessionID: String?
    package var data: String
    /// On an event just stored: the id of the event stored for the same peer before it (0
    /// when there is none), read in the same transaction. A stream whose cursor is exactly
    /// there can send this event without reading the Store. Nil on events read back.
    package var previousID: Int64? = nil
}

/// SessionError is what a session change can run into.
package enum SessionError: Error, Equatable {
    case notFound
    case conflict(String)
    case versionMismatch
    case malformedPrecondition
    /// An offer to a peer the caller may not reach (or that does not exist).
    case unreachable
    /// An offer beyond the caller's sessions per window.
    case tooManySessions
}

/// Who may offer: the ACL (`open` or groups and rules) and at most `limit` new sessions per
/// caller in `window` seconds.
package struct OfferAdmission: Sendable {
    /// Seconds the session limit counts back (the "per minute" of `--sessions-per-minute`).
    package static let standardWindow = 60

    package var open: Bool
    package var limit: Int
    package var window: Int

    package init(open: Bool, limit: Int, window: Int = standardWindow) {
        self.open = open
        self.limit = limit
        self.window = window
    }
}

/// What an If-Match asks for: any version, one version, an ETag in this API's form that names
/// no version a session can have (too large, or digits not as the server writes them: a stale
/// tag, 412), or nothing this API understands (judged only once the session is known to exist,
/// so that a missing session is a 404).
package enum VersionPrecondition: Sendable, Equatable {
    case any
    case version(Int64)
    case noVersion
    case malformed

    func check(_ version: Int64) throws(SessionError) {
        switch self {
        case .any: return
        case .version(let wanted): if wanted != version { throw .versionMismatch }
        case .noVersion: throw .versionMismatch
        case .malformed: throw .malformedPrecondition
        }
    }
}

extension SwitchboardDatabase {
    /// Stores a new offer and the callee's `offer` event, in one transaction. With
    /// `admission`, the same transaction first checks that the caller may reach the callee
    /// (`unreachable` if not) and is within its rate (`tooManySessions`): on the writer's
    /// connection those reads find their pages cached, where a read transaction of its own
    /// would start from an empty cache after every commit.
    package func createSession(
        id: String, caller: PeerID, callee: PeerID, mode: SessionMode, description: String?, offer: String,
        offerTTL: Int, eventTTL: Int, eventData: String, admission: OfferAdmission? = nil
    ) async throws -> (SessionRecord, EventRecord) {
        let now = unixNow
        return try await writeInPlace { db in
            if let admission {
                guard try Self.mayReach(db, from: caller, to: callee, open: admission.open) else {
                    throw SessionError.unreachable
                }
                let recent = try Int.fetchOne(
                    db.cachedStatement(sql: "SELECT count(*) FROM sessions WHERE caller = ? AND created_at > ?"),
                    arguments: [caller.rawValue, now - Int64(admission.window)]) ?? 0
                guard recent < admission.limit else { throw SessionError.tooManySessions }
            }
            try db.cachedStatement(sql: """
                INSERT INTO sessions (id, caller, callee, mode, description, state, offer, version, created_at, updated_at, offer_expires_at)
                VALUES (?, ?, ?, ?, ?, 'offered', ?, 1, ?, ?, ?)
                """).execute(arguments: [id, caller.rawValue, callee.rawValue, mode.rawValue, description, offer, now, now, now + Int64(offerTTL)])
            let event = try Self.insertEvent(db, peer: callee.rawValue, type: "offer", session: id, data: eventData,
                                             now: now, ttl: eventTTL)
            // What was just inserted; reading it back would only copy the SDP again.
            let session = SessionRecord(id: id, caller: caller.rawValue, callee: callee.rawValue, mode: mode,
                                        description: description, state: .offered, offer: offer, answer: nil,
                                        version: 1)
            return (session, event)
        }
    }

    /// A session, if `peer` is one of its two parties and it has not been closed (DELETE
    /// removes a session for its parties; the row stays for admins).
    package func session(_ id: String, for peer: String) async throws -> SessionRecord? {
        try readInPlace { db in try Self.fetchSession(db, id, for: peer) }
    }

    /// The callee's answer: the session becomes `answered`; the caller gets an `answer` event.
    package func answerSession(
        _ id: String, by peer: String, sdp: String, ifMatch: VersionPrecondition, eventTTL: Int, eventData: String
    ) async throws -> (SessionRecord, EventRecord) {
        let now = unixNow
        return try await writeInPlace { db in
            guard let session = try Self.fetchSession(db, id, for: peer) else { throw SessionError.notFound }
            guard session.callee == peer else { throw SessionError.conflict("only the callee answers") }
            try ifMatch.check(session.version)
            guard session.state == .offered else { throw SessionError.conflict("the session is \(session.state.rawValue)") }
            try db.cachedStatement(sql: """
                UPDATE sessions SET state = 'answered', answer = ?, version = version + 1, updated_at = ? WHERE id = ?
                """).execute(arguments: [sdp, now, id])
            let event = try Self.insertEvent(db, peer: session.caller, type: "answer", session: id, data: eventData,
                                             now: now, ttl: eventTTL)
            var answered = session
            answered.state = .answered
            answered.answer = sdp
            answered.version += 1
            return (answered, event)
        }
    }

    /// Trickled candidates from one party go to the other as a `candidates` event.
    package func trickle(
        _ id: String, by peer: String, ifMatch: VersionPrecondition, eventTTL: Int, eventData: String
    ) async throws -> (SessionRecord, EventRecord) {
        let now = unixNow
        return try await writeInPlace { db in
            guard let session = try Self.fetchSession(db, id, for: peer) else { throw SessionError.notFound }
            try ifMatch.check(session.version)
            guard session.state == .offered || session.state == .answered else {
                throw SessionError.conflict("the session is \(session.state.rawValue)")
            }
            try db.cachedStatement(sql: "UPDATE sessions SET version = version + 1, updated_at = ? WHERE id = ?").execute(arguments: [now, id])
            let other = session.caller == peer ? session.callee : session.caller
            let event = try Self.insertEvent(db, peer: other, type: "candidates", session: id, data: eventData,
                                             now: now, ttl: eventTTL)
            var trickled = session
            trickled.version += 1
            return (trickled, event)
        }
    }

    /// Either party ends the session; the other gets a `closed` event. After this the
    /// session is not found for either party.
    package func closeSession(_ id: String, by peer: String, eventTTL: Int, eventData: String) async throws -> EventRecord {
        let now = unixNow
        return try await writeInPlace { db in
            guard let session = try Self.fetchSession(db, id, for: peer) else { throw SessionError.notFound }
            try db.cachedStatement(sql: "UPDATE sessions SET state = 'closed', version = version + 1, updated_at = ? WHERE id = ?").execute(arguments: [now, id])
            let other = session.caller == peer ? session.callee : session.caller
            return try Self.insertEvent(db, peer: other, type: "closed", session: id, data: eventData, now: now, ttl: eventTTL)
        }
    }

    /// Offers nobody answered in time: `expired`, with an `expired` event for the caller.
    package func expireOffers(eventTTL: Int, eventData: @escaping @Sendable (String) -> String) async throws -> [EventRecord] {
        let now = unixNow
        return try await writeInPlace { db in
            let stale = try Row.fetchAll(db.cachedStatement(sql: """
                SELECT id, caller FROM sessions WHERE state = 'offered' AND offer_expires_at <= ?
                """), arguments: [now])
            var events: [EventRecord] = []
            for row in stale {
                let id: String = row["id"]
                try db.cachedStatement(sql: "UPDATE sessions SET state = 'expired', version = version + 1, updated_at = ? WHERE id = ?").execute(arguments: [now, id])
                events.append(try Self.insertEvent(db, peer: row["caller"], type: "expired", session: id,
                                                   data: eventData(id), now: now, ttl: eventTTL))
            }
            return events
        }
    }

    /// Events for `peer` after `cursor`, oldest first; first, those up to `deletingUpTo` are
    /// deleted (0: none). That is what the peer acknowledged (Last-Event-ID, `after=`) and
    /// every other open stream of the peer has too (`EventHub.acknowledge`). A stream's own
    /// progress is not an acknowledgement — the connection may be dead without the server
    /// knowing yet.
    package func events(for peer: String, after cursor: Int64, deletingUpTo acknowledged: Int64 = 0, limit: Int = 100)
        throws -> [EventRecord]
    {
        let now = unixNow
        let query = """
            SELECT id, peer_id, type, session_id, data FROM events
             WHERE peer_id = ? AND id > ? AND expires_at > ? ORDER BY id LIMIT ?
            """
        let arguments: StatementArguments = [peer, cursor, now, limit]
        guard acknowledged > 0 else {
            // Reading on: no write transaction, so streams do not queue behind writers.
            return try readInPlace { db in try Row.fetchAll(db.cachedStatement(sql: query), arguments: arguments).map(Self.event) }
        }
        // Deleting what was acknowledged can wait for a later call when another process holds
        // the write lock: this may be on an event loop, which never waits for it.
        let read = { (db: Database) in try Row.fetchAll(db.cachedStatement(sql: query), arguments: arguments).map(Self.event) }
        if let events = try attemptWrite({ db in
            try Self.deleteEvents(db, of: peer, upTo: acknowledged)
            return try read(db)
        }) { return events }
        return try readInPlace(read)
    }

    /// The peer has seen everything up to `cursor`: those events are deleted, unless another
    /// process holds the write lock; then the next acknowledgement (which covers these) or
    /// their expiry deletes them, and the stream that sent this one goes on undisturbed.
    package func acknowledgeEvents(for peer: String, upTo cursor: Int64) async throws {
        _ = try attemptWrite { db in try Self.deleteEvents(db, of: peer, upTo: cursor) }
    }

    /// Drops expired events and tokens; returns how many events went. Runs in transactions
    /// of at most `batch` rows.
    ///
    /// Events are stored oldest first with one TTL, so the expired ones are the first rows of
    /// the table: the purge deletes from the start up to the first event that has not expired
    /// (migration 0007 dropped the expiry index this used to take, a WAL page per event).
    /// After a restart with a shorter TTL, events behind an older, longer-lived one wait for
    /// it; readers never see an expired event either way.
    @discardableResult
    package func purgeExpiredEvents(batch: Int = 50) async throws -> Int {
        try await purgeExpiredTokens()
        let now = unixNow
        let end = try await firstRow(of: "events", where: "expires_at > ?", [now])
        return try await deleteOldestRows("events", before: end, where: "expires_at <= ?", [now], batch: batch)
    }

    /// Deletes sessions that have not changed for `retention` seconds: answered (a call
    /// nobody closed included), closed or expired ones; returns how many went. A waiting offer
    /// is left to expire first, so its caller hears of it. A session is kept at least a
    /// minute whatever the retention, because the per-minute session limit counts the
    /// caller's recent rows. Its events go with the event TTL as usual.
    ///
    /// Sessions are stored oldest first, and one unchanged for the retention was made before
    /// it: the purge looks only at the sessions made before then, from the start of the table.
    @discardableResult
    package func purgeOldSessions(retention: Int, batch: Int = 25) async throws -> Int {
        let now = unixNow
        let changedBy = now - Int64(retention), madeBy = now - Int64(OfferAdmission.standardWindow)
        let end = try await firstRow(of: "sessions", where: "created_at > ?", [min(changedBy, madeBy)])
        return try await deleteOldestRows(
            "sessions", before: end, where: "updated_at <= ? AND created_at <= ? AND state <> 'offered'",
            [changedBy, madeBy], batch: batch)
    }

    /// The rowid of the first row of `table` (oldest first) that matches `condition`, or one
    /// past the last row when none does. A scan from the start that stops there, on a reader.
    func firstRow(of table: String, where condition: String, _ arguments: StatementArguments) async throws -> Int64 {
        try await pool.read { db in
            if let first = try Int64.fetchOne(
                db, sql: "SELECT rowid FROM \(table) WHERE \(condition) ORDER BY rowid LIMIT 1", arguments: arguments) {
                return first
            }
            return (try Int64.fetchOne(db, sql: "SELECT max(rowid) FROM \(table)") ?? 0) + 1
        }
    }

    /// Deletes the rows of `table` before rowid `end` that match `condition`, oldest first,
    /// `batch` rows per write transaction, with a short pause between transactions. Each
    /// batch goes on from where the last one stopped, so rows that are kept are looked at
    /// once.
    ///
    /// Deleting a session or an event touches random pages of the per-peer indexes, as
    /// storing it did: at a thousand sessions a second, a second's worth of sessions in
    /// transactions of 100 held the write lock for milliseconds ten times a second, and offers
    /// waited behind each (p99 13.7 ms while purging). Small transactions with pauses spread
    /// that work over the second, between the requests' own writes.
    ///
    /// A call stops after `budget` and returns what it deleted; the next one (the purge runs
    /// every second) goes on. A backlog (after the server was down, or a shorter retention)
    /// is then cleared over many seconds, and the housekeeping that shares the purges' turn,
    /// expiring unanswered offers, still runs every second or so.
    func deleteOldestRows(_ table: String, before end: Int64, where condition: String,
                          _ arguments: StatementArguments, batch: Int,
                          pause: Duration = .milliseconds(2), budget: Duration = .milliseconds(250)) async throws -> Int {
        let deadline = ContinuousClock.now + budget
        let select = "SELECT rowid FROM \(table) WHERE rowid > ? AND rowid < ? AND (\(condition)) ORDER BY rowid LIMIT ?"
        let delete = "DELETE FROM \(table) WHERE rowid BETWEEN ? AND ? AND (\(condition))"
        var after = Int64.min
        var total = 0
        while true {
            let (deleted, last, full) = try await writeInPlace(timeout: Self.housekeepingTimeout) { db -> (Int, Int64?, Bool) in
                let rows = try Int64.fetchAll(db.cachedStatement(sql: select), arguments: [after, end] + arguments + [batch])
                guard let first = rows.first, let last = rows.last else { return (0, nil, false) }
                try db.cachedStatement(sql: delete).execute(arguments: [first, last] + arguments)
                return (db.changesCount, last, rows.count == batch)
            }
            total += deleted
            guard let last, full, ContinuousClock.now < deadline else { return total }
            after = last
            try await Task.sleep(for: pause)
        }
    }

    /// Deletes the rows of `table` that match `condition`, `batch` rows per write transaction,
    /// until none is left; between batches other writes get their turn. For rows found by an
    /// index of their own and kept in no useful order (login tokens, by expiry); events and
    /// sessions, stored oldest first, go through `deleteOldestRows`.
    func deleteInBatches(_ table: String, key: String, where condition: String,
                                 _ arguments: StatementArguments, batch: Int) async throws -> Int {
        let sql = "DELETE FROM \(table) WHERE \(key) IN (SELECT \(key) FROM \(table) WHERE \(condition) LIMIT ?)"
        var total = 0
        while true {
            let deleted = try await writeInPlace(timeout: Self.housekeepingTimeout) { db in
                try db.cachedStatement(sql: sql).execute(arguments: arguments + [batch])
                return db.changesCount
            }
            total += deleted
            if deleted < batch { return total }
            try Task.checkCancellation()
            await Task.yield()
        }
    }

    static func deleteEvents(_ db: Database, of peer: String, upTo cursor: Int64) throws {
        try db.cachedStatement(sql: "DELETE FROM events WHERE peer_id = ? AND id <= ?").execute(arguments: [peer, cursor])
    }

    static func insertEvent(_ db: Database, peer: String, type: String, session: String?, data: String,
                            now: Int64, ttl: Int) throws -> EventRecord {
        let previous = try Int64.fetchOne(
            db.cachedStatement(sql: "SELECT max(id) FROM events WHERE peer_id = ?"), arguments: [peer]) ?? 0
        try db.cachedStatement(sql: """
            INSERT INTO events (peer_id, type, session_id, data, created_at, expires_at) VALUES (?, ?, ?, ?, ?, ?)
            """).execute(arguments: [peer, type, session, data, now, now + Int64(ttl)])
        return EventRecord(id: db.lastInsertedRowID, peerID: peer, type: type, sessionID: session, data: data,
                           previousID: previous)
    }

    /// A session `peer` is a party to and has not closed.
    static func fetchSession(_ db: Database, _ id: String, for peer: String) throws -> SessionRecord? {
        guard let session = try fetchSession(db, id), session.caller == peer || session.callee == peer,
              session.state != .closed else { return nil }
        return session
    }

    /// The schema's CHECKs keep mode and state to the enums' values; a row that has others
    /// anyway (written with the checks off) is no session anyone can use.
    static func fetchSession(_ db: Database, _ id: String) throws -> SessionRecord? {
        try Row.fetchOne(db.cachedStatement(sql: "SELECT * FROM sessions WHERE id = ?"), arguments: [id]).flatMap { row in
            guard let mode = SessionMode(rawValue: row["mode"]), let state = SessionState(rawValue: row["state"]) else {
                return nil
            }
            return SessionRecord(id: row["id"], caller: row["caller"], callee: row["callee"], mode: mode,
                                 description: row["description"], state: state, offer: row["offer"],
                                 answer: row["answer"], version: row["version"])
        }
    }

    static func event(_ row: Row) -> EventRecord {
        EventRecord(id: row["id"], peerID: row["peer_id"], type: row["type"], sessionID: row["session_id"],
                    data: row["data"])
    }
}
