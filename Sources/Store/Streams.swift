import Crypto
import Foundation
import Wire
import GRDB

/// MediaStream is a live stream the media edge ingests over RTP/UDP and plays out over WHEP.
package struct MediaStream: Sendable, Equatable {
    package var name: String
    package var videoPort: Int?
    package var audioPort: Int?
    /// Hex SHA-256 of the bearer token viewers must present, when the stream has one.
    package var tokenSHA256: String?
    /// The addresses ingest takes RTP from; nil: the first sender, until it goes silent.
    package var source: CIDR?
    package var createdAt: Date

    package init(name: String, videoPort: Int?, audioPort: Int?, tokenSHA256: String? = nil, source: CIDR? = nil,
                 createdAt: Date = Date()) {
        self.name = name
        self.videoPort = videoPort
        self.audioPort = audioPort
        self.tokenSHA256 = tokenSHA256
        self.source = source
        self.createdAt = createdAt
    }

    /// Whether `token` (from `Authorization: Bearer`) opens this stream.
    package func admits(token: String?) -> Bool {
        guard let tokenSHA256 else { return true }
        guard let token else { return false }
        return constantTimeEquals(SwitchboardDatabase.tokenHash(token).utf8, tokenSHA256.utf8)
    }
}

/// ViewerRecord is a WHEP viewer as the media edge reports it to the Store.
package struct ViewerRecord: Sendable, Equatable {
    package var id: String
    package var stream: String
    package var remoteAddress: String?
    package var state: String
    package var startedAt: Date
    package var packetsSent: Int
    package var bytesSent: Int
    package var nacks: Int
    package var retransmitted: Int
    package var plis: Int
    package var packetsLost: Int
    package var jitter: Int

    package init(id: String, stream: String, remoteAddress: String?, state: String, startedAt: Date,
                 packetsSent: Int = 0, bytesSent: Int = 0, nacks: Int = 0, retransmitted: Int = 0, plis: Int = 0,
                 packetsLost: Int = 0, jitter: Int = 0) {
        self.id = id
        self.stream = stream
        self.remoteAddress = remoteAddress
        self.state = state
        self.startedAt = startedAt
        self.packetsSent = packetsSent
        self.bytesSent = bytesSent
        self.nacks = nacks
        self.retransmitted = retransmitted
        self.plis = plis
        self.packetsLost = packetsLost
        self.jitter = jitter
    }
}

extension SwitchboardDatabase {
    /// Stream names: 1–64 characters from A-Z a-z 0-9 . _ -, not starting with "." (they
    /// are URL path segments, where "." and ".." mean something else).
    package static func isValidStreamName(_ name: String) -> Bool {
        PeerID.isValidName(name) && !name.hasPrefix(".")
    }

    /// Registers a stream. With `withToken`, a random bearer token is generated, its hash
    /// stored, and the token returned (shown once).
    @discardableResult
    package func addStream(name: String, videoPort: Int?, audioPort: Int?, withToken: Bool = false, source: CIDR? = nil,
                           actor: Actor = .cli) throws -> String?
    {
        guard Self.isValidStreamName(name) else { throw StoreError.invalidStreamName(name) }
        guard videoPort != nil || audioPort != nil else { throw StoreError.streamNeedsPort }
        for port in [videoPort, audioPort].compactMap({ $0 }) where !(1...65535).contains(port) {
            throw StoreError.invalidPort(port)
        }
        if let videoPort, videoPort == audioPort { throw StoreError.portInUse(videoPort) }
        var token: String?
        if withToken {
            token = Base64URL.encode(randomBytes(32))
        }
        let now = unixNow
        try writeWaiting { db in
            if try Bool.fetchOne(db, sql: "SELECT EXISTS (SELECT 1 FROM streams WHERE name = ?)", arguments: [name]) == true {
                throw StoreError.streamExists(name)
            }
            for port in [videoPort, audioPort].compactMap({ $0 }) {
                let taken = try Bool.fetchOne(
                    db, sql: "SELECT EXISTS (SELECT 1 FROM streams WHERE video_port = ?1 OR audio_port = ?1)",
                    arguments: [port]) ?? false
                if taken { throw StoreError.portInUse(port) }
            }
            try db.execute(
                sql: """
                    INSERT INTO streams (name, video_port, audio_port, token_sha256, source_cidr, created_at)
                    VALUES (?, ?, ?, ?, ?, ?)
                    """,
                arguments: [name, videoPort, audioPort, token.map(Self.tokenHash), source?.description, now])
            var detail = ["name": name]
            if let videoPort { detail["video_port"] = String(videoPort) }
            if let audioPort { detail["audio_port"] = String(audioPort) }
            if token != nil { detail["token"] = "yes" }
            if let source { detail["source"] = source.description }
            try Self.audit(db, at: now, actor: actor, action: "stream.add", peer: nil, detail: detail)
        }
        return token
    }

    package func removeStream(name: String, actor: Actor = .cli) throws {
        let now = unixNow
        try writeWaiting { db in
            try db.execute(sql: "DELETE FROM streams WHERE name = ?", arguments: [name])
            guard db.changesCount == 1 else { throw StoreError.streamNotFound(name) }
            try Self.audit(db, at: now, actor: actor, action: "stream.remove", peer: nil, detail: ["name": name])
        }
    }

    package func streams() async throws -> [MediaStream] {
        try await pool.read { db in
            try Row.fetchAll(db, sql: "SELECT * FROM streams ORDER BY name").map { row in
                MediaStream(name: row["name"], videoPort: row["video_port"], audioPort: row["audio_port"],
                            tokenSHA256: row["token_sha256"],
                            source: (row["source_cidr"] as String?).flatMap { CIDR($0) },
                            createdAt: Date(timeIntervalSince1970: TimeInterval(row["created_at"] as Int64)))
            }
        }
    }

    /// Replaces the live viewer rows with `live` and moves `ended` viewers to the history, in
    /// one transaction (the media edge calls this every few seconds, off the packet path).
    package func recordViewers(live: [ViewerRecord], ended: [(record: ViewerRecord, reason: String)]) async throws {
        let now = unixNow
        try await write(timeout: Self.housekeepingTimeout) { db in
            try db.execute(sql: "DELETE FROM media_viewers")
            for viewer in live {
                try db.cachedStatement(sql: """
                    INSERT INTO media_viewers (id, stream, remote_address, state, started_at, packets_sent, bytes_sent,
                        nacks, retransmitted, plis, packets_lost, jitter, updated_at)
                    VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
                    """).execute(arguments: [
                        viewer.id, viewer.stream, viewer.remoteAddress, viewer.state,
                        Int64(viewer.startedAt.timeIntervalSince1970), viewer.packetsSent, viewer.bytesSent,
                        viewer.nacks, viewer.retransmitted, viewer.plis, viewer.packetsLost, viewer.jitter, now])
            }
            for (viewer, reason) in ended {
                try db.cachedStatement(sql: """
                    INSERT INTO media_viewer_history (viewer, stream, remote_address, started_at, ended_at, end_reason,
                        packets_sent, bytes_sent, nacks, retransmitted, plis, packets_lost)
                    VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
                    """).execute(arguments: [
                        viewer.id, viewer.stream, viewer.remoteAddress, Int64(viewer.startedAt.timeIntervalSince1970),
                        now, reason, viewer.packetsSent, viewer.bytesSent, viewer.nacks, viewer.retransmitted,
                        viewer.plis, viewer.packetsLost])
            }
        }
    }

    package func viewerHistory() throws -> [(record: ViewerRecord, reason: String)] {
        try pool.read { db in
            try Row.fetchAll(db, sql: "SELECT * FROM media_viewer_history ORDER BY id").map { row in
                (ViewerRecord(id: row["viewer"], stream: row["stream"], remoteAddress: row["remote_address"],
                              state: "ended", startedAt: Date(timeIntervalSince1970: TimeInterval(row["started_at"] as Int64)),
                              packetsSent: row["packets_sent"], bytesSent: row["bytes_sent"], nacks: row["nacks"],
                              retransmitted: row["retransmitted"], plis: row["plis"], packetsLost: row["packets_lost"]),
                 row["end_reason"])
            }
        }
    }
}
