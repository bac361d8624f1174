import CDatagram
import NIOCore
import Wire

import Glibc

/// MediaSocket is the media port. NIO reads it (the channel owns one descriptor); the edge
/// writes a duplicate of that descriptor with batched `sendmmsg`, UDP segmentation offload
/// when the kernel has it. A send that fails — EPERM from a firewall rule, ENETUNREACH,
/// EAGAIN with the send buffer full — drops that one write and is counted, where NIO's
/// datagram channel would close the port and with it every viewer.
final class MediaSocket {
    /// The descriptor for NIO (`DatagramBootstrap.withBoundSocket`), which closes it.
    let readDescriptor: CInt
    private var writeDescriptor: CInt
    /// Segmentation offload; switched off for good if the kernel refuses a segmented write.
    private(set) var segmentation: Bool
    /// The errno of the last send that failed.
    private(set) var lastError: CInt = 0
    private var batch: [switchboard_datagram]
    private let names: UnsafeMutablePointer<sockaddr_in6>
    private var vectors: UnsafeMutablePointer<iovec>
    private var vectorCapacity = 1024

    /// A UDP socket bound to `host`:`port` (0: any free port).
    init(host: String, port: Int, segmentation wanted: Bool = true) throws {
        let address = try SocketAddress(ipAddress: host, port: port)
        let family = address.protocol.rawValue
        let descriptor = socket(family, Int32(SOCK_DGRAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
        guard descriptor >= 0 else { throw IOError(errnoCode: errno, reason: "socket") }
        var one: CInt = 1
        var sendBuffer: CInt = 4 << 20  // keyframe bursts to many viewers
        setsockopt(descriptor, SOL_SOCKET, SO_REUSEADDR, &one, socklen_t(MemoryLayout<CInt>.size))
        setsockopt(descriptor, SOL_SOCKET, SO_SNDBUF, &sendBuffer, socklen_t(MemoryLayout<CInt>.size))
        let bound = address.withSockAddr { bind(descriptor, $0, socklen_t($1)) }
        guard bound == 0 else {
            let code = errno
            close(descriptor)
            throw IOError(errnoCode: code, reason: "bind \(host):\(port)")
        }
        let duplicate = dup(descriptor)
        guard duplicate >= 0 else {
            let code = errno
            close(descriptor)
            throw IOError(errnoCode: code, reason: "dup")
        }
        // Writes must never block the loop: a full send buffer is a dropped datagram.
        _ = fcntl(duplicate, F_SETFL, fcntl(duplicate, F_GETFL) | O_NONBLOCK)
        readDescriptor = descriptor
        writeDescriptor = duplicate
        segmentation = wanted && Self.segmentationSupported
        batch = []
        batch.reserveCapacity(Int(SWITCHBOARD_DATAGRAM_BATCH))
        names = .allocate(capacity: Int(SWITCHBOARD_DATAGRAM_BATCH))
        vectors = .allocate(capacity: vectorCapacity)
    }

    deinit {
        stopWriting()
        names.deallocate()
        vectors.deallocate()
    }

    static let segmentationSupported = switchboard_udp_segment_supported() != 0

    /// Stops writing (the read side is NIO's to close).
    func stopWriting() {
        guard writeDescriptor >= 0 else { return }
        close(writeDescriptor)
        writeDescriptor = -1
    }

    /// Sends what `batcher` planned, in order, in as few system calls as it takes; returns
    /// how many datagrams were dropped because the kernel refused them.
    @discardableResult
    func send(_ batcher: SegmentBatcher) -> Int {
        send(batcher.writes[...], packets: batcher.packets)
    }

    private func send(_ writes: ArraySlice<SegmentBatcher.Write>, packets: [ByteBuffer]) -> Int {
        guard writeDescriptor >= 0 else { return writes.reduce(0) { $0 + $1.parts.count } }
        var dropped = 0
        var start = writes.startIndex
        while start < writes.endIndex {
            let end = min(start + Int(SWITCHBOARD_DATAGRAM_BATCH), writes.endIndex)
            let partCount = writes[start..<end].reduce(0) { $0 + $1.parts.count }
            if partCount > vectorCapacity {
                vectors.deallocate()
                vectorCapacity = max(partCount, vectorCapacity * 2)
                vectors = .allocate(capacity: vectorCapacity)
            }
            batch.removeAll(keepingCapacity: true)
            var vector = 0
            for index in start..<end {
                let write = writes[index]
                let first = vector
                var length = 0
                for part in write.parts {
                    // The packets stay alive in `packets` until this call returns.
                    let bytes = packets[part].withUnsafeReadableBytesWithStorageManagement { pointer, _ in pointer }
                    vectors[vector] = iovec(iov_base: UnsafeMutableRawPointer(mutating: bytes.baseAddress), iov_len: bytes.count)
                    length += bytes.count
                    vector += 1
                }
                names[index - start] = write.name.storage
                let name = UnsafeRawPointer(names + (index - start)).assumingMemoryBound(to: sockaddr.self)
                batch.append(switchboard_datagram(
                    parts: vectors + first, part_count: write.parts.count, length: length, address: name,
                    address_length: write.name.length, segment_size: UInt16(clamping: write.segmentSize ?? 0)))
            }
            var error: CInt = 0
            let sent = batch.withUnsafeBufferPointer {
                switchboard_send_datagrams(writeDescriptor, $0.baseAddress, UInt32($0.count), &error)
            }
            if sent > 0 {
                start += Int(sent)
                continue
            }
            // The first of the batch failed: drop it, or without segmentation if that was the cause.
            lastError = error
            let failed = writes[start]
            start += 1
            if failed.segmentSize != nil, segmentation, error == EIO || error == EINVAL {
                segmentation = false
                let apart = failed.parts.map {
                    SegmentBatcher.Write(to: failed.to, name: failed.name, parts: $0..<$0 + 1, segmentSize: nil)
                }
                dropped += send(apart[...], packets: packets)
            } else {
                dropped += failed.parts.count
            }
        }
        return dropped
    }
}
