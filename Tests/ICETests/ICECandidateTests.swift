import Testing
import Wire
@testable import ICE

@Suite struct ICECandidateCodecTests {
    @Test func parsesAChromeHostCandidateAndKeepsItsExtensions() throws {
        let text = "candidate:842163049 1 udp 2122260223 192.0.2.1 54400 typ host generation 0 ufrag EsAw network-id 1 network-cost 10"
        let candidate = try ICECandidate(sdpAttribute: text)
        #expect(candidate.foundation == "842163049")
        #expect(candidate.component == 1)
        #expect(candidate.transport == .udp)
        #expect(candidate.priority == 2_122_260_223)
        #expect(candidate.transportAddress == address("192.0.2.1", 54400))
        #expect(candidate.type == .host)
        #expect(candidate.extensionValue("ufrag") == "EsAw")
        #expect(candidate.extensionValue("network-cost") == "10")
        #expect(candidate.extensions.count == 4)
        #expect(candidate.sdpAttribute == text)
    }

    @Test func acceptsTheAttributePrefixAndReadsTheRelatedAddress() throws {
        let candidate = try ICECandidate(
            sdpAttribute: "a=candidate:2 1 UDP 1694498815 203.0.113.7 61000 typ srflx raddr 10.0.0.2 rport 5000\r\n")
        #expect(candidate.type == .srflx)
        #expect(candidate.relatedAddress == .ip(IPAddress("10.0.0.2")!))
        #expect(candidate.relatedPort == 5000)
        #expect(candidate.sdpAttribute == "candidate:2 1 udp 1694498815 203.0.113.7 61000 typ srflx raddr 10.0.0.2 rport 5000")
    }

    @Test func parsesIPv6AndTCPCandidates() throws {
        let v6 = try ICECandidate(sdpAttribute: "candidate:3 1 udp 2122262783 2001:db8::1 9 typ host")
        #expect(v6.transportAddress == TransportAddress(ip: IPAddress("2001:db8::1")!, port: 9))
        let tcp = try ICECandidate(sdpAttribute: "candidate:4 1 tcp 1518280447 192.0.2.1 9 typ host tcptype active")
        #expect(tcp.transport == .tcp)
        #expect(tcp.tcpType == .active)
        #expect(tcp.sdpAttribute == "candidate:4 1 tcp 1518280447 192.0.2.1 9 typ host tcptype active")
    }

    @Test func parsesAnMDNSHostnameCandidate() throws {
        let candidate = try ICECandidate(
            sdpAttribute: "candidate:1 1 udp 2113937151 3f0b7a4e-1c2d-4b5e-8f90-123456789abc.local 50000 typ host")
        #expect(candidate.isMDNS)
        #expect(candidate.transportAddress == nil)
        #expect(candidate.address == .hostname("3f0b7a4e-1c2d-4b5e-8f90-123456789abc.local"))
    }

    @Test func rejectsMalformedCandidatesWithoutCrashing() throws {
        let bad = [
            "", "candidate:", "foo:1 1 udp 1 192.0.2.1 1 typ host",
            "candidate:1 1 udp 1 192.0.2.1 1 typ",  // too short
            "candidate:1 1 udp 1 192.0.2.1 70000 typ host",  // port
            "candidate:1 1 udp 4294967296 192.0.2.1 1 typ host",  // priority over 32 bits
            "candidate:1 0 udp 1 192.0.2.1 1 typ host",  // component 0
            "candidate:1 1 sctp 1 192.0.2.1 1 typ host",  // transport
            "candidate:1 1 udp 1 192.0.2.1 1 typ bogus",  // type
            "candidate:1 1 udp 1 192.0.2.1 1 type host",
            "candidate:1 1 udp 1 192.0.2.1 1 typ host generation",  // a name without a value
            "candidate:1 1 udp 1 bad/host 1 typ host",
            "candidate:1 1 udp 1 192.0.2.1 1 typ srflx raddr 192.0.2.1 rport -1",
            "candidate:\(String(repeating: "a", count: 33)) 1 udp 1 192.0.2.1 1 typ host",
            "candidate:1 1 udp 1 192.0.2.1 1 typ host " + String(repeating: "x y ", count: 300),
            // Found by PeerFuzz: controls in an extension (RFC 8839: a token and a non-ws-string)
            // were kept, and did not survive being written back.
            "candidate:1 1 udp 1 192.0.2.1 1 typ host ra546\u{0}\u{4}1r\n\n 4g\n\n \n",
            "candidate:1 1 udp 1 192.0.2.1 1 typ host generation\r 0",
            "candidate:1 1 udp 1 192.0.2.1 1 typ host gen(eration) 0",
            "candidate:1 1 udp 1 192.0.2.1 1 typ host generation 0\u{7F}",
        ]
        for text in bad {
            #expect(throws: ICECandidateParseError.self, "\(text)") { try ICECandidate(sdpAttribute: text) }
        }
        #expect(throws: ICECandidateParseError.notACandidate) { try ICECandidate(sdpAttribute: "a=end-of-candidates") }
        // A value may carry UTF-8 (non-ws-string takes %x80-FF); it reads back as written.
        let utf8 = try ICECandidate(sdpAttribute: "candidate:1 1 udp 1 192.0.2.1 1 typ host network-name wlan–ü")
        #expect(try ICECandidate(sdpAttribute: utf8.sdpAttribute) == utf8)
        // A value that starts with a combining mark, after a tab: its own field, written back
        // with a space, read back the same (found on a second read of the PeerFuzz fix).
        let mark = try ICECandidate(sdpAttribute: "candidate:1 1 udp 1 192.0.2.1 1 typ host foo\t\u{301}x")
        #expect(mark.extensions == [.init("foo", "\u{301}x")])
        #expect(try ICECandidate(sdpAttribute: mark.sdpAttribute) == mark)
    }

    @Test func everyLocalCandidateTheAgentEmitsParsesBackToItself() throws {
        var agent = ICEAgent(role: .controlling, local: aliceCredentials, tieBreaker: 1, now: .zero)
        agent.addLocalCandidate(.host(address("192.0.2.1", 4000), base: ICEBase(id: 1)), now: .zero)
        agent.addLocalCandidate(.relay(address("198.51.100.1", 5000), mapped: address("203.0.113.1", 6000),
                                       base: ICEBase(id: 2), localPreference: 1000), now: .zero)
        for candidate in agent.localCandidates {
            var parsed = try ICECandidate(sdpAttribute: "a=" + candidate.sdpAttribute)
            parsed.base = candidate.base
            #expect(parsed == candidate)
        }
    }
}

@Suite struct ICEPriorityTests {
    @Test func candidatePriorityFollowsTheRFC8445Formula() {
        #expect(ICECandidate.priority(type: .host, localPreference: 65535) == 2_130_706_431)
        #expect(ICECandidate.priority(type: .srflx, localPreference: 65535) == 1_694_498_815)
        #expect(ICECandidate.priority(type: .prflx, localPreference: 65535) == 1_862_270_975)
        #expect(ICECandidate.priority(type: .relay, localPreference: 65535) == 16_777_215)
        #expect(ICECandidate.priority(type: .host, localPreference: 10, component: 2) == 126 << 24 | 10 << 8 | 254)
    }

    @Test func pairPriorityPutsTheControllingSidesPriorityInTheTieBit() {
        // 2^32*MIN(G,D) + 2*MAX(G,D) + (G>D?1:0)
        #expect(ICECandidatePair.priority(controlling: 10, controlled: 20) == (10 << 32) + 40)
        #expect(ICECandidatePair.priority(controlling: 20, controlled: 10) == (10 << 32) + 40 + 1)
        // Out-of-range priorities from the wire are clamped to 2^31 - 1, not trapped on.
        let max = ICECandidatePair.priority(controlling: .max, controlled: .max)
        #expect(max == (UInt64(0x7FFF_FFFF) << 32) + 2 * 0x7FFF_FFFF)
    }

    @Test func candidatesOfTheSameTypeAndBaseShareAFoundation() {
        var agent = ICEAgent(role: .controlling, local: aliceCredentials, tieBreaker: 1, now: .zero)
        let a = agent.addLocalCandidate(.host(address("192.0.2.1", 4000), base: ICEBase(id: 1)), now: .zero)
        let b = agent.addLocalCandidate(.host(address("192.0.2.1", 4001), base: ICEBase(id: 2)), now: .zero)
        let c = agent.addLocalCandidate(.host(address("192.0.2.2", 4000), base: ICEBase(id: 3)), now: .zero)
        let d = agent.addLocalCandidate(.relay(address("192.0.2.1", 4002), mapped: nil, base: ICEBase(id: 4)), now: .zero)
        #expect(a?.foundation == b?.foundation)
        #expect(a?.foundation != c?.foundation)
        #expect(a?.foundation != d?.foundation)
        #expect(agent.localCandidates.allSatisfy { !$0.foundation.isEmpty })
    }
}
