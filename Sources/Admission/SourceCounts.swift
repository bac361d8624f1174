/// SourceCounts counts what each client source holds open (connections, WHEP viewers still
/// connecting) against a cap per source; a source that holds nothing takes no room in it.
/// A value: the caller owns it on one event loop or behind a lock.
package struct SourceCounts: Sendable {
    /// Places one source may hold; 0 means no limit.
    package let limit: Int
    private var counts: [ClientSource: Int] = [:]

    package init(limit: Int) {
        self.limit = limit
    }

    package func count(_ source: ClientSource) -> Int { counts[source] ?? 0 }

    /// Sources that hold anything now.
    package var sources: Int { counts.count }

    /// Whether `source` holds `limit` places already.
    package func isFull(_ source: ClientSource) -> Bool { limit > 0 && count(source) >= limit }

    /// Takes a place for `source`: false, with nothing taken, when it is full.
    package mutating func acquire(_ source: ClientSource) -> Bool {
        guard !isFull(source) else { return false }
        counts[source, default: 0] += 1
        return true
    }

    /// Gives back a place `acquire` took.
    package mutating func release(_ source: ClientSource) {
        let left = (counts[source] ?? 1) - 1
        counts[source] = left > 0 ? left : nil
    }
}
