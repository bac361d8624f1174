import NIOCore
import Wire

/// SegmentBatcher turns the core's outbox into writes for UDP segmentation offload (GSO,
/// `UDP_SEGMENT`): a viewer's consecutive packets of one size — the FU-A fragments of a
/// frame are — go to the kernel as one buffer that it cuts into datagrams, so routing, the
/// IP layer and the device run once per run instead of once per packet. Per destination
/// the order stays as queued; between destinations it does not matter. One instance per
/// media loop; it keeps its storage between flushes.
final class SegmentBatcher {
    /// One write: `bytes` to `socket`, cut into `segmentSize` datagrams when set (the last
    /// one may be shorter).
    struct Write {
        var to: TransportAddress
        var name: SocketName
        var bytes: ByteBuffer
        var segmentSize: Int?
    }

    /// The kernel takes at most 64 segments (UDP_MAX_SEGMENTS) and 64 KiB per send.
    static let maxSegments = 64
    static let maxBytes = 65_000

    private var groupOf: [TransportAddress: Int] = [:]
    private var groups: [Int] = []
    private var counts: [Int] = []
    private var order: [Int] = []
    private let allocator = ByteBufferAllocator()

    /// The writes for `outbox`, grouped and joined; `maxSegments` 1 keeps every datagram apart.
    func writes(for outbox: [MediaCore.Datagram], maxSegments: Int = SegmentBatcher.maxSegments) -> [Write] {
        guard maxSegments > 1, outbox.count > 1 else {
            return outbox.map { Write(to: $0.to, name: $0.name, bytes: $0.bytes, segmentSize: nil) }
        }
        sortByDestination(outbox)
        var writes: [Write] = []
        writes.reserveCapacity(outbox.count)
        var index = 0
        while index < order.count {
            // A run: one destination, every datagram `size` long but the last, which may be shorter.
            let first = outbox[order[index]]
            let size = first.bytes.readableBytes
            var end = index + 1
            var total = size
            while end < order.count, end - index < maxSegments {
                let next = outbox[order[end]]
                let length = next.bytes.readableBytes
                guard groups[order[end]] == groups[order[index]], length <= size, total + length <= Self.maxBytes else { break }
                end += 1
                total += length
                if length < size { break }
            }
            if end - index == 1 {
                writes.append(Write(to: first.to, name: first.name, bytes: first.bytes, segmentSize: nil))
            } else {
                var joined = allocator.buffer(capacity: total)
                for position in index..<end { joined.writeImmutableBuffer(outbox[order[position]].bytes) }
                writes.append(Write(to: first.to, name: first.name, bytes: joined, segmentSize: size))
            }
            index = end
        }
        return writes
    }

    /// A joined write cut back into its datagrams (for a kernel that refuses segmentation).
    static func split(_ write: Write, segmentSize: Int) -> [Write] {
        var writes: [Write] = []
        var bytes = write.bytes
        while bytes.readableBytes > 0, let part = bytes.readSlice(length: min(segmentSize, bytes.readableBytes)) {
            writes.append(Write(to: write.to, name: write.name, bytes: part, segmentSize: nil))
        }
        return writes
    }

    /// Fills `order` with the outbox's indices, stable-sorted by destination (counting sort
    /// over destinations numbered in order of first appearance).
    private func sortByDestination(_ outbox: [MediaCore.Datagram]) {
        groupOf.removeAll(keepingCapacity: true)
        groups.removeAll(keepingCapacity: true)
        for datagram in outbox {
            let next = groupOf.count
            let group = groupOf[datagram.to, default: next]
            if group == next { groupOf[datagram.to] = next }
            groups.append(group)
        }
        counts.removeAll(keepingCapacity: true)
        counts.append(contentsOf: repeatElement(0, count: groupOf.count + 1))
        for group in groups { counts[group + 1] += 1 }
        for group in 0..<groupOf.count { counts[group + 1] += counts[group] }
        order.removeAll(keepingCapacity: true)
        order.append(contentsOf: repeatElement(0, count: outbox.count))
        for (index, group) in groups.enumerated() {
            order[counts[group]] = index
            counts[group] += 1
        }
    }
}
