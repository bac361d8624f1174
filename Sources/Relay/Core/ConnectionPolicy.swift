import Admission
import Wire

/// ConnectionPolicy decides which TURN TCP/TLS connections the relay keeps. A connection
/// costs a descriptor and buffers before it has proved anything, so: too many from one
/// source (an IPv4 address or IPv6 /64) or in all are refused at accept; one that has not
/// sent a request that passed MESSAGE-INTEGRITY within `authTimeout` of its accept (a TLS
/// handshake included) is closed; one that holds no allocation is closed `idleTimeout` after
/// its last authenticated request or the end of its allocation (unauthenticated Binding
/// requests do not keep it open). No I/O: the engine passes the time and closes what this
/// returns; deadlines are reached when `now >= deadline`.
struct ConnectionPolicy {
    struct Limits {
        /// Milliseconds from accept to the first authenticated request.
        var authTimeout: Int64 = 5_000
        /// Milliseconds an authenticated connection may go without an allocation.
        var idleTimeout: Int64 = 30_000
        /// Connections per source; 0 means no limit.
        var perSource = 128
        /// Connections in all; 0 means no limit.
        var total = 10_000
    }

    enum Refusal: String, CaseIterable {
        case perSource = "per_source"
        case total
    }

    enum CloseReason: String, CaseIterable {
        case authTimeout = "auth_timeout"
        case idle
    }

    struct Counters {
        var refusedPerSource = 0
        var refusedTotal = 0
        var authTimeouts = 0
        var idleClosed = 0
    }

    private struct Connection {
        var source: ClientSource
        var authenticated = false
        var allocated = false
    }

    let limits: Limits
    private(set) var counters = Counters()
    private var connections: [FiveTuple: Connection] = [:]
    private var perSource: SourceCounts
    /// Only connections that can time out: a connection with an allocation has none, so a
    /// sweep costs what is pending, not what is open.
    private var deadlines: [FiveTuple: (at: Int64, reason: CloseReason)] = [:]

    init(limits: Limits) {
        self.limits = limits
        perSource = SourceCounts(limit: limits.perSource)
    }

    var count: Int { connections.count }
    var pendingCount: Int { deadlines.count }
    func connections(from source: IPAddress) -> Int { perSource.count(ClientSource(source)) }

    /// A connection was accepted: nil to keep it, or why it must be closed at once.
    mutating func admit(_ fiveTuple: FiveTuple, nowMillis: Int64) -> Refusal? {
        let source = ClientSource(fiveTuple.client.ip)
        if limits.total > 0, connections.count >= limits.total {
            counters.refusedTotal += 1
            return .total
        }
        guard perSource.acquire(source) else {
            counters.refusedPerSource += 1
            return .perSource
        }
        connections[fiveTuple] = Connection(source: source)
        deadlines[fiveTuple] = (nowMillis + limits.authTimeout, .authTimeout)
        return nil
    }

    /// A request on the connection passed MESSAGE-INTEGRITY.
    mutating func authenticated(_ fiveTuple: FiveTuple, nowMillis: Int64) {
        guard connections[fiveTuple] != nil else { return }
        connections[fiveTuple]!.authenticated = true
        if !connections[fiveTuple]!.allocated { deadlines[fiveTuple] = (nowMillis + limits.idleTimeout, .idle) }
    }

    /// The connection's allocation is installed: it stays as long as the allocation does.
    mutating func allocationStarted(_ fiveTuple: FiveTuple) {
        guard connections[fiveTuple] != nil else { return }
        connections[fiveTuple]!.allocated = true
        deadlines[fiveTuple] = nil
    }

    /// The allocation ended (expired, refreshed to 0) while the connection stays open.
    mutating func allocationEnded(_ fiveTuple: FiveTuple, nowMillis: Int64) {
        guard connections[fiveTuple] != nil else { return }
        connections[fiveTuple]!.allocated = false
        deadlines[fiveTuple] = (nowMillis + limits.idleTimeout, .idle)
    }

    /// The connection is gone, whoever closed it.
    mutating func closed(_ fiveTuple: FiveTuple) {
        guard let connection = connections.removeValue(forKey: fiveTuple) else { return }
        deadlines[fiveTuple] = nil
        perSource.release(connection.source)
    }

    /// The connections whose deadline has come, each returned once; they stay counted until
    /// `closed` says they are gone.
    mutating func expire(nowMillis: Int64) -> [(FiveTuple, CloseReason)] {
        var expired: [(FiveTuple, CloseReason)] = []
        for (fiveTuple, deadline) in deadlines where nowMillis >= deadline.at {
            expired.append((fiveTuple, deadline.reason))
        }
        for (fiveTuple, reason) in expired {
            deadlines[fiveTuple] = nil
            switch reason {
            case .authTimeout: counters.authTimeouts += 1
            case .idle: counters.idleClosed += 1
            }
        }
        return expired
    }
}
