/// IPAddress is an IPv4 or IPv6 address as a plain value (no socket types in Wire).
public enum IPAddress: Sendable, Hashable {
    case v4(UInt32)
    case v6(UInt128)

    /// The address in network byte order: 4 or 16 bytes.
    public var bytes: [UInt8] {
        switch self {
        case .v4(let value): withUnsafeBytes(of: value.bigEndian, Array.init)
        case .v6(let value): withUnsafeBytes(of: value.bigEndian, Array.init)
        }
    }

    /// Builds an address from 4 or 16 network-order bytes.
    public init?(bytes: some Collection<UInt8>) {
        switch bytes.count {
        case 4: self = .v4(bytes.reduce(0) { $0 << 8 | UInt32($1) })
        case 16: self = .v6(bytes.reduce(0) { $0 << 8 | UInt128($1) })
        default: return nil
        }
    }

    public var isIPv4: Bool { if case .v4 = self { true } else { false } }
}

extension IPAddress: CustomStringConvertible {
    public var description: String {
        switch self {
        case .v4(let value):
            return "\(value >> 24).\(value >> 16 & 0xFF).\(value >> 8 & 0xFF).\(value & 0xFF)"
        case .v6(let value):
            // RFC 5952: lower-case hex, the longest run (≥2) of zero groups as "::".
            let groups = (0..<8).map { UInt16(truncatingIfNeeded: value >> (112 - 16 * $0)) }
            var bestStart = -1, bestLength = 0, runStart = -1
            for index in 0...8 {
                if index < 8 && groups[index] == 0 {
                    if runStart < 0 { runStart = index }
                } else if runStart >= 0 {
                    if index - runStart > bestLength { bestStart = runStart; bestLength = index - runStart }
                    runStart = -1
                }
            }
            let hex = groups.map { String($0, radix: 16) }
            guard bestLength >= 2 else { return hex.joined(separator: ":") }
            let head = hex[..<bestStart].joined(separator: ":")
            let tail = hex[(bestStart + bestLength)...].joined(separator: ":")
            return head + "::" + tail
        }
    }
}

extension IPAddress {
    /// Parses dotted-quad IPv4 or RFC 4291 text IPv6 (with "::" and an embedded IPv4 tail).
    public init?(_ text: some StringProtocol) {
        if !text.contains(":") {
            guard let value = Self.parseIPv4(Substring(text)) else { return nil }
            self = .v4(value)
            return
        }
        var text = Substring(text)
        if let percent = text.firstIndex(of: "%") { text = text[..<percent] }  // zone index
        // At most one "::"; each side is groups separated by ":", the last may be dotted IPv4.
        var halves: [Substring] = []
        if let gap = text.firstRange(of: "::") {
            halves = [text[..<gap.lowerBound], text[gap.upperBound...]]
            guard !halves[1].contains("::") else { return nil }
        } else {
            halves = [text]
        }
        var sides: [[UInt16]] = []
        for (position, half) in halves.enumerated() {
            var groups: [UInt16] = []
            if !half.isEmpty {
                let parts = half.split(separator: ":", omittingEmptySubsequences: false)
                for (index, part) in parts.enumerated() {
                    let isLast = position == halves.count - 1 && index == parts.count - 1
                    if part.contains("."), isLast, let v4 = Self.parseIPv4(part) {
                        groups += [UInt16(v4 >> 16), UInt16(v4 & 0xFFFF)]
                    } else {
                        guard (1...4).contains(part.count), part.allSatisfy(\.isHexDigit),
                              let group = UInt16(part, radix: 16) else { return nil }
                        groups.append(group)
                    }
                }
            }
            sides.append(groups)
        }
        var groups = sides[0]
        if sides.count == 2 {
            guard sides[0].count + sides[1].count <= 7 else { return nil }
            groups += repeatElement(0, count: 8 - sides[0].count - sides[1].count)
            groups += sides[1]
        }
        guard groups.count == 8 else { return nil }
        self = .v6(groups.reduce(0) { $0 << 16 | UInt128($1) })
    }

    private static func parseIPv4(_ text: Substring) -> UInt32? {
        let parts = text.split(separator: ".", omittingEmptySubsequences: false)
        guard parts.count == 4 else { return nil }
        var value: UInt32 = 0
        for part in parts {
            guard (1...3).contains(part.count), part.allSatisfy({ $0.isASCII && $0.isNumber }),
                  let octet = UInt32(part), octet <= 255 else { return nil }
            value = value << 8 | octet
        }
        return value
    }
}

/// TransportAddress is an IP address and port: a STUN/TURN "transport address".
public struct TransportAddress: Sendable, Hashable, CustomStringConvertible {
    public var ip: IPAddress
    public var port: UInt16

    public init(ip: IPAddress, port: UInt16) {
        self.ip = ip
        self.port = port
    }

    public var description: String {
        ip.isIPv4 ? "\(ip):\(port)" : "[\(ip)]:\(port)"
    }
}

extension IPAddress {
    /// The source a per-client limit counts: an IPv4 address, or an IPv6 /64 (one
    /// subscriber's usual allocation, who could otherwise walk through 2^64 addresses); an
    /// IPv4-mapped IPv6 address (how a dual-stack socket shows IPv4 clients) is its IPv4 one.
    package var sourceKey: IPAddress {
        switch self {
        case .v4: return self
        case .v6(let value):
            if value >> 32 == 0xFFFF { return .v4(UInt32(truncatingIfNeeded: value)) }
            return .v6(value & (UInt128.max << 64))
        }
    }
}
