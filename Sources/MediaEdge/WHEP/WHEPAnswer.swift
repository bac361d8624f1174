import Wire

/// WHEPAnswer builds the media edge's SDP answer to a viewer's offer (RFC 8829 answerer
/// rules, RFC 9725 / WHEP shape): one ICE-lite agent and one DTLS association for every
/// section, BUNDLE, rtcp-mux, sendonly tracks with their SSRCs and msid.
package enum WHEPAnswer {
    /// What the stream can send.
    package struct Source: Sendable, Equatable {
        package var name: String
        /// The H.264 profile the stream's SPS announces; nil when the stream has no video.
        package var video: H264.ProfileLevelID?
        package var audio: Bool

        package init(name: String, video: H264.ProfileLevelID?, audio: Bool) {
            self.name = name
            self.video = video
            self.audio = audio
        }
    }

    /// The answerer's side of the transport.
    package struct Local: Sendable, Equatable {
        package var ufrag: String
        package var password: String
        /// SHA-256 fingerprint of the DTLS certificate, "AB:CD:…".
        package var fingerprint: String
        /// Host candidates: the media port's announced addresses.
        package var candidates: [TransportAddress]
        package var sessionID: UInt64
        /// SSRCs for video, its RTX, and audio.
        package var videoSSRC: UInt32
        package var rtxSSRC: UInt32
        package var audioSSRC: UInt32
        package var cname: String

        package init(ufrag: String, password: String, fingerprint: String, candidates: [TransportAddress],
                     sessionID: UInt64, videoSSRC: UInt32, rtxSSRC: UInt32, audioSSRC: UInt32, cname: String) {
            self.ufrag = ufrag
            self.password = password
            self.fingerprint = fingerprint
            self.candidates = candidates
            self.sessionID = sessionID
            self.videoSSRC = videoSSRC
            self.rtxSSRC = rtxSSRC
            self.audioSSRC = audioSSRC
            self.cname = cname
        }
    }

    /// What the offer and answer agreed, for the viewer's state.
    package struct Negotiated: Sendable, Equatable {
        package var remoteUfrag: String
        package var remotePassword: String
        /// The SHA-256 fingerprint the viewer's DTLS certificate must have.
        package var remoteFingerprint: String
        /// True when the answer says `a=setup:active` (the edge is the DTLS client).
        package var dtlsClient: Bool
        package var videoPayloadType: UInt8?
        package var rtxPayloadType: UInt8?
        package var audioPayloadType: UInt8?
        /// The viewer sends reduced-size RTCP (RFC 5506) and accepts it.
        package var reducedSizeRTCP: Bool
    }

    package enum Failure: Error, Sendable, Equatable, CustomStringConvertible {
        /// The offer breaks a rule this answerer cannot work around (status 400).
        case badOffer(String)
        /// Nothing in the offer can carry the stream (status 406).
        case noCommonCodec(String)

        package var description: String {
            switch self {
            case .badOffer(let text), .noCommonCodec(let text): text
            }
        }
    }

    package static func answer(offer: SessionDescription, source: Source, local: Local) throws(Failure)
        -> (sdp: String, negotiated: Negotiated)
    {
        guard !offer.media.isEmpty else { throw .badOffer("the offer has no media sections") }
        var plans: [Plan] = []
        var chosenVideo = false, chosenAudio = false
        let bundle = offer.bundle
        var transport: Negotiated?
        for media in offer.media {
            var plan = Plan(media: media)
            defer { plans.append(plan) }
            guard media.port != 0, media.proto.uppercased().contains("SAVP"), media.kind == .audio || media.kind == .video
            else { continue }
            // One transport for everything: a second section must be in the bundle with the first.
            if let first = plans.first(where: { $0.bundled }) {
                guard let mid = media.mid, let firstMid = first.media.mid, bundle.contains(mid), bundle.contains(firstMid)
                else { continue }
            }
            let codecs: [SessionDescription.Codec]
            do {
                codecs = try media.codecs()
            } catch {
                throw .badOffer(error.description)
            }
            let receives = media.direction.receives
            switch media.kind {
            case .video where receives && !chosenVideo:
                if let profile = source.video, let (codec, rtx) = pickH264(codecs, for: profile) {
                    plan.codec = codec
                    plan.rtx = rtx
                    chosenVideo = true
                }
            case .audio where receives && !chosenAudio && source.audio:
                if let codec = codecs.first(where: { $0.name.lowercased() == "opus" && $0.clockRate == 48000 }) {
                    plan.codec = codec
                    chosenAudio = true
                }
            default:
                break
            }
            if plan.codec == nil {
                // Nothing to send in this section (a video-only stream and the player's audio,
                // say): it stays in the bundle, inactive, with one of its own codecs. A rejected
                // section (port 0, out of the bundle) is what RFC 8829 offers, but aiortc
                // starts ICE on a rejected section's own transport and waits for it before it
                // receives anything else, so an audio-only stream never played there.
                guard let codec = codecs.first else { continue }
                plan.codec = codec
                plan.inactive = true
            }
            // Transport parameters, from the first section taken (BUNDLE shares them).
            if transport == nil {
                guard media.rtcpMux else { throw .badOffer("a=rtcp-mux is required (one port carries RTP and RTCP)") }
                guard let credentials = offer.iceCredentials(for: media) else {
                    throw .badOffer("the offer has no a=ice-ufrag / a=ice-pwd")
                }
                guard credentials.ufrag.utf8.count >= 4, credentials.ufrag.utf8.count <= 256,
                      credentials.password.utf8.count >= 22, credentials.password.utf8.count <= 256,
                      !credentials.ufrag.contains(":") else {
                    throw .badOffer("a=ice-ufrag / a=ice-pwd out of range (RFC 8839 §5.4: 4-256 and 22-256 characters)")
                }
                guard let fingerprint = offer.fingerprints(for: media).first(where: { $0.hash == "sha-256" })?.value else {
                    throw .badOffer("the offer has no a=fingerprint:sha-256")
                }
                let setup = offer.value("setup", in: media) ?? "actpass"
                guard ["actpass", "active", "passive"].contains(setup) else {
                    throw .badOffer("a=setup:\(setup) is not actpass, active or passive")
                }
                transport = Negotiated(
                    remoteUfrag: credentials.ufrag, remotePassword: credentials.password, remoteFingerprint: fingerprint,
                    dtlsClient: setup == "passive", reducedSizeRTCP: media.has("rtcp-rsize"))
            }
            plan.bundled = true
        }
        guard var negotiated = transport, plans.contains(where: \.sends) else {
            var wanted: [String] = []
            if let video = source.video { wanted.append("H264 (packetization-mode=1, profile \(video))") }
            if source.audio { wanted.append("opus/48000/2") }
            throw .noCommonCodec("stream \(source.name) sends \(wanted.joined(separator: " and ")); "
                + "the offer has no receiving section that takes it")
        }
        for plan in plans where plan.sends {
            if plan.media.kind == .video {
                negotiated.videoPayloadType = plan.codec?.payloadType
                negotiated.rtxPayloadType = plan.rtx?.payloadType
            } else {
                negotiated.audioPayloadType = plan.codec?.payloadType
            }
        }
        return (render(plans: plans, offer: offer, source: source, local: local, negotiated: negotiated), negotiated)
    }

    private struct Plan {
        var media: SessionDescription.Media
        /// On the one transport (in the answer's BUNDLE group, a port, a codec).
        var bundled = false
        /// Bundled, but the stream has nothing for it: `a=inactive`.
        var inactive = false
        var codec: SessionDescription.Codec?
        var rtx: SessionDescription.Codec?
        /// A track of the stream goes out in this section.
        var sends: Bool { bundled && !inactive }
    }

    /// The offer's first H.264 packetization-mode 1 format whose profile decodes the stream,
    /// the exact profile first; and its RTX format if it has one.
    static func pickH264(_ codecs: [SessionDescription.Codec], for profile: H264.ProfileLevelID)
        -> (SessionDescription.Codec, SessionDescription.Codec?)?
    {
        let candidates = codecs.filter { codec in
            codec.name.uppercased() == "H264" && codec.clockRate == 90000 && codec.parameters["packetization-mode"] == "1"
        }
        func offered(_ codec: SessionDescription.Codec) -> H264.ProfileLevelID {
            // RFC 6184 §8.1: without the parameter, Baseline level 1.0.
            codec.parameters["profile-level-id"].flatMap(H264.ProfileLevelID.init(hex:))
                ?? H264.ProfileLevelID(profileIDC: 66, constraints: 0, levelIDC: 10)
        }
        let chosen = candidates.first { offered($0).profile == profile.profile }
            ?? candidates.first { profile.isDecodable(by: offered($0)) }
        guard let chosen else { return nil }
        let rtx = codecs.first { $0.name.lowercased() == "rtx" && $0.associatedPayloadType == chosen.payloadType }
        return (chosen, rtx)
    }

    private static func render(plans: [Plan], offer: SessionDescription, source: Source, local: Local,
                               negotiated: Negotiated) -> String {
        let first = local.candidates.first
        let family = first.map { $0.ip.isIPv4 ? "IP4" : "IP6" } ?? "IP4"
        let address = first.map { "\($0.ip)" } ?? "0.0.0.0"
        var lines = [
            "v=0",
            "o=- \(local.sessionID) 2 IN \(family) \(address)",
            "s=-",
            "t=0 0",
        ]
        let bundled = plans.filter(\.bundled).compactMap(\.media.mid)
        if !bundled.isEmpty, !offer.bundle.isEmpty { lines.append("a=group:BUNDLE " + bundled.joined(separator: " ")) }
        lines.append("a=ice-lite")
        lines.append("a=msid-semantic:WMS \(source.name)")
        for plan in plans {
            let media = plan.media
            guard plan.bundled, let codec = plan.codec else {
                // Rejected (RFC 8829 §5.3.1): port 0, the offer's formats, its mid; with the
                // transport attributes too, as Chromium writes them, since aiortc refuses an
                // answer in which any section lacks ICE credentials or a DTLS role.
                lines.append("m=\(media.kind) 0 \(media.proto) \(media.formats.joined(separator: " "))")
                lines.append("c=IN IP4 0.0.0.0")
                transportLines(&lines, local: local, negotiated: negotiated, mid: media.mid)
                lines.append("a=inactive")
                continue
            }
            let formats = [codec.payloadType] + (plan.rtx.map { [$0.payloadType] } ?? [])
            lines.append("m=\(media.kind) \(first?.port ?? 9) \(media.proto) \(formats.map(String.init).joined(separator: " "))")
            lines.append("c=IN \(family) \(address)")
            transportLines(&lines, local: local, negotiated: negotiated, mid: media.mid)
            lines.append(plan.inactive ? "a=inactive" : "a=sendonly")
            lines.append("a=rtcp-mux")
            if negotiated.reducedSizeRTCP { lines.append("a=rtcp-rsize") }
            let rate = codec.channels.map { "\(codec.clockRate)/\($0)" } ?? "\(codec.clockRate)"
            lines.append("a=rtpmap:\(codec.payloadType) \(codec.name)/\(rate)")
            if plan.inactive {
                // Nothing goes out here: the codec only makes the section acceptable.
                if !codec.parameters.isEmpty { lines.append("a=fmtp:\(codec.payloadType) " + fmtp(codec.parameters, order: [])) }
                candidateLines(&lines, local: local)
                continue
            }
            let trackID: String
            let ssrc: UInt32
            if media.kind == .video {
                for feedback in ["nack", "nack pli", "ccm fir"] where codec.feedback.contains(feedback) {
                    lines.append("a=rtcp-fb:\(codec.payloadType) \(feedback)")
                }
                lines.append("a=fmtp:\(codec.payloadType) " + fmtp(codec.parameters, order: [
                    "level-asymmetry-allowed", "packetization-mode", "profile-level-id"]))
                if let rtx = plan.rtx {
                    lines.append("a=rtpmap:\(rtx.payloadType) rtx/\(rtx.clockRate)")
                    lines.append("a=fmtp:\(rtx.payloadType) apt=\(codec.payloadType)")
                    lines.append("a=ssrc-group:FID \(local.videoSSRC) \(local.rtxSSRC)")
                }
                trackID = "\(source.name)-video"
                ssrc = local.videoSSRC
            } else {
                if !codec.parameters.isEmpty {
                    lines.append("a=fmtp:\(codec.payloadType) " + fmtp(codec.parameters, order: ["minptime", "useinbandfec"]))
                }
                trackID = "\(source.name)-audio"
                ssrc = local.audioSSRC
            }
            lines.append("a=msid:\(source.name) \(trackID)")
            for each in [ssrc] + (media.kind == .video && plan.rtx != nil ? [local.rtxSSRC] : []) {
                lines.append("a=ssrc:\(each) cname:\(local.cname)")
                lines.append("a=ssrc:\(each) msid:\(source.name) \(trackID)")
            }
            candidateLines(&lines, local: local)
        }
        return lines.joined(separator: "\r\n") + "\r\n"
    }

    /// ICE credentials, fingerprint, DTLS role and mid: the same in every section.
    private static func transportLines(_ lines: inout [String], local: Local, negotiated: Negotiated, mid: String?) {
        lines.append("a=ice-ufrag:\(local.ufrag)")
        lines.append("a=ice-pwd:\(local.password)")
        lines.append("a=fingerprint:sha-256 \(local.fingerprint)")
        lines.append("a=setup:\(negotiated.dtlsClient ? "active" : "passive")")
        if let mid { lines.append("a=mid:\(mid)") }
    }

    private static func candidateLines(_ lines: inout [String], local: Local) {
        for (index, candidate) in local.candidates.enumerated() {
            lines.append("a=candidate:\(index + 1) 1 udp \(2_130_706_431 - index) \(candidate.ip) \(candidate.port) typ host")
        }
        lines.append("a=end-of-candidates")
    }

    /// fmtp parameters, the known keys in `order` first, the rest sorted: a stable line.
    private static func fmtp(_ parameters: [String: String], order: [String]) -> String {
        let keys = order.filter { parameters[$0] != nil } + parameters.keys.filter { !order.contains($0) }.sorted()
        return keys.map { key in parameters[key]!.isEmpty ? key : "\(key)=\(parameters[key]!)" }.joined(separator: ";")
    }
}
