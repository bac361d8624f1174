import NIOCore
import Testing
@testable import Datagram
@testable import Wire

/// How the outbox becomes writes for UDP segmentation offload: per destination in order,
/// runs of one size (the last may be shorter), at most 64 segments and 65 000 bytes.
@Suite struct DatagramBatcherTests {
    static let a = TransportAddress(ip: IPAddress("127.0.0.1")!, port: 40000)
    static let b = TransportAddress(ip: IPAddress("127.0.0.2")!, port: 40001)

    /// A datagram whose bytes say where it came from: `tag` repeated `size` times.
    static func datagram(_ tag: UInt8, size: Int, to address: TransportAddress) -> OutgoingDatagram {
        OutgoingDatagram(bytes: ByteBuffer(repeating: tag, count: size), to: address, name: SocketName(address))
    }

    /// A plan's writes as (segment size, bytes per write).
    static func writes(_ batcher: DatagramBatcher) -> [(segmentSize: Int?, bytes: Int)] {
        batcher.writes.map { write in (write.segmentSize, write.parts.reduce(0) { $0 + batcher.packets[$1].readableBytes }) }
    }

    /// What the kernel would send: each write's packets gathered and cut at its segment size.
    static func datagrams(of batcher: DatagramBatcher) -> [(TransportAddress, [UInt8])] {
        batcher.writes.flatMap { write -> [(TransportAddress, [UInt8])] in
            let bytes = write.parts.flatMap { Array(batcher.packets[$0].readableBytesView) }
            let size = write.segmentSize ?? max(bytes.count, 1)
            return stride(from: 0, to: max(bytes.count, 1), by: size).map {
                (write.to, Array(bytes[$0..<min($0 + size, bytes.count)]))
            }
        }
    }

    @Test func aFrameToEachOfTwoViewersGoesAsOneWriteEachInOrder() {
        // As the core queues them: packet by packet, viewer by viewer.
        var outbox: [OutgoingDatagram] = []
        for (index, size) in [1128, 1128, 1128, 300].enumerated() {
            outbox.append(Self.datagram(UInt8(index), size: size, to: Self.a))
            outbox.append(Self.datagram(UInt8(10 + index), size: size, to: Self.b))
        }
        let batcher = DatagramBatcher()
        batcher.plan(outbox)
        #expect(Self.writes(batcher).map(\.segmentSize) == [1128, 1128])
        #expect(Self.writes(batcher).map(\.bytes) == [3684, 3684])
        let sent = Self.datagrams(of: batcher)
        #expect(sent.map(\.0) == [Self.a, Self.a, Self.a, Self.a, Self.b, Self.b, Self.b, Self.b])
        #expect(sent.map { $0.1.first! } == [0, 1, 2, 3, 10, 11, 12, 13])
        #expect(sent.map(\.1.count) == [1128, 1128, 1128, 300, 1128, 1128, 1128, 300])
    }

    @Test func aShorterPacketEndsARunAndALongerOneStartsANewOne() {
        let sizes = [500, 500, 200, 500, 900, 900, 100]
        let outbox = sizes.enumerated().map { Self.datagram(UInt8($0.offset), size: $0.element, to: Self.a) }
        let batcher = DatagramBatcher()
        batcher.plan(outbox)
        #expect(Self.writes(batcher).map(\.segmentSize) == [500, nil, 900])
        #expect(Self.writes(batcher).map(\.bytes) == [1200, 500, 1900])
        let sent = Self.datagrams(of: batcher)
        #expect(sent.map(\.1.count) == sizes)
        #expect(sent.map { $0.1.first! } == Array(0..<UInt8(sizes.count)))
    }

    @Test func runsStopAtTheKernelsLimits() {
        let many = (0..<130).map { Self.datagram(UInt8($0), size: 100, to: Self.a) }
        let batcher = DatagramBatcher()
        batcher.plan(many)
        #expect(Self.writes(batcher).map(\.bytes) == [6400, 6400, 200])
        let big = (0..<60).map { Self.datagram(UInt8($0), size: 1400, to: Self.b) }
        batcher.plan(big)
        #expect(Self.writes(batcher).allSatisfy { $0.bytes <= DatagramBatcher.maxBytes })
        #expect(Self.datagrams(of: batcher).map { $0.1.first! } == Array(0..<60))
    }

    @Test func withoutOffloadEveryDatagramIsItsOwnWrite() {
        let outbox = (0..<5).map { Self.datagram(UInt8($0), size: 1000, to: $0 % 2 == 0 ? Self.a : Self.b) }
        let batcher = DatagramBatcher()
        batcher.plan(outbox, maxSegments: 1)
        #expect(Self.writes(batcher).map(\.segmentSize) == [nil, nil, nil, nil, nil])
        #expect(Self.datagrams(of: batcher).map { $0.1.first! } == [0, 1, 2, 3, 4])
        // The same instance, reused for the next flush, still groups.
        batcher.plan(outbox)
        #expect(batcher.writes.count == 2)
        batcher.clear()
        #expect(batcher.packets.isEmpty && batcher.writes.isEmpty)
    }
}

/// SocketName builds the kernel's address structures from a Wire address; NIO parsing the
/// same address from text is the independent reference.
@Suite struct SocketNameTests {
    @Test(arguments: [("127.0.0.1", 40000), ("203.0.113.9", 1), ("::1", 3478), ("2001:db8::abcd:12", 65535)])
    func matchesNIOsSocketAddress(_ ip: String, _ port: UInt16) throws {
        let name = SocketName(TransportAddress(ip: try #require(IPAddress(ip)), port: port))
        var expected: [UInt8] = []
        try SocketAddress(ipAddress: ip, port: Int(port)).withSockAddr { pointer, size in
            expected = Array(UnsafeRawBufferPointer(start: pointer, count: size))
        }
        var storage = name.storage
        let actual = withUnsafeBytes(of: &storage) { Array($0.prefix(Int(name.length))) }
        #expect(actual == expected)
    }
}
