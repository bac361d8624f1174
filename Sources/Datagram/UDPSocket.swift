import CDatagram
import Glibc
import NIOCore
import Wire

/// UDPSocket is a bound UDP socket shared with NIO: NIO reads it (its channel takes the
/// descriptor with `DatagramBootstrap.withBoundSocket` and closes it), and `DatagramSender`
/// writes the same descriptor with batched `sendmmsg` and UDP segmentation offload. NIO
/// closes a datagram channel on any send error it does not expect (EPERM from a firewall
/// rule, EACCES, ENETUNREACH, EIO from a device without checksum offload under
/// segmentation); written this way such a send is one counted drop instead.
///
/// All use is on the channel's event loop. The channel's handler calls `stopWriting()` in
/// `channelInactive`, which NIO fires in the same call that closes the descriptor, so no
/// write can reach a closed (or reused) descriptor.
package final class UDPSocket {
    private let descriptor: CInt
    /// Until handed to NIO, the descriptor is this object's to close.
    private var owned = true
    fileprivate private(set) var writable = true
    /// Segmentation offload; switched off for good if the kernel refuses a segmented write.
    package fileprivate(set) var segmentation: Bool
    /// The errno of the last send that failed.
    package fileprivate(set) var lastError: CInt = 0

    /// A UDP socket bound to `address` (port 0: any free port). `reuseAddress` lets a
    /// restarted server bind its well-known port at once; never for ports that must be
    /// exclusive (TURN relayed addresses), as UDP with SO_REUSEADDR may share a port.
    package init(address: SocketAddress, reuseAddress: Bool, sendBuffer: Int? = nil, segmentation wanted: Bool = true) throws {
        let descriptor = socket(address.protocol.rawValue,
                                Int32(SOCK_DGRAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue) | Int32(SOCK_NONBLOCK.rawValue), 0)
        guard descriptor >= 0 else { throw IOError(errnoCode: errno, reason: "socket") }
        var one: CInt = 1
        if reuseAddress { setsockopt(descriptor, SOL_SOCKET, SO_REUSEADDR, &one, socklen_t(MemoryLayout<CInt>.size)) }
        if var size = sendBuffer.map(CInt.init) {
            setsockopt(descriptor, SOL_SOCKET, SO_SNDBUF, &size, socklen_t(MemoryLayout<CInt>.size))
        }
        let bound = address.withSockAddr { bind(descriptor, $0, socklen_t($1)) }
        guard bound == 0 else {
            let code = errno
            close(descriptor)
            throw IOError(errnoCode: code, reason: "bind \(address)")
        }
        self.descriptor = descriptor
        segmentation = wanted && Self.segmentationSupported
    }

    package convenience init(host: String, port: Int, reuseAddress: Bool = true, sendBuffer: Int? = nil,
                             segmentation: Bool = true) throws {
        try self.init(address: try SocketAddress(ipAddress: host, port: port), reuseAddress: reuseAddress,
                      sendBuffer: sendBuffer, segmentation: segmentation)
    }

    deinit { stopWriting() }

    /// Whether the kernel takes UDP_SEGMENT (Linux 4.18 and later); NIO's own probe.
    package static var segmentationSupported: Bool { System.supportsUDPSegmentationOffload }

    /// The descriptor for `DatagramBootstrap.withBoundSocket`: from now on NIO closes it.
    package func handOverToNIO() -> CInt {
        owned = false
        return descriptor
    }

    /// No more writes (call it from the channel's `channelInactive`, or before closing it).
    package func stopWriting() {
        guard writable else { return }
        writable = false
        if owned { close(descriptor) }
    }

    fileprivate var writeDescriptor: CInt { writable ? descriptor : -1 }
}

/// UDPSocketCloser stops a socket's writes when NIO closes its channel. Put it after the
/// reader: readers pass `channelInactive` on but not the datagrams, so it costs nothing per
/// packet. (The relay's relayed sockets, one per allocation, do this in their own reader
/// instead: a handler context per allocation costs memory.)
package final class UDPSocketCloser: ChannelInboundHandler {
    package typealias InboundIn = AddressedEnvelope<ByteBuffer>
    private let socket: UDPSocket

    package init(socket: UDPSocket) { self.socket = socket }

    package func channelInactive(context: ChannelHandlerContext) {
        socket.stopWriting()
        context.fireChannelInactive()
    }
}

@available(*, unavailable)
extension UDPSocketCloser: Sendable {}

/// DatagramSender sends what a `DatagramBatcher` planned on a `UDPSocket`, in as few system
/// calls as it takes. One per event loop: it owns the scratch space (message headers, iovecs,
/// addresses) so that sockets stay small.
package final class DatagramSender {
    private var batch: [switchboard_datagram] = []
    private let names: UnsafeMutablePointer<sockaddr_in6>
    private var vectors: UnsafeMutablePointer<iovec>
    private var vectorCapacity = 1024

    package init() {
        batch.reserveCapacity(Int(SWITCHBOARD_DATAGRAM_BATCH))
        names = .allocate(capacity: Int(SWITCHBOARD_DATAGRAM_BATCH))
        vectors = .allocate(capacity: vectorCapacity)
    }

    deinit {
        names.deallocate()
        vectors.deallocate()
    }

    /// Sends `batcher`'s plan on `socket`; returns how many datagrams were dropped because
    /// the kernel refused them.
    @discardableResult
    package func send(_ batcher: DatagramBatcher, on socket: UDPSocket) -> Int {
        send(batcher.writes[...], packets: batcher.packets, on: socket)
    }

    private func send(_ writes: ArraySlice<DatagramBatcher.Write>, packets: [ByteBuffer], on socket: UDPSocket) -> Int {
        guard socket.writeDescriptor >= 0 else { return writes.reduce(0) { $0 + $1.parts.count } }
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
                switchboard_send_datagrams(socket.writeDescriptor, $0.baseAddress, UInt32($0.count), &error)
            }
            if sent > 0 {
                start += Int(sent)
                continue
            }
            // The first of the batch failed: drop it, or without segmentation if that was the cause.
            socket.lastError = error
            let failed = writes[start]
            start += 1
            if failed.segmentSize != nil, socket.segmentation, error == EIO || error == EINVAL {
                socket.segmentation = false
                let apart = failed.parts.map {
                    DatagramBatcher.Write(to: failed.to, name: failed.name, parts: $0..<$0 + 1, segmentSize: nil)
                }
                dropped += send(apart[...], packets: packets, on: socket)
            } else {
                dropped += failed.parts.count
            }
        }
        return dropped
    }
}
