import Peer
import Testing

@Suite struct DataChannelSDPTests {
    let local = DataChannelSDP(ufrag: "abcd", password: "0123456789abcdefghijkl",
                               fingerprint: ("sha-256", "AB:CD:EF"), setup: .actpass)

    @Test func anOfferReadsBackAsItWasWritten() throws {
        let text = local.text(sessionID: 42)
        #expect(text.contains("m=application 9 UDP/DTLS/SCTP webrtc-datachannel\r\n"))
        #expect(text.contains("a=setup:actpass\r\n") && text.contains("a=sctp-port:5000\r\n"))
        #expect(!text.contains("a=candidate"))
        #expect(try DataChannelSDP(parsing: text) == local)
    }

    /// What aiortc 1.16 puts in its offer: session-level fingerprint absent, candidates inline,
    /// max-message-size 65536.
    @Test func aiortcsOfferIsRead() throws {
        let sdp = """
            v=0\r
            o=- 3942 3942 IN IP4 0.0.0.0\r
            s=-\r
            t=0 0\r
            a=group:BUNDLE 0\r
            a=msid-semantic:WMS *\r
            m=application 50000 DTLS/SCTP 5000\r
            c=IN IP4 10.0.1.2\r
            a=mid:0\r
            a=sctpmap:5000 webrtc-datachannel 65535\r
            a=max-message-size:65536\r
            a=candidate:7a1b 1 udp 2130706431 10.0.1.2 50000 typ host\r
            a=end-of-candidates\r
            a=ice-ufrag:Xk3d\r
            a=ice-pwd:q9W2rT7yU1iO4pA6sD8fG0\r
            a=fingerprint:sha-256 01:02:03\r
            a=fingerprint:sha-512 04:05\r
            a=setup:actpass\r

            """
        let parsed = try DataChannelSDP(parsing: sdp)
        #expect(parsed.ufrag == "Xk3d" && parsed.password == "q9W2rT7yU1iO4pA6sD8fG0")
        #expect(parsed.fingerprint == ("sha-256", "01:02:03"))
        #expect(parsed.setup == .actpass && parsed.sctpPort == 5000 && parsed.maxMessageSize == 65536)
        #expect(parsed.candidates == ["candidate:7a1b 1 udp 2130706431 10.0.1.2 50000 typ host"])
        #expect(parsed.endOfCandidates)
    }

    /// Our agents' window attribute reads back; aiortc's offer has none; out-of-range or
    /// non-numeric windows are refused rather than taken.
    @Test func theStreamWindowAttributeRoundTripsAndIsBounded() throws {
        var ours = local
        ours.streamWindow = 512 * 1024
        let text = ours.text(sessionID: 7)
        #expect(text.contains("a=x-switchboard-stream-window:524288\r\n"))
        #expect(try DataChannelSDP(parsing: text) == ours)
        #expect(try DataChannelSDP(parsing: local.text(sessionID: 7)).streamWindow == nil)
        for bad in ["0", "-5", "1023", "\(128 << 20)", "lots", "99999999999999999999999"] {
            #expect(throws: DataChannelSDP.ParseError.bad("a=x-switchboard-stream-window:\(bad)")) {
                try DataChannelSDP(parsing: text.replacingOccurrences(of: "window:524288", with: "window:\(bad)"))
            }
        }
    }

    @Test func descriptionsWithoutWhatDTLSAndICENeedAreRefused() {
        let text = local.text(sessionID: 1)
        #expect(throws: DataChannelSDP.ParseError.missing("sha-256 fingerprint")) {
            try DataChannelSDP(parsing: text.replacingOccurrences(of: "a=fingerprint:sha-256 AB:CD:EF\r\n", with: ""))
        }
        #expect(throws: DataChannelSDP.ParseError.missing("ICE credentials")) {
            try DataChannelSDP(parsing: text.replacingOccurrences(of: "a=ice-pwd:0123456789abcdefghijkl\r\n", with: ""))
        }
        #expect(throws: DataChannelSDP.ParseError.bad("a=setup:sideways")) {
            try DataChannelSDP(parsing: text.replacingOccurrences(of: "a=setup:actpass", with: "a=setup:sideways"))
        }
        let legacy = text.replacingOccurrences(of: "m=application 9 UDP/DTLS/SCTP webrtc-datachannel", with: "m=application 9 DTLS/SCTP 5000")
            .replacingOccurrences(of: "a=sctp-port:5000", with: "a=sctpmap:0000 webrtc-datachannel 65535")
        #expect(throws: DataChannelSDP.ParseError.bad("a=sctpmap:0000 webrtc-datachannel 65535")) { try DataChannelSDP(parsing: legacy) }
        #expect(throws: DataChannelSDP.ParseError.bad("a=sctp-port:70000")) {
            try DataChannelSDP(parsing: text.replacingOccurrences(of: "a=sctp-port:5000", with: "a=sctp-port:70000"))
        }
        #expect(throws: DataChannelSDP.ParseError.noDataChannelSection) {
            try DataChannelSDP(parsing: "v=0\r\no=- 1 1 IN IP4 0.0.0.0\r\ns=-\r\nt=0 0\r\nm=audio 9 UDP/TLS/RTP/SAVPF 111\r\na=mid:0\r\n")
        }
    }

    @Test func aTrickleFragmentRoundTripsAndIsBounded() {
        let fragment = TrickleFragment(ufrag: "abcd", password: "pw", candidates: [
            "candidate:1 1 udp 2130706431 10.0.1.2 50000 typ host",
            "candidate:2 1 udp 1694498815 203.0.113.10 50000 typ srflx raddr 10.0.1.2 rport 50000",
        ], endOfCandidates: true)
        #expect(TrickleFragment(parsing: fragment.text) == fragment)
        let many = (0..<100).map { "a=candidate:\($0) 1 udp 1 10.0.0.1 \(1000 + $0) typ host" }.joined(separator: "\r\n")
        #expect(TrickleFragment(parsing: many).candidates.count == 64)
    }
}
