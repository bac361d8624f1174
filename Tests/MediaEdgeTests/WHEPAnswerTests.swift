import Foundation
import Testing
@testable import MediaEdge
@testable import Wire

/// SDP answers to the two example offers in docs/examples (aiortc and Chrome), and to
/// offers the edge must refuse.
@Suite struct WHEPAnswerTests {
    static let examples = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
        .deletingLastPathComponent().appendingPathComponent("docs/examples")

    static func offer(_ name: String) throws -> String {
        try String(contentsOf: examples.appendingPathComponent(name), encoding: .utf8)
    }

    static let constrainedBaseline = H264.ProfileLevelID(hex: "42c01e")!  // what x264 -profile baseline writes
    static let local = WHEPAnswer.Local(
        ufrag: "abcdEFGH", password: "0123456789abcdefghijkl01", fingerprint: "AA:BB:CC",
        candidates: [TransportAddress(ip: IPAddress("127.0.0.1")!, port: 8189)], sessionID: 42,
        videoSSRC: 1111, rtxSSRC: 2222, audioSSRC: 3333, cname: "switchboard-test")

    static func answer(_ text: String, video: H264.ProfileLevelID? = constrainedBaseline, audio: Bool = true) throws
        -> (SessionDescription, WHEPAnswer.Negotiated, String)
    {
        let (sdp, negotiated) = try WHEPAnswer.answer(
            offer: try SessionDescription(parsing: text), source: .init(name: "cam", video: video, audio: audio),
            local: local)
        return (try SessionDescription(parsing: sdp), negotiated, sdp)
    }

    @Test func answersAiortcWithItsConstrainedBaselineH264AndRTXAndOpus() throws {
        let (answer, negotiated, text) = try Self.answer(Self.offer("aiortc-whep-offer.sdp"))
        #expect(answer.sessionAttributes.contains { $0.name == "ice-lite" })
        #expect(answer.bundle == ["0", "1"])
        #expect(answer.media.map(\.kind) == [.video, .audio])
        let video = answer.media[0], audio = answer.media[1]
        // aiortc offers 99 (42001f, Baseline) and 101 (42e01f, Constrained Baseline): the exact profile wins.
        #expect(video.formats == ["101", "102"])
        #expect(try video.codecs().map(\.name) == ["H264", "rtx"])
        #expect(try video.codecs()[0].parameters["profile-level-id"] == "42e01f")
        #expect(try video.codecs()[0].parameters["packetization-mode"] == "1")
        #expect(try video.codecs()[1].associatedPayloadType == 101)
        #expect(try video.codecs()[0].feedback == ["nack", "nack pli"])  // aiortc offers no ccm fir
        #expect(audio.formats == ["96"])
        #expect(try audio.codecs().first?.name == "opus")
        for media in answer.media {
            #expect(media.direction == .sendonly)
            #expect(media.rtcpMux)
            #expect(!media.has("rtcp-rsize"))  // aiortc did not offer it
            #expect(media.port == 8189)
            #expect(answer.iceCredentials(for: media)! == ("abcdEFGH", "0123456789abcdefghijkl01"))
            #expect(answer.fingerprints(for: media).first! == ("sha-256", "AA:BB:CC"))
            #expect(media.value("setup") == "passive")  // the offer said actpass
            #expect(media.candidates == ["1 1 udp 2130706431 127.0.0.1 8189 typ host"])
            #expect(media.has("end-of-candidates"))
        }
        #expect(video.values("ssrc-group") == ["FID 1111 2222"])
        #expect(video.values("ssrc").contains("1111 cname:switchboard-test"))
        #expect(video.value("msid") == "cam cam-video")
        #expect(audio.values("ssrc").contains("3333 msid:cam cam-audio"))
        #expect(negotiated == WHEPAnswer.Negotiated(
            remoteUfrag: "d0N5", remotePassword: "SqRrl7mwLocSxrwZXP9Zeo",
            remoteFingerprint: "AF:A5:8D:5D:3D:67:C3:B6:BA:74:AD:67:D1:35:58:62:B4:9E:AF:F7:75:00:22:71:7F:B4:C9:F1:F4:7C:45:9E",
            dtlsClient: false, videoPayloadType: 101, rtxPayloadType: 102, audioPayloadType: 96, reducedSizeRTCP: false))
        #expect(text.hasSuffix("\r\n") && !text.contains("\n\n"))
    }

    @Test func answersChromeWithPacketizationModeOneAndRTCPReducedSize() throws {
        let (answer, negotiated, _) = try Self.answer(Self.offer("chrome-whep-offer.sdp"))
        #expect(answer.bundle == ["0", "1"])
        // Chrome lists 102 (42001f) before 108 (42e01f); mode-0 formats (104, 114) never qualify.
        #expect(answer.media[0].formats == ["108", "109"])
        #expect(try answer.media[0].codecs()[0].feedback == ["nack", "nack pli", "ccm fir"])
        #expect(answer.media[1].formats == ["111"])
        #expect(try answer.media[1].codecs()[0].parameters == ["minptime": "10", "useinbandfec": "1"])
        #expect(answer.media.allSatisfy { $0.has("rtcp-rsize") })
        #expect(negotiated.reducedSizeRTCP && !negotiated.dtlsClient)
        #expect(negotiated.videoPayloadType == 108 && negotiated.rtxPayloadType == 109 && negotiated.audioPayloadType == 111)
    }

    @Test func aMainProfileStreamGetsChromesMainFormatAndAHighOneNone() throws {
        let chrome = try Self.offer("chrome-whep-offer.sdp")
        let (main, _, _) = try Self.answer(chrome, video: H264.ProfileLevelID(hex: "4d001f")!)
        #expect(main.media[0].formats == ["116", "117"])
        // High 4:2:2 (profile_idc 122) is nothing Chrome decodes: video is rejected, audio still plays.
        let (high, negotiated, _) = try Self.answer(chrome, video: H264.ProfileLevelID(hex: "7a001f")!)
        #expect(high.media[0].direction == .inactive && high.media[0].mid == "0")
        #expect(high.bundle == ["0", "1"])
        #expect(negotiated.videoPayloadType == nil && negotiated.audioPayloadType == 111)
        #expect(throws: WHEPAnswer.Failure.self) { try Self.answer(chrome, video: H264.ProfileLevelID(hex: "7a001f")!, audio: false) }
    }

    /// A video-only or audio-only stream played by a player that offers both: the section the
    /// stream has nothing for stays in the bundle, inactive, with the transport attributes
    /// and one of its own codecs (aiortc refuses an answer whose section lacks them, and
    /// waits forever on a rejected section's own transport).
    @Test(arguments: [(true, false), (false, true)])
    func aSectionTheStreamHasNothingForIsInactiveInTheBundle(video: Bool, audio: Bool) throws {
        let (answer, negotiated, _) = try Self.answer(try Self.offer("aiortc-whep-offer.sdp"),
                                                      video: video ? Self.constrainedBaseline : nil, audio: audio)
        let idle = answer.media[video ? 1 : 0]
        #expect(idle.port == 8189 && idle.kind == (video ? .audio : .video))
        #expect(idle.direction == .inactive && idle.rtcpMux)
        #expect(answer.iceCredentials(for: idle)?.ufrag == Self.local.ufrag)
        #expect(answer.iceCredentials(for: idle)?.password == Self.local.password)
        #expect(answer.fingerprints(for: idle).map(\.value) == [Self.local.fingerprint])
        #expect(answer.value("setup", in: idle) == "passive")
        #expect(idle.values("ssrc").isEmpty && idle.values("msid").isEmpty)
        #expect(answer.bundle == ["0", "1"])
        let codecs = try idle.codecs()
        #expect(codecs.count == 1 && idle.formats == [String(codecs[0].payloadType)])
        #expect(codecs[0].name.lowercased() == (video ? "opus" : "vp8"))
        // Nothing is sent in it.
        #expect((negotiated.videoPayloadType != nil) == video && (negotiated.audioPayloadType != nil) == audio)
        #expect(answer.media[video ? 0 : 1].direction == .sendonly)
    }

    @Test func aDataChannelSectionIsRejectedAndLeftOutOfTheBundle() throws {
        let text = try Self.offer("aiortc-whep-offer.sdp").replacingOccurrences(of: "a=group:BUNDLE 0 1", with: "a=group:BUNDLE 0 1 2")
            + "m=application 9 UDP/DTLS/SCTP webrtc-datachannel\r\nc=IN IP4 0.0.0.0\r\na=mid:2\r\na=sctp-port:5000\r\n"
        let (answer, _, _) = try Self.answer(text)
        #expect(answer.media.count == 3)
        #expect(answer.media[2].port == 0 && answer.media[2].mid == "2" && answer.media[2].proto == "UDP/DTLS/SCTP")
        #expect(answer.iceCredentials(for: answer.media[2])?.ufrag == Self.local.ufrag && answer.media[2].direction == .inactive)
        #expect(answer.bundle == ["0", "1"])
    }

    @Test func aPassiveOfferMakesTheEdgeTheDTLSClient() throws {
        let text = try Self.offer("aiortc-whep-offer.sdp").replacingOccurrences(of: "a=setup:actpass", with: "a=setup:passive")
        let (answer, negotiated, _) = try Self.answer(text)
        #expect(negotiated.dtlsClient)
        #expect(answer.media.allSatisfy { $0.value("setup") == "active" })
    }

    @Test(arguments: [
        ("a=fingerprint:sha-256 ", "a=fingerprint:sha-1 ", "sha-256"),
        ("a=rtcp-mux", "a=x-no-mux", "rtcp-mux"),
        ("a=ice-pwd:SqRrl7mwLocSxrwZXP9Zeo", "a=ice-pwd:short", "ice-pwd"),
        ("a=setup:actpass", "a=setup:holdconn", "setup"),
    ])
    func offersMissingWhatDTLSSRTPNeedsAreBadRequests(find: String, replace: String, mentions: String) throws {
        let text = try Self.offer("aiortc-whep-offer.sdp").replacingOccurrences(of: find, with: replace)
        do {
            _ = try Self.answer(text)
            Issue.record("answered an offer without \(mentions)")
        } catch let failure as WHEPAnswer.Failure {
            guard case .badOffer(let reason) = failure else { Issue.record("\(failure)"); return }
            #expect(reason.contains(mentions), "\(reason)")
        }
    }

    @Test func anOfferThatOnlySendsOrHasNoCommonCodecIsNotAcceptable() throws {
        let sendOnly = try Self.offer("aiortc-whep-offer.sdp").replacingOccurrences(of: "a=recvonly", with: "a=sendonly")
        #expect(throws: WHEPAnswer.Failure.self) { try Self.answer(sendOnly) }
        let vp8Only = try Self.offer("aiortc-whep-offer.sdp").replacingOccurrences(of: "H264", with: "H265")
        do {
            _ = try Self.answer(vp8Only, audio: false)
            Issue.record("answered without a common codec")
        } catch let failure as WHEPAnswer.Failure {
            guard case .noCommonCodec(let reason) = failure else { Issue.record("\(failure)"); return }
            #expect(reason.contains("42c01e"))
        }
    }

    @Test func profileLevelIDsParseAndClassify() throws {
        #expect(H264.ProfileLevelID(hex: "42e01f")?.profile == .constrainedBaseline)
        #expect(H264.ProfileLevelID(hex: "42001f")?.profile == .baseline)
        #expect(H264.ProfileLevelID(hex: "4d001f")?.profile == .main)
        #expect(H264.ProfileLevelID(hex: "640c1f")?.profile == .constrainedHigh)
        #expect(H264.ProfileLevelID(hex: "640032")?.profile == .high)
        #expect(H264.ProfileLevelID(hex: "42e01")?.profile == nil)
        #expect(H264.ProfileLevelID(hex: "zz0000") == nil)
        #expect(H264.ProfileLevelID(sps: [0x67, 0x42, 0xC0, 0x1E, 0x8C])?.description == "42c01e")
        #expect(H264.ProfileLevelID(sps: [0x68, 0x42, 0xC0, 0x1E]) == nil)  // a PPS
        let cb = H264.ProfileLevelID(hex: "42c01e")!
        #expect(cb.isDecodable(by: H264.ProfileLevelID(hex: "640032")!))
        #expect(!H264.ProfileLevelID(hex: "640032")!.isDecodable(by: cb))
    }

    @Test func nalTypesAreReadFromSingleSTAPAAndFUAPayloads() {
        #expect(H264.nalTypes(startingIn: [0x67, 1, 2]) == [7])
        #expect(H264.nalTypes(startingIn: [0x78, 0, 2, 0x67, 1, 0, 1, 0x68]) == [7, 8])
        #expect(H264.nalTypes(startingIn: [0x78, 0, 9, 0x67]) == [])  // a size past the end
        #expect(H264.nalTypes(startingIn: [0x7C, 0x85, 1]) == [5])  // FU-A start of an IDR slice
        #expect(H264.nalTypes(startingIn: [0x7C, 0x05, 1]) == [])  // a continuation
        #expect(H264.nalTypes(startingIn: [0xE7]) == [])  // forbidden bit
        #expect(H264.nalTypes(startingIn: []) == [])
    }
}
