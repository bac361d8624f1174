import Glibc
import Wire

/// SocketName is a destination as the kernel takes it (`struct sockaddr_in` or
/// `sockaddr_in6`, in the room of the larger), built straight from the address without a
/// NIO `SocketAddress`: cheap enough per packet, and kept per viewer or peer where there is one.
package struct SocketName {
    package private(set) var storage = sockaddr_in6()
    package private(set) var length: socklen_t = 0

    package init(_ address: TransportAddress) {
        switch address.kernelAddress {
        case .v4(let name):
            withUnsafeMutableBytes(of: &storage) { $0.storeBytes(of: name, as: sockaddr_in.self) }
            length = socklen_t(MemoryLayout<sockaddr_in>.size)
        case .v6(let name):
            storage = name
            length = socklen_t(MemoryLayout<sockaddr_in6>.size)
        }
    }
}
