import Wire

/// HTTPConnectionTimer decides when an HTTP/1 connection has waited long enough for its
/// client. A request, head and body, must arrive within `request` of its first byte (or of
/// the accept, for the first one): slowloris sends a header byte every few seconds and would
/// otherwise hold the connection for ever. Between requests a keep-alive connection may stay
/// silent for `idle`. While a request is being answered there is no deadline, so long-poll
/// and SSE responses last as long as they need; an upgraded (WebSocket) connection has none
/// either (its pings find dead peers). No I/O: the handler passes the time and closes the
/// connection when `expired`; a deadline is reached when `now >= deadline`.
struct HTTPConnectionTimer {
    struct Limits: Sendable {
        var request: Duration = .seconds(10)
        var idle: Duration = .seconds(75)
    }

    enum Phase: Equatable {
        /// Waiting for a request's first byte on a kept-alive connection.
        case idle
        /// A request has begun (or the connection was just accepted) and is not read in full.
        case reading
        /// Every request read is being answered.
        case answering
        /// Upgraded: timing is no longer this timer's business.
        case exempt
    }

    let limits: Limits
    private(set) var phase = Phase.reading
    private var since: ContinuousClock.Instant
    /// Requests read in full whose response has not ended (pipelining allows several).
    private var unanswered = 0

    init(limits: Limits, acceptedAt now: ContinuousClock.Instant) {
        self.limits = limits
        self.since = now
    }

    /// When the connection is to be closed if nothing changes, or nil.
    var deadline: ContinuousClock.Instant? {
        switch phase {
        case .reading: since + limits.request
        case .idle: since + limits.idle
        case .answering, .exempt: nil
        }
    }

    func expired(at now: ContinuousClock.Instant) -> Bool {
        guard let deadline else { return false }
        return now >= deadline
    }

    /// Bytes came in: on an idle connection they begin the next request.
    mutating func bytesArrived(at now: ContinuousClock.Instant) {
        guard phase == .idle else { return }
        phase = .reading
        since = now
    }

    /// A request's last part (after its body, if any) was read.
    mutating func requestEnded() {
        guard phase != .exempt else { return }
        unanswered += 1
        phase = .answering
    }

    /// A response's last part was written.
    mutating func responseEnded(at now: ContinuousClock.Instant) {
        guard phase != .exempt else { return }
        unanswered = max(0, unanswered - 1)
        // A pipelined request still being read keeps its own clock.
        guard unanswered == 0, phase == .answering else { return }
        phase = .idle
        since = now
    }

    /// The connection switched protocols (101).
    mutating func upgraded() {
        phase = .exempt
    }
}
