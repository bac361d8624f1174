/// CIDR is an address prefix like `10.0.0.0/8` or `fe80::/10`: the relay's peer filter and
/// the media edge's ingest source pins use it.
package struct CIDR: Sendable, Hashable, CustomStringConvertible {
    package var address: IPAddress
    package var prefixLength: Int

    package init?(_ text: some StringProtocol) {
        let parts = text.split(separator: "/", maxSplits: 1, omittingEmptySubsequences: false)
        guard let address = IPAddress(parts[0]) else { return nil }
        let maximum = address.isIPv4 ? 32 : 128
        var length = maximum
        if parts.count == 2 {
            guard let parsed = Int(parts[1]), (0...maximum).contains(parsed),
                  parts[1].allSatisfy({ $0.isASCII && $0.isNumber }) else { return nil }
            length = parsed
        }
        self.address = address
        self.prefixLength = length
    }

    package func contains(_ candidate: IPAddress) -> Bool {
        switch (address, candidate) {
        case (.v4(let network), .v4(let value)):
            guard prefixLength > 0 else { return true }
            let mask = UInt32.max << (32 - prefixLength)
            return network & mask == value & mask
        case (.v6(let network), .v6(let value)):
            guard prefixLength > 0 else { return true }
            let mask = UInt128.max << (128 - prefixLength)
            return network & mask == value & mask
        default:
            return false
        }
    }

    package var description: String { "\(address)/\(prefixLength)" }
}
