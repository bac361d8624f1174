import Glibc
import Wire

/// SocketName is a destination as the kernel takes it (`struct sockaddr_in` or
/// `sockaddr_in6`, in the room of the larger), built straight from the address: cheap
/// enough per packet, and kept per viewer or peer where there is one.
package struct SocketName {
    package private(set) var storage = sockaddr_in6()
    package private(set) var length: socklen_t = 0

    package init(_ address: TransportAddress) {
        switch address.ip {
        case .v4(let value):
            var name = sockaddr_in()
            name.sin_family = sa_family_t(AF_INET)
            name.sin_port = address.port.bigEndian
            name.sin_addr.s_addr = value.bigEndian
            withUnsafeMutableBytes(of: &storage) { $0.storeBytes(of: name, as: sockaddr_in.self) }
            length = socklen_t(MemoryLayout<sockaddr_in>.size)
        case .v6(let value):
            storage.sin6_family = sa_family_t(AF_INET6)
            storage.sin6_port = address.port.bigEndian
            withUnsafeMutableBytes(of: &storage.sin6_addr) { raw in
                for index in 0..<16 { raw[index] = UInt8(truncatingIfNeeded: value >> (120 - 8 * index)) }
            }
            length = socklen_t(MemoryLayout<sockaddr_in6>.size)
        }
    }
}
