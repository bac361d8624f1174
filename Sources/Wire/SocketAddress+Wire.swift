import NIOCore

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

extension TransportAddress {
    /// The Wire address of a NIO socket address (nil for Unix sockets).
    package init?(_ address: SocketAddress) {
        switch address {
        case .v4(let v4):
            let value = UInt32(bigEndian: v4.address.sin_addr.s_addr)
            self.init(ip: .v4(value), port: UInt16(bigEndian: v4.address.sin_port))
        case .v6(let v6):
            var storage = v6.address.sin6_addr
            let value = withUnsafeBytes(of: &storage) { raw in raw.reduce(UInt128(0)) { $0 << 8 | UInt128($1) } }
            self.init(ip: .v6(value), port: UInt16(bigEndian: v6.address.sin6_port))
        case .unixDomainSocket:
            return nil
        }
    }

    /// The address as the kernel takes it: a `sockaddr_in` or a `sockaddr_in6`.
    package enum KernelAddress {
        case v4(sockaddr_in)
        case v6(sockaddr_in6)
    }

    package var kernelAddress: KernelAddress {
        switch ip {
        case .v4(let value):
            var address = sockaddr_in()
            address.sin_family = sa_family_t(AF_INET)
            address.sin_port = port.bigEndian
            address.sin_addr.s_addr = value.bigEndian
            return .v4(address)
        case .v6(let value):
            var address = sockaddr_in6()
            address.sin6_family = sa_family_t(AF_INET6)
            address.sin6_port = port.bigEndian
            withUnsafeMutableBytes(of: &address.sin6_addr) { raw in
                for index in 0..<16 { raw[index] = UInt8(truncatingIfNeeded: value >> (120 - 8 * index)) }
            }
            return .v6(address)
        }
    }

    /// The NIO socket address for sending to this address.
    package var socketAddress: SocketAddress {
        switch kernelAddress {
        case .v4(let address): SocketAddress(address, host: "")
        case .v6(let address): SocketAddress(address, host: "")
        }
    }
}
