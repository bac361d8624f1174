/// SessionDescription is a parsed SDP session description (RFC 8866) with the readers a
/// WebRTC answerer needs: BUNDLE (RFC 9143), ICE credentials (RFC 8839), fingerprints
/// (RFC 8122), setup role (RFC 4145), direction, mid, rtpmap/fmtp/rtcp-fb (RFC 8866 §6,
/// RFC 4585) and rtx (RFC 4588). Lines it has no use for are kept as attributes or skipped.
public struct SessionDescription: Sendable, Equatable {
    public enum ParseError: Error, Sendable, Equatable, CustomStringConvertible {
        case shape(SDPText.Problem)
        /// An m= line without `<media> <port> <proto> <fmt>...`.
        case badMediaLine(String)
        /// An a=rtpmap without `<pt> <name>/<clock rate>[/<channels>]`.
        case badRTPMap(String)

        public var description: String {
            switch self {
            case .shape(let problem): problem.description
            case .badMediaLine(let line): "bad m= line: \(line)"
            case .badRTPMap(let line): "bad a=rtpmap: \(line)"
            }
        }
    }

    /// `a=name` or `a=name:value`.
    public struct Attribute: Sendable, Equatable {
        public var name: String
        public var value: String?
    }

    /// A payload type's codec from a=rtpmap, with its a=fmtp parameters and a=rtcp-fb values.
    public struct Codec: Sendable, Equatable {
        public var payloadType: UInt8
        public var name: String
        public var clockRate: Int
        public var channels: Int?
        public var parameters: [String: String]
        public var feedback: [String]

        /// For rtx: the payload type it retransmits (fmtp apt=).
        public var associatedPayloadType: UInt8? { parameters["apt"].flatMap(SessionDescription.payloadType) }
    }

    /// A media section's media type (RFC 8866 §5.14): the ones we act on, or any other token
    /// as written (a rejected section is answered with its own).
    public enum MediaKind: Sendable, Hashable, CustomStringConvertible {
        case audio, video, application
        case other(String)

        public init(_ token: String) {
            switch token {
            case "audio": self = .audio
            case "video": self = .video
            case "application": self = .application
            default: self = .other(token)
            }
        }

        public var description: String {
            switch self {
            case .audio: "audio"
            case .video: "video"
            case .application: "application"
            case .other(let token): token
            }
        }
    }

    /// A media section's direction attribute (RFC 8866 §6.7).
    public enum Direction: String, Sendable, CaseIterable {
        case sendrecv, sendonly, recvonly, inactive

        /// The section's side receives media (what a WHEP viewer's offer says for its tracks).
        public var receives: Bool { self == .sendrecv || self == .recvonly }
    }

    public struct Media: Sendable, Equatable {
        public var kind: MediaKind
        public var port: Int
        public var proto: String
        public var formats: [String]
        public var attributes: [Attribute]

        public func values(_ name: String) -> [String] { attributes.filter { $0.name == name }.compactMap(\.value) }
        public func value(_ name: String) -> String? { values(name).first }
        public func has(_ name: String) -> Bool { attributes.contains { $0.name == name } }

        public var mid: String? { value("mid") }
        /// The last direction attribute, sendrecv when there is none (RFC 8866 §6.7).
        public var direction: Direction {
            attributes.lazy.reversed().compactMap { Direction(rawValue: $0.name) }.first ?? .sendrecv
        }
        public var rtcpMux: Bool { has("rtcp-mux") }
        public var candidates: [String] { values("candidate") }

        /// The codecs in m= line order, from a=rtpmap, a=fmtp and a=rtcp-fb.
        public func codecs() throws(ParseError) -> [Codec] {
            var byType: [UInt8: Codec] = [:]
            for map in values("rtpmap") {
                let parts = map.split(separator: " ", maxSplits: 1)
                guard parts.count == 2, let type = SessionDescription.payloadType(parts[0]) else { throw .badRTPMap(map) }
                let encoding = parts[1].split(separator: "/")
                guard encoding.count >= 2, let rate = Int(encoding[1]), rate > 0 else { throw .badRTPMap(map) }
                byType[type] = Codec(payloadType: type, name: String(encoding[0]), clockRate: rate,
                                     channels: encoding.count > 2 ? Int(encoding[2]) : nil, parameters: [:], feedback: [])
            }
            for fmtp in values("fmtp") {
                let parts = fmtp.split(separator: " ", maxSplits: 1)
                guard parts.count == 2, let type = SessionDescription.payloadType(parts[0]), byType[type] != nil else { continue }
                for pair in parts[1].split(separator: ";") {
                    let keyValue = pair.split(separator: "=", maxSplits: 1, omittingEmptySubsequences: false)
                    let key = keyValue[0].trimmingSpaces()
                    guard !key.isEmpty else { continue }
                    byType[type]!.parameters[key] = keyValue.count > 1 ? keyValue[1].trimmingSpaces() : ""
                }
            }
            for feedback in values("rtcp-fb") {
                let parts = feedback.split(separator: " ", maxSplits: 1)
                guard parts.count == 2 else { continue }
                if parts[0] == "*" {
                    for type in byType.keys { byType[type]!.feedback.append(String(parts[1])) }
                } else if let type = SessionDescription.payloadType(parts[0]), byType[type] != nil {
                    byType[type]!.feedback.append(String(parts[1]))
                }
            }
            return formats.compactMap { SessionDescription.payloadType($0).flatMap { byType[$0] } }
        }
    }

    public var sessionAttributes: [Attribute]
    public var media: [Media]

    /// An RTP payload type as SDP writes it (RFC 8866 §5.14, RFC 3551): a decimal number 0–127,
    /// digits only, without a sign or a leading zero. Swift's `UInt8("+96")` and `UInt8("096")`
    /// are 96, so an offer listing "+96" had 96 chosen and answered under a name it never
    /// offered (found by WHEPFuzz); such a format is now no payload type at all.
    public static func payloadType(_ text: some StringProtocol) -> UInt8? {
        let digits = text.utf8
        guard (1...3).contains(digits.count), digits.allSatisfy({ (0x30...0x39).contains($0) }),
              digits.first != 0x30 || digits.count == 1, let value = UInt8(text), value < 128 else { return nil }
        return value
    }

    public init(parsing text: String) throws(ParseError) {
        let lines: [Substring]
        do {
            lines = try SDPText.validateDescription(text)
        } catch {
            throw .shape(error)
        }
        var sessionAttributes: [Attribute] = []
        var media: [Media] = []
        for line in lines {
            // SDPText checked the shape: an ASCII letter, "=", then the value.
            let type = line.utf8.first!
            let value = String(Substring(line.utf8.dropFirst(2)))
            switch type {
            case UInt8(ascii: "m"):
                let fields = value.split(separator: " ")
                guard fields.count >= 4, let port = Int(fields[1]), (0...65535).contains(port) else {
                    throw .badMediaLine(value)
                }
                media.append(Media(kind: MediaKind(String(fields[0])), port: port, proto: String(fields[2]),
                                   formats: fields.dropFirst(3).map(String.init), attributes: []))
            case UInt8(ascii: "a"):
                let parts = value.split(separator: ":", maxSplits: 1, omittingEmptySubsequences: false)
                let attribute = Attribute(name: String(parts[0]), value: parts.count > 1 ? String(parts[1]) : nil)
                if media.isEmpty { sessionAttributes.append(attribute) } else { media[media.count - 1].attributes.append(attribute) }
            default:
                continue
            }
        }
        self.sessionAttributes = sessionAttributes
        self.media = media
    }

    /// The mids of the first a=group:BUNDLE, in order.
    public var bundle: [String] {
        for attribute in sessionAttributes where attribute.name == "group" {
            let fields = (attribute.value ?? "").split(separator: " ")
            if fields.first == "BUNDLE" { return fields.dropFirst().map(String.init) }
        }
        return []
    }

    /// A media-level attribute, or the session-level one (ICE and DTLS attributes may be either).
    public func value(_ name: String, in media: Media) -> String? {
        media.value(name) ?? sessionAttributes.first { $0.name == name }?.value
    }

    /// ICE ufrag and password for a media section.
    public func iceCredentials(for media: Media) -> (ufrag: String, password: String)? {
        guard let ufrag = value("ice-ufrag", in: media), let password = value("ice-pwd", in: media) else { return nil }
        return (ufrag, password)
    }

    /// The certificate fingerprints for a media section: (hash function, "AB:CD:…").
    public func fingerprints(for media: Media) -> [(hash: String, value: String)] {
        let values = media.values("fingerprint").isEmpty
            ? sessionAttributes.filter { $0.name == "fingerprint" }.compactMap(\.value) : media.values("fingerprint")
        return values.compactMap { text in
            let parts = text.split(separator: " ", maxSplits: 1)
            return parts.count == 2 ? (parts[0].lowercased(), parts[1].uppercased()) : nil
        }
    }

    public static func == (lhs: SessionDescription, rhs: SessionDescription) -> Bool {
        lhs.sessionAttributes == rhs.sessionAttributes && lhs.media == rhs.media
    }
}

extension Substring {
    /// Without leading and trailing spaces (0x20), cut on bytes as SDP is: a combining mark
    /// after a space does not keep the space. Reversing the Characters twice was a twentieth
    /// of a fuzzed media edge's time, in the fmtp parameters of every WHEP answer.
    func trimmingSpaces() -> String {
        let bytes = utf8
        guard let first = bytes.firstIndex(where: { $0 != 0x20 }),
              let last = bytes.lastIndex(where: { $0 != 0x20 }) else { return "" }
        return String(decoding: bytes[first...last], as: UTF8.self)
    }
}
