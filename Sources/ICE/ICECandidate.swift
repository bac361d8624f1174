import Wire

/// ICECandidateType with its RFC 8445 §5.1.2.2 type preference.
package enum ICECandidateType: String, Sendable, Hashable {
    case host, srflx, prflx, relay

    package var typePreference: UInt32 {
        switch self {
        case .host: 126
        case .prflx: 110
        case .srflx: 100
        case .relay: 0
        }
    }
}

package enum ICETransport: String, Sendable, Hashable {
    case udp, tcp
}

/// TCP candidate kinds (RFC 6544); parsed so TCP candidates survive a round trip, never paired.
package enum ICETCPType: String, Sendable, Hashable {
    case active, passive, so
}

package enum ICECandidateParseError: Error, Sendable, Equatable {
    case notACandidate
    case malformed(String)
}

/// ICECandidate is one candidate (RFC 8445 §5.1) and its SDP `candidate` attribute
/// (RFC 8839 §5.1): `candidate:1 1 udp 2122260223 192.0.2.1 54400 typ host generation 0`.
package struct ICECandidate: Sendable, Hashable, CustomStringConvertible {
    /// An IP address, or a hostname (browsers hide host addresses behind `<uuid>.local` mDNS names).
    package enum Address: Sendable, Hashable, CustomStringConvertible {
        case ip(IPAddress)
        case hostname(String)

        package init?(_ text: Substring) {
            if let ip = IPAddress(text) {
                self = .ip(ip)
            } else if Self.isHostname(text) {
                self = .hostname(String(text))
            } else {
                return nil
            }
        }

        static func isHostname(_ text: Substring) -> Bool {
            (1...253).contains(text.utf8.count) && !text.hasPrefix(".") && !text.hasPrefix("-")
                && text.utf8.allSatisfy { byte in
                    (byte >= 0x30 && byte <= 0x39) || (byte >= 0x41 && byte <= 0x5A) || (byte >= 0x61 && byte <= 0x7A)
                        || byte == 0x2D || byte == 0x2E || byte == 0x5F
                }
        }

        package var description: String {
            switch self {
            case .ip(let ip): "\(ip)"
            case .hostname(let name): name
            }
        }
    }

    /// An extension attribute-value pair we keep as is (generation, ufrag, network-id, ...).
    package struct Extension: Sendable, Hashable {
        package var name: String
        package var value: String
        package init(_ name: String, _ value: String) {
            self.name = name
            self.value = value
        }
    }

    package var foundation: String
    package var component: Int
    package var transport: ICETransport
    package var priority: UInt32
    package var address: Address
    package var port: UInt16
    package var type: ICECandidateType
    package var relatedAddress: Address?
    package var relatedPort: UInt16?
    package var tcpType: ICETCPType?
    /// Where a local candidate sends from; nil for remote candidates.
    package var base: ICEBase?
    package var extensions: [Extension]

    package init(
        foundation: String = "", component: Int = 1, transport: ICETransport = .udp, priority: UInt32,
        address: Address, port: UInt16, type: ICECandidateType, relatedAddress: Address? = nil,
        relatedPort: UInt16? = nil, tcpType: ICETCPType? = nil, base: ICEBase? = nil, extensions: [Extension] = []
    ) {
        self.foundation = foundation
        self.component = component
        self.transport = transport
        self.priority = priority
        self.address = address
        self.port = port
        self.type = type
        self.relatedAddress = relatedAddress
        self.relatedPort = relatedPort
        self.tcpType = tcpType
        self.base = base
        self.extensions = extensions
    }

    /// A local host candidate on `base`; the agent fills in the foundation.
    package static func host(_ address: TransportAddress, base: ICEBase, localPreference: UInt16 = 65535) -> ICECandidate {
        ICECandidate(priority: priority(type: .host, localPreference: localPreference), address: .ip(address.ip),
                     port: address.port, type: .host, base: base)
    }

    /// A local relayed candidate: the TURN allocation's relayed address, `base` the allocation,
    /// `mapped` the server-reflexive address the allocation reported (the related address).
    /// Give TURN over UDP a higher local preference than over TCP, and TCP than TLS.
    package static func relay(
        _ address: TransportAddress, mapped: TransportAddress?, base: ICEBase, localPreference: UInt16 = 65535
    ) -> ICECandidate {
        ICECandidate(priority: priority(type: .relay, localPreference: localPreference), address: .ip(address.ip),
                     port: address.port, type: .relay, relatedAddress: mapped.map { .ip($0.ip) },
                     relatedPort: mapped?.port, base: base)
    }

    /// RFC 8445 §5.1.2.1: 2^24 * type preference + 2^8 * local preference + (256 - component).
    package static func priority(type: ICECandidateType, localPreference: UInt16, component: Int = 1) -> UInt32 {
        type.typePreference << 24 | UInt32(localPreference) << 8 | UInt32(256 - min(max(component, 1), 256))
    }

    /// The transport address, when the address is an IP (not a hostname).
    package var transportAddress: TransportAddress? {
        guard case .ip(let ip) = address else { return nil }
        return TransportAddress(ip: ip, port: port)
    }

    /// A `.local` hostname (draft-ietf-mmusic-mdns-ice-candidates).
    package var isMDNS: Bool {
        guard case .hostname(let name) = address else { return false }
        return name.lowercased().hasSuffix(".local")
    }

    /// The value of an extension attribute such as `ufrag` or `generation`.
    package func extensionValue(_ name: String) -> String? {
        extensions.first { $0.name == name }?.value
    }

    package var description: String { sdpAttribute }

    // MARK: - SDP

    /// Longest attribute we parse; real ones are under 200 bytes.
    static let maximumLength = 1024

    /// Parses `candidate:...`, with or without a leading `a=`. Unknown extension pairs are kept.
    package init(sdpAttribute text: String) throws(ICECandidateParseError) {
        guard text.utf8.count <= Self.maximumLength else { throw .malformed("longer than \(Self.maximumLength) bytes") }
        var body = Substring(text)
        while let last = body.last, last.isNewline { body = body.dropLast() }
        if body.hasPrefix("a=") { body = body.dropFirst(2) }
        guard body.lowercased().hasPrefix("candidate:") else { throw .notACandidate }
        body = body.dropFirst("candidate:".count)
        // Split on bytes, not Characters: a combining mark after a tab would otherwise join
        // the field before it, and the line would not read back once written with spaces.
        let tokens = body.utf8.split(whereSeparator: { $0 == 0x20 || $0 == 0x09 })
            .map { Substring(String(decoding: $0, as: UTF8.self)) }
        guard tokens.count >= 8 else { throw .malformed("\(tokens.count) fields, want at least 8") }
        guard tokens.count <= 64 else { throw .malformed("too many fields") }

        let foundation = tokens[0]
        guard (1...32).contains(foundation.utf8.count),
              foundation.utf8.allSatisfy({ Self.isICEChar($0) }) else { throw .malformed("foundation") }
        guard let component = Int(tokens[1]), (1...256).contains(component) else { throw .malformed("component") }
        guard let transport = ICETransport(rawValue: tokens[2].lowercased()) else {
            throw .malformed("transport \(tokens[2])")
        }
        guard tokens[3].utf8.count <= 10, let priority = UInt32(tokens[3]) else { throw .malformed("priority") }
        guard let address = Address(tokens[4]) else { throw .malformed("address") }
        guard let port = Self.port(tokens[5]) else { throw .malformed("port") }
        guard tokens[6] == "typ", let type = ICECandidateType(rawValue: String(tokens[7])) else {
            throw .malformed("candidate type")
        }
        let rest = tokens[8...]
        guard rest.count % 2 == 0 else { throw .malformed("extension without a value") }

        var relatedAddress: Address?
        var relatedPort: UInt16?
        var tcpType: ICETCPType?
        var extensions: [Extension] = []
        var index = rest.startIndex
        while index < rest.endIndex {
            let name = rest[index], value = rest[index + 1]
            index += 2
            switch name {
            case "raddr":
                guard let related = Address(value) else { throw .malformed("raddr") }
                relatedAddress = related
            case "rport":
                guard let related = Self.port(value) else { throw .malformed("rport") }
                relatedPort = related
            case "tcptype":
                guard let kind = ICETCPType(rawValue: String(value)) else { throw .malformed("tcptype") }
                tcpType = kind
            default:
                // RFC 8839: the name is an SDP token, the value a non-ws-string (no controls).
                guard name.utf8.allSatisfy(Self.isTokenChar), value.utf8.allSatisfy({ $0 > 0x20 && $0 != 0x7F }) else {
                    throw .malformed("extension")
                }
                extensions.append(Extension(String(name), String(value)))
            }
        }
        self.init(foundation: String(foundation), component: component, transport: transport, priority: priority,
                  address: address, port: port, type: type, relatedAddress: relatedAddress, relatedPort: relatedPort,
                  tcpType: tcpType, extensions: extensions)
    }

    /// `candidate:...` without `a=` (what trickle and RTCIceCandidate.candidate carry).
    package var sdpAttribute: String {
        var text = "candidate:\(foundation.isEmpty ? "0" : foundation) \(component) \(transport.rawValue) \(priority) "
            + "\(address) \(port) typ \(type.rawValue)"
        if let relatedAddress { text += " raddr \(relatedAddress)" }
        if let relatedPort { text += " rport \(relatedPort)" }
        if let tcpType { text += " tcptype \(tcpType.rawValue)" }
        for pair in extensions { text += " \(pair.name) \(pair.value)" }
        return text
    }

    /// RFC 4566's token-char: visible ASCII but for `"`, `(`, `)`, `,`, `/`, `:` to `@`, `[` to `]`.
    static func isTokenChar(_ byte: UInt8) -> Bool {
        switch byte {
        case 0x21, 0x23...0x27, 0x2A...0x2B, 0x2D...0x2E, 0x30...0x39, 0x41...0x5A, 0x5E...0x7E: true
        default: false
        }
    }

    static func isICEChar(_ byte: UInt8) -> Bool {
        (byte >= 0x30 && byte <= 0x39) || (byte >= 0x41 && byte <= 0x5A) || (byte >= 0x61 && byte <= 0x7A)
            || byte == 0x2B || byte == 0x2F
    }

    private static func port(_ text: Substring) -> UInt16? {
        guard (1...5).contains(text.utf8.count), text.utf8.allSatisfy({ $0 >= 0x30 && $0 <= 0x39 }) else { return nil }
        return UInt16(text)
    }
}

/// ICEPairState (RFC 8445 §6.1.2.6; there is no Frozen state here: with one component and
/// one data stream every pair starts Waiting, as libjuice does).
package enum ICEPairState: Sendable, Hashable {
    case waiting, inProgress, succeeded, failed
}

/// ICECandidatePair is a snapshot of one pair: send from `base` to `remote` to use it.
/// `local` is the valid pair's local candidate: the one whose address the peer saw (host,
/// srflx, prflx or relay), with the base it was reached through.
package struct ICECandidatePair: Sendable, Hashable, CustomStringConvertible {
    package var local: ICECandidate
    package var remote: ICECandidate
    package var base: ICEBase
    package var priority: UInt64
    package var state: ICEPairState
    package var nominated: Bool

    /// Where to send: the remote candidate's address.
    package var remoteAddress: TransportAddress { remote.transportAddress ?? TransportAddress(ip: .v4(0), port: 0) }

    /// Whether the pair goes through a TURN relay on either side.
    package var isRelayed: Bool { local.type == .relay || remote.type == .relay }

    package var description: String {
        "\(local.type.rawValue) \(local.address):\(local.port) (\(base)) -> \(remote.type.rawValue) \(remote.address):\(remote.port)"
    }

    /// RFC 8445 §6.1.2.3: 2^32*MIN(G,D) + 2*MAX(G,D) + (G>D?1:0), G the controlling side's
    /// candidate priority and D the controlled side's.
    /// Candidate priorities are at most 2^31 - 1 (RFC 8445 §5.1.2); larger ones from the wire
    /// are clamped so the sum cannot overflow.
    package static func priority(controlling g: UInt32, controlled d: UInt32) -> UInt64 {
        let g = UInt64(min(g, 0x7FFF_FFFF)), d = UInt64(min(d, 0x7FFF_FFFF))
        return (min(g, d) << 32) + 2 * max(g, d) + (g > d ? 1 : 0)
    }
}
