import Foundation
import Testing
@testable import Wire

@Suite struct SessionDescriptionTests {
    /// A WHEP viewer's offer from aiortc 1.16 (docs/examples/aiortc-whep-offer.sdp).
    static let aiortcOffer: String = {
        let url = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
            .deletingLastPathComponent().appendingPathComponent("docs/examples/aiortc-whep-offer.sdp")
        return try! String(contentsOf: url, encoding: .utf8)
    }()

    @Test func anAiortcWHEPOfferParses() throws {
        let offer = try SessionDescription(parsing: Self.aiortcOffer)
        #expect(offer.bundle == ["0", "1"])
        #expect(offer.media.map(\.kind) == [.video, .audio])
        let video = offer.media[0]
        #expect(video.mid == "0" && video.direction == .recvonly && video.rtcpMux)
        #expect(video.proto == "UDP/TLS/RTP/SAVPF" && video.formats == ["97", "98", "99", "100", "101", "102"])
        #expect(offer.iceCredentials(for: video)?.ufrag.isEmpty == false)
        #expect(offer.fingerprints(for: video).map(\.hash) == ["sha-256", "sha-384", "sha-512"])
        #expect(offer.fingerprints(for: video)[0].value.count == 95)
        #expect(video.value("setup") == "actpass")
        #expect(video.candidates.count == 1)

        let codecs = try video.codecs()
        #expect(codecs.map(\.name) == ["VP8", "rtx", "H264", "rtx", "H264", "rtx"])
        let h264 = codecs.filter { $0.name == "H264" }
        #expect(h264.map(\.payloadType) == [99, 101])
        #expect(h264.map { $0.parameters["profile-level-id"] } == ["42001f", "42e01f"])
        #expect(h264.allSatisfy { $0.parameters["packetization-mode"] == "1" && $0.clockRate == 90000 })
        #expect(h264[0].feedback == ["nack", "nack pli", "goog-remb"])
        #expect(codecs[3].associatedPayloadType == 99)

        let audio = offer.media[1]
        let opus = try audio.codecs().first
        #expect(opus?.name == "opus" && opus?.payloadType == 96 && opus?.clockRate == 48000 && opus?.channels == 2)
    }

    /// Media types and directions read as enums; a type we do not act on is kept as written,
    /// and the last direction attribute counts.
    @Test func mediaKindsAndDirectionsReadAsEnums() throws {
        let text = "v=0\r\no=- 1 1 IN IP4 0.0.0.0\r\ns=-\r\nt=0 0\r\n"
            + "m=text 9 RTP/AVP 98\r\na=sendonly\r\na=inactive\r\n"
            + "m=application 9 UDP/DTLS/SCTP webrtc-datachannel\r\n"
            + "m=audio 9 RTP/AVP 0\r\n"
        let description = try SessionDescription(parsing: text)
        #expect(description.media.map(\.kind) == [.other("text"), .application, .audio])
        #expect(description.media.map(\.kind.description) == ["text", "application", "audio"])
        #expect(description.media.map(\.direction) == [.inactive, .sendrecv, .sendrecv])
        #expect(!SessionDescription.Direction.sendonly.receives && SessionDescription.Direction.recvonly.receives)
    }

    @Test func sessionLevelICEAndFingerprintApplyToEveryMediaSection() throws {
        let text = "v=0\r\no=- 1 1 IN IP4 0.0.0.0\r\ns=-\r\nt=0 0\r\na=ice-ufrag:abcd\r\na=ice-pwd:secretsecretsecretsecret\r\n"
            + "a=fingerprint:sha-256 ab:cd\r\nm=audio 9 UDP/TLS/RTP/SAVPF 111\r\na=ice-ufrag:efgh\r\na=rtpmap:111 opus/48000/2\r\n"
            + "a=rtcp-fb:* nack\r\n"
        let offer = try SessionDescription(parsing: text)
        let audio = offer.media[0]
        #expect(offer.iceCredentials(for: audio)?.ufrag == "efgh")
        #expect(offer.iceCredentials(for: audio)?.password == "secretsecretsecretsecret")
        #expect(offer.fingerprints(for: audio).map(\.value) == ["AB:CD"])
        #expect(try audio.codecs().first?.feedback == ["nack"])
        #expect(audio.direction == .sendrecv && offer.bundle.isEmpty)
    }

    @Test(arguments: [
        ("v=0\r\nm=video\r\n", SessionDescription.ParseError.badMediaLine("video")),
        ("v=0\r\nm=video x UDP/TLS/RTP/SAVPF 96\r\n", .badMediaLine("video x UDP/TLS/RTP/SAVPF 96")),
        ("v=0\r\nm=video 70000 UDP/TLS/RTP/SAVPF 96\r\n", .badMediaLine("video 70000 UDP/TLS/RTP/SAVPF 96")),
        ("v=0\r\ns=-\r\n", .shape(.noMediaSection)),
    ])
    func malformedDescriptionsAreRefused(text: String, error: SessionDescription.ParseError) {
        #expect(throws: error) { try SessionDescription(parsing: text) }
    }

    @Test func oddFMTPParametersAreSkippedOrKept() throws {
        let offer = try SessionDescription(parsing: "v=0\r\nm=video 9 RTP/AVP 96\r\na=rtpmap:96 H264/90000\r\n"
            + "a=fmtp:96 =;;= x ; packetization-mode=1;flag\r\n")
        #expect(try offer.media[0].codecs().first?.parameters == ["packetization-mode": "1", "flag": ""])
    }

    /// Parameter names and values lose their surrounding spaces (0x20) and nothing else: tabs
    /// and non-ASCII text stay, and a combining mark after a space does not keep the space.
    @Test func fmtpParametersAreTrimmedOfSpacesOnly() throws {
        let offer = try SessionDescription(parsing: "v=0\r\nm=video 9 RTP/AVP 96\r\na=rtpmap:96 H264/90000\r\n"
            + "a=fmtp:96  profile-level-id = 42e01f ;\tx=\t; naïve=  é  ;  =v; \u{301}k=1 \r\n")
        #expect(try offer.media[0].codecs().first?.parameters
            == ["profile-level-id": "42e01f", "\tx": "\t", "naïve": "é", "\u{301}k": "1"])
    }

    @Test func aBadRTPMapIsRefusedWhenCodecsAreRead() throws {
        for map in ["96", "300 VP8/90000", "96 VP8", "96 VP8/zero", "+96 VP8/90000", "096 VP8/90000", "128 VP8/90000"] {
            let offer = try SessionDescription(parsing: "v=0\r\nm=video 9 UDP/TLS/RTP/SAVPF 96\r\na=rtpmap:\(map)\r\n")
            #expect(throws: SessionDescription.ParseError.badRTPMap(map)) { try offer.media[0].codecs() }
        }
    }

    /// A format is a payload type only as SDP writes one: "+96", "096" or "0101" name none (WHEPFuzz
    /// found the answer sending 96 to an offer that listed "+96"), and a=fmtp/a=rtcp-fb/apt= the same.
    @Test func formatsThatAreNotPlainNumbersAreNoPayloadTypes() throws {
        let offer = try SessionDescription(parsing: "v=0\r\nm=video 9 UDP/TLS/RTP/SAVPF +96 0101 097 98\r\n"
            + "a=rtpmap:96 H264/90000\r\na=rtpmap:101 H264/90000\r\na=rtpmap:97 VP8/90000\r\n"
            + "a=rtpmap:98 rtx/90000\r\na=fmtp:98 apt=096\r\na=fmtp:+98 apt=97\r\na=rtcp-fb:098 nack\r\n")
        let codecs = try offer.media[0].codecs()
        #expect(codecs.map(\.payloadType) == [98])
        #expect(codecs.first?.associatedPayloadType == nil)
        #expect(codecs.first?.feedback == [])
        #expect(SessionDescription.payloadType("0") == 0 && SessionDescription.payloadType("127") == 127)
        for text in ["", "+1", "-1", "00", "01", "128", "255", "1000", " 96", "9a", "٩٦"] {
            #expect(SessionDescription.payloadType(text) == nil, "\(text)")
        }
    }
}
