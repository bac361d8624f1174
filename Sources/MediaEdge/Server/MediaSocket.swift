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
    private let names: UnsafeMutablePointer<sockaddr_storage>

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
    }

    deinit {
        stopWriting()
        names.deallocate()
    }

    static let segmentationSupported = switchboard_udp_segment_supported() != 0

    /// Stops writing (the read side is NIO's to close).
    func stopWriting() {
        guard writeDescriptor >= 0 else { return }
        close(writeDescriptor)
        writeDescriptor = -1
    }

    /// Sends `writes`, in order, in as few system calls as it takes; returns how many were
    /// dropped because the kernel refused them.
    @discardableResult
    func send(_ writes: [SegmentBatcher.Write]) -> Int {
        guard writeDescriptor >= 0 else { return writes.count }
        var dropped = 0
        var start = 0
        while start < writes.count {
            let end = min(start + Int(SWITCHBOARD_DATAGRAM_BATCH), writes.count)
            batch.removeAll(keepingCapacity: true)
            for index in start..<end {
                let write = writes[index]
                names[index - start] = write.name.storage
                // The bytes stay alive in `writes` until this call returns.
                let bytes = write.bytes.withUnsafeReadableBytesWithStorageManagement { pointer, _ in pointer.baseAddress }
                let name = UnsafeRawPointer(names + (index - start)).assumingMemoryBound(to: sockaddr.self)
                batch.append(switchboard_datagram(
                    bytes: bytes, length: write.bytes.readableBytes, address: name, address_length: write.name.length,
                    segment_size: UInt16(clamping: write.segmentSize ?? 0)))
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
            if let size = failed.segmentSize, segmentation, error == EIO || error == EINVAL {
                segmentation = false
                dropped += send(SegmentBatcher.split(failed, segmentSize: size))
            } else {
                dropped += 1
            }
        }
        return dropped
    }
}
