import Glibc
import NIOCore
import Wire

/// SocketName is a destination as the kernel takes it (`struct sockaddr_in` or
/// `sockaddr_in6`, in the room of the larger), made once per viewer rather than per packet.
package struct SocketName {
    package private(set) var storage = sockaddr_in6()
    package private(set) var length: socklen_t = 0

    package init(_ address: TransportAddress) {
        address.socketAddress.withSockAddr { pointer, size in
            precondition(size <= MemoryLayout<sockaddr_in6>.size, "an IP socket address")
            withUnsafeMutableBytes(of: &storage) { $0.copyMemory(from: UnsafeRawBufferPointer(start: pointer, count: size)) }
            length = socklen_t(size)
        }
    }
}
