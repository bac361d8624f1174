import NIOCore
import Wire

/// OutgoingDatagram is one datagram to send: its bytes, where to (and that address as the
/// kernel takes it, made once per destination by the caller).
package struct OutgoingDatagram {
    package var bytes: ByteBuffer
    package var to: TransportAddress
    package var name: SocketName

    package init(bytes: ByteBuffer, to: TransportAddress, name: SocketName) {
        self.bytes = bytes
        self.to = to
        self.name = name
    }
}

/// DatagramBatcher turns a list of datagrams into writes for UDP segmentation offload (GSO,
/// `UDP_SEGMENT`): consecutive packets of one size to one destination — the FU-A fragments
/// of a frame to a viewer, a burst of relayed packets to a peer — go to the kernel as one
/// message that it cuts into datagrams, so routing, the IP layer and the device run once per
/// run instead of once per packet. The packets are not
/// copied: a write names its packets, which go to the kernel as an iovec each. Per
/// destination the order stays as queued; between destinations it does not matter. One
/// instance per media loop; it keeps its storage between flushes.
package final class DatagramBatcher {
    /// One message: `packets[parts]` to `to`, cut into `segmentSize` datagrams when set (the
    /// last may be shorter). Without a segment size it is one datagram of one packet.
    package struct Write {
        package var to: TransportAddress
        package var name: SocketName
        package var parts: Range<Int>
        package var segmentSize: Int?
    }

    /// The packets in the order the writes send them.
    package private(set) var packets: [ByteBuffer] = []
    package private(set) var writes: [Write] = []

    /// The kernel takes at most 64 segments (UDP_MAX_SEGMENTS; 128 since Linux 6.x) and 64 KiB per send.
    package static let maxSegments = 64
    package static let maxBytes = 65_000

    private var groupOf: [TransportAddress: Int] = [:]
    private var groups: [Int] = []
    private var counts: [Int] = []
    private var order: [Int] = []

    package init() {}

    /// Plans `packets` and `writes` for `outbox`; `maxSegments` 1 keeps every datagram apart.
    package func plan(_ outbox: [OutgoingDatagram], maxSegments: Int = DatagramBatcher.maxSegments) {
        packets.removeAll(keepingCapacity: true)
        writes.removeAll(keepingCapacity: true)
        guard maxSegments > 1, outbox.count > 1 else {
            for index in outbox.indices {
                packets.append(outbox[index].bytes)
                writes.append(Write(to: outbox[index].to, name: outbox[index].name, parts: index..<index + 1, segmentSize: nil))
            }
            return
        }
        sortByDestination(outbox)
        for index in order { packets.append(outbox[index].bytes) }
        var index = 0
        while index < order.count {
            // A run: one destination, every packet `size` long but the last, which may be shorter.
            let size = packets[index].readableBytes
            var end = index + 1
            var total = size
            while end < order.count, end - index < maxSegments {
                let length = packets[end].readableBytes
                guard groups[order[end]] == groups[order[index]], length <= size, total + length <= Self.maxBytes else { break }
                end += 1
                total += length
                if length < size { break }
            }
            let first = order[index]
            writes.append(Write(to: outbox[first].to, name: outbox[first].name, parts: index..<end,
                                segmentSize: end - index > 1 ? size : nil))
            index = end
        }
    }

    /// Lets go of the last plan's packets.
    package func clear() {
        packets.removeAll(keepingCapacity: true)
        writes.removeAll(keepingCapacity: true)
    }

    /// Fills `order` with the outbox's indices, stable-sorted by destination (counting sort
    /// over destinations numbered in order of first appearance).
    private func sortByDestination(_ outbox: [OutgoingDatagram]) {
        groupOf.removeAll(keepingCapacity: true)
        groups.removeAll(keepingCapacity: true)
        for index in outbox.indices {  // fields read in place: a Datagram is big to copy
            let next = groupOf.count
            let group = groupOf[outbox[index].to, default: next]
            if group == next { groupOf[outbox[index].to] = next }
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
