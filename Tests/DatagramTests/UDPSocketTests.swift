import Glibc
import NIOCore
import Testing
@testable import Datagram
@testable import Wire

/// A plain UDP receiver on 127.0.0.1 with a receive timeout.
final class UDPReceiver {
    let descriptor: CInt
    let address: TransportAddress

    init() throws {
        let descriptor = socket(AF_INET, Int32(SOCK_DGRAM.rawValue), 0)
        var name = sockaddr_in()
        name.sin_family = sa_family_t(AF_INET)
        name.sin_addr.s_addr = UInt32(0x7F00_0001).bigEndian
        var length = socklen_t(MemoryLayout<sockaddr_in>.size)
        let bound = withUnsafePointer(to: &name) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(descriptor, $0, length) }
        }
        #expect(bound == 0)
        _ = withUnsafeMutablePointer(to: &name) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { getsockname(descriptor, $0, &length) }
        }
        var timeout = timeval(tv_sec: 2, tv_usec: 0)
        setsockopt(descriptor, SOL_SOCKET, SO_RCVTIMEO, &timeout, socklen_t(MemoryLayout<timeval>.size))
        self.descriptor = descriptor
        address = TransportAddress(ip: IPAddress("127.0.0.1")!, port: UInt16(bigEndian: name.sin_port))
    }

    deinit { close(descriptor) }

    /// The next datagram, or nil after the timeout.
    func receive() -> [UInt8]? {
        var buffer = [UInt8](repeating: 0, count: 65536)
        let count = buffer.withUnsafeMutableBytes { recv(descriptor, $0.baseAddress, $0.count, 0) }
        return count < 0 ? nil : Array(buffer.prefix(count))
    }
}

/// The send path of the media port and the relay against real sockets on loopback: batches,
/// segmentation offload cut by the kernel into the datagrams a plain receiver sees, and a
/// refused destination that costs one counted drop, not the socket.
@Suite struct UDPSocketTests {
    /// A plan for datagrams of `tags` (each `size` bytes of its tag) to `address`.
    static func plan(_ tags: [(UInt8, Int)], to address: (Int) -> TransportAddress, maxSegments: Int) -> DatagramBatcher {
        let batcher = DatagramBatcher()
        batcher.plan(tags.enumerated().map { index, tag in
            OutgoingDatagram(bytes: ByteBuffer(repeating: tag.0, count: tag.1), to: address(index), name: SocketName(address(index)))
        }, maxSegments: maxSegments)
        return batcher
    }

    @Test func segmentedAndPlainWritesArriveAsTheDatagramsTheyStandFor() throws {
        let receiver = try UDPReceiver()
        let socket = try UDPSocket(host: "127.0.0.1", port: 0)
        let batcher = Self.plan([(1, 1100), (2, 1100), (3, 300), (4, 50)], to: { _ in receiver.address },
                                maxSegments: socket.segmentation ? DatagramBatcher.maxSegments : 1)
        #expect(batcher.writes.count == (socket.segmentation ? 2 : 4))
        #expect(DatagramSender().send(batcher, on: socket) == 0)
        var received: [[UInt8]] = []
        for _ in 0..<4 { if let datagram = receiver.receive() { received.append(datagram) } }
        #expect(received.map(\.count) == [1100, 1100, 300, 50])
        #expect(received.map { $0.first! } == [1, 2, 3, 4])
        #expect(received.allSatisfy { Set($0).count == 1 })
    }

    @Test(arguments: [1, DatagramBatcher.maxSegments])
    func aRefusedDestinationIsOneDropAndTheRestStillGoOut(maxSegments: Int) throws {
        let receiver = try UDPReceiver()
        let socket = try UDPSocket(host: "0.0.0.0", port: 0)
        // Broadcast without SO_BROADCAST: the kernel refuses it with EACCES.
        let refused = TransportAddress(ip: IPAddress("255.255.255.255")!, port: 9)
        let batcher = Self.plan((0..<100).map { (UInt8($0), 200) }, to: { $0 == 40 ? refused : receiver.address },
                                maxSegments: maxSegments)
        #expect(DatagramSender().send(batcher, on: socket) == 1)
        #expect(socket.lastError == EACCES)
        var tags: [UInt8] = []
        while tags.count < 99, let datagram = receiver.receive() { tags.append(datagram[0]) }
        #expect(tags == (0..<100).filter { $0 != 40 }.map { UInt8($0) })
    }

    @Test func aSegmentedWriteTheKernelRefusesGoesOutDatagramByDatagramAndOffloadStaysOff() throws {
        let receiver = try UDPReceiver()
        let socket = try UDPSocket(host: "127.0.0.1", port: 0)
        guard socket.segmentation else { return }  // a kernel without UDP_SEGMENT has nothing to refuse
        // 150 segments in one write: more than any kernel's UDP_MAX_SEGMENTS (64, 128 since 6.x): EINVAL.
        let batcher = Self.plan((0..<150).map { (UInt8($0), 10) }, to: { _ in receiver.address }, maxSegments: 150)
        #expect(batcher.writes.count == 1)
        #expect(DatagramSender().send(batcher, on: socket) == 0)
        #expect(socket.lastError == EINVAL)
        #expect(!socket.segmentation)
        var tags: [UInt8] = []
        while tags.count < 150, let datagram = receiver.receive() {
            #expect(datagram.count == 10)
            tags.append(datagram[0])
        }
        #expect(tags == (0..<150).map { UInt8($0) })
    }

    @Test func aStoppedSocketDropsEverything() throws {
        let receiver = try UDPReceiver()
        let socket = try UDPSocket(host: "127.0.0.1", port: 0)
        socket.stopWriting()
        let batcher = Self.plan([(7, 10), (8, 10)], to: { _ in receiver.address }, maxSegments: 1)
        #expect(DatagramSender().send(batcher, on: socket) == 2)
    }
}
