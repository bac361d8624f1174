import Wire

/// DTLSSetup is the `a=setup` role (RFC 4145, RFC 8842): the offer says `actpass`, the
/// answer picks `active` (DTLS client) or `passive` (DTLS server).
public enum DTLSSetup: String, Sendable {
    case actpass, active, passive
}

/// DataChannelSDP is the one media section a data-channel-only session needs
/// (RFC 8841, JSEP RFC 8829): `m=application 9 UDP/DTLS/SCTP webrtc-datachannel`, ICE
/// credentials, the certificate fingerprint, the setup role, the SCTP port and the largest
/// message the endpoint takes. Candidates are not part of it: they are trickled
/// (`TrickleFragment`), though a remote description that carries some inline keeps them.
public struct DataChannelSDP: Sendable, Equatable {
    public var mid: String
    public var ufrag: String
    public var password: String
    /// Hash function and value, `("sha-256", "AB:CD:…")`.
    public var fingerprint: (hash: String, value: String)
    public var setup: DTLSSetup
    public var sctpPort: UInt16
    /// `a=max-message-size`; RFC 8841 says an absent one means 64 KiB.
    public var maxMessageSize: Int
    /// Candidate attribute values found inline (`candidate:…`, without `a=`).
    public var candidates: [String]
    public var endOfCandidates: Bool
    /// `a=x-switchboard-stream-window`: the bytes this endpoint lets its peer send on each
    /// tunnel stream before it grants more (docs/agent.md, flow control). Only our agents
    /// write it; streams use per-stream credit when both descriptions carry it.
    public var streamWindow: Int?

    /// The range a stream window must fall in (smaller would crawl, larger is no bound).
    public static let streamWindows = 16 * 1024...(64 << 20)

    public enum ParseError: Error, Sendable, Equatable, CustomStringConvertible {
        case sdp(String)
        case noDataChannelSection
        case missing(String)
        case bad(String)

        public var description: String {
            switch self {
            case .sdp(let why): "not an SDP description: \(why)"
            case .noDataChannelSection: "the description has no data channel section (m=application … webrtc-datachannel)"
            case .missing(let what): "the data channel section has no \(what)"
            case .bad(let what): "bad \(what)"
            }
        }
    }

    public init(mid: String = "0", ufrag: String, password: String, fingerprint: (hash: String, value: String),
                setup: DTLSSetup, sctpPort: UInt16 = 5000, maxMessageSize: Int = 262_144, streamWindow: Int? = nil) {
        self.mid = mid
        self.ufrag = ufrag
        self.password = password
        self.fingerprint = fingerprint
        self.setup = setup
        self.sctpPort = sctpPort
        self.maxMessageSize = maxMessageSize
        self.streamWindow = streamWindow
        self.candidates = []
        self.endOfCandidates = false
    }

    /// Reads the first data channel section of `text` (the RFC 8841 form, or the older
    /// `DTLS/SCTP 5000` one with `a=sctpmap`).
    public init(parsing text: String) throws(ParseError) {
        let description: SessionDescription
        do { description = try SessionDescription(parsing: text) } catch { throw .sdp(error.description) }
        guard let media = description.media.first(where: { media in
            media.kind == .application && media.port != 0
                && (media.formats == ["webrtc-datachannel"] || media.proto.hasSuffix("DTLS/SCTP"))
        }) else { throw .noDataChannelSection }
        guard let (ufrag, password) = description.iceCredentials(for: media) else { throw .missing("ICE credentials") }
        guard let fingerprint = description.fingerprints(for: media).first(where: { $0.hash == "sha-256" }) else {
            throw .missing("sha-256 fingerprint")
        }
        guard let setupText = description.value("setup", in: media) else { throw .missing("a=setup") }
        guard let setup = DTLSSetup(rawValue: setupText) else { throw .bad("a=setup:\(setupText)") }
        var port: UInt16 = 5000
        if let value = media.value("sctp-port") {
            guard let parsed = UInt16(value), parsed > 0 else { throw .bad("a=sctp-port:\(value)") }
            port = parsed
        } else if let map = media.value("sctpmap"), let first = map.split(separator: " ").first {
            // Port 0 is no SCTP port, whichever attribute says it (found by PeerFuzz).
            guard let parsed = UInt16(first), parsed > 0 else { throw .bad("a=sctpmap:\(map)") }
            port = parsed
        } else if let format = media.formats.first, let parsed = UInt16(format), parsed > 0 {
            port = parsed
        }
        var maxMessageSize = 65_536
        if let value = media.value("max-message-size") {
            // 0 means "no limit" (RFC 8841 §6): the 256 KiB we could take anyway.
            guard let parsed = Int(value), parsed >= 0, parsed <= 1 << 30 else { throw .bad("a=max-message-size:\(value)") }
            maxMessageSize = parsed == 0 ? 262_144 : parsed
        }
        var streamWindow: Int?
        if let value = media.value("x-switchboard-stream-window") {
            guard let parsed = Int(value), Self.streamWindows.contains(parsed) else {
                throw .bad("a=x-switchboard-stream-window:\(value)")
            }
            streamWindow = parsed
        }
        self.init(mid: media.mid ?? "0", ufrag: ufrag, password: password, fingerprint: fingerprint, setup: setup,
                  sctpPort: port, maxMessageSize: maxMessageSize, streamWindow: streamWindow)
        self.candidates = media.candidates.map { "candidate:" + $0 }
        self.endOfCandidates = media.has("end-of-candidates")
    }

    /// The whole description, for an offer (`setup` actpass) or an answer.
    public func text(sessionID: UInt64, version: UInt64 = 1) -> String {
        var lines = [
            "v=0",
            "o=- \(sessionID) \(version) IN IP4 0.0.0.0",
            "s=-",
            "t=0 0",
            "a=group:BUNDLE \(mid)",
            "a=msid-semantic: WMS",
            "m=application 9 UDP/DTLS/SCTP webrtc-datachannel",
            "c=IN IP4 0.0.0.0",
            "a=mid:\(mid)",
            "a=ice-ufrag:\(ufrag)",
            "a=ice-pwd:\(password)",
            "a=ice-options:trickle",
            "a=fingerprint:\(fingerprint.hash) \(fingerprint.value)",
            "a=setup:\(setup.rawValue)",
            "a=sctp-port:\(sctpPort)",
            "a=max-message-size:\(maxMessageSize)",
        ]
        if let streamWindow { lines.append("a=x-switchboard-stream-window:\(streamWindow)") }
        lines += candidates.map { "a=\($0)" }
        if endOfCandidates { lines.append("a=end-of-candidates") }
        return lines.joined(separator: "\r\n") + "\r\n"
    }

    public static func == (lhs: DataChannelSDP, rhs: DataChannelSDP) -> Bool {
        lhs.mid == rhs.mid && lhs.ufrag == rhs.ufrag && lhs.password == rhs.password
            && lhs.fingerprint == rhs.fingerprint && lhs.setup == rhs.setup && lhs.sctpPort == rhs.sctpPort
            && lhs.maxMessageSize == rhs.maxMessageSize && lhs.streamWindow == rhs.streamWindow && lhs.candidates == rhs.candidates
            && lhs.endOfCandidates == rhs.endOfCandidates
    }
}

/// TrickleFragment is an SDP fragment for trickle ICE (RFC 8840 §9): the ICE credentials
/// (so a restart is recognised), the media section's m= line and mid, candidates, and
/// `a=end-of-candidates` once gathering is done.
public struct TrickleFragment: Sendable, Equatable {
    public var ufrag: String?
    public var password: String?
    public var mid: String
    public var candidates: [String]
    public var endOfCandidates: Bool

    public init(ufrag: String?, password: String?, mid: String = "0", candidates: [String], endOfCandidates: Bool) {
        self.ufrag = ufrag
        self.password = password
        self.mid = mid
        self.candidates = candidates
        self.endOfCandidates = endOfCandidates
    }

    /// Reads a fragment; lines it does not need are skipped. At most `limit` candidates are
    /// kept (a hostile peer's fragment cannot grow the agent's tables past that).
    public init(parsing text: String, limit: Int = 64) {
        var ufrag: String?, password: String?, mid = "0"
        var candidates: [String] = []
        var end = false
        for raw in text.split(whereSeparator: \.isNewline) {
            let line = String(raw)
            if line.hasPrefix("a=ice-ufrag:") { ufrag = String(line.dropFirst(12)) }
            else if line.hasPrefix("a=ice-pwd:") { password = String(line.dropFirst(10)) }
            else if line.hasPrefix("a=mid:") { mid = String(line.dropFirst(6)) }
            else if line.hasPrefix("a=candidate:"), candidates.count < limit { candidates.append(String(line.dropFirst(2))) }
            else if line == "a=end-of-candidates" { end = true }
        }
        self.init(ufrag: ufrag, password: password, mid: mid, candidates: candidates, endOfCandidates: end)
    }

    public var text: String {
        var lines: [String] = []
        if let ufrag { lines.append("a=ice-ufrag:\(ufrag)") }
        if let password { lines.append("a=ice-pwd:\(password)") }
        lines.append("m=application 9 UDP/DTLS/SCTP webrtc-datachannel")
        lines.append("a=mid:\(mid)")
        lines += candidates.map { "a=\($0)" }
        if endOfCandidates { lines.append("a=end-of-candidates") }
        return lines.joined(separator: "\r\n") + "\r\n"
    }
}
