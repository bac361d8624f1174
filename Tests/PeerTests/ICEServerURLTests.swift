import NIOCore
import Testing
@testable import Peer

/// The ICE server URLs the server hands out (RFC 7064, RFC 7065), and their resolution off the
/// concurrency pool.
@Suite struct ICEServerURLTests {
    @Test func urlsReadAsRFC7064And7065WriteThem() throws {
        let turn = try #require(ICEServerURL("turn:relay.example.net:3479?transport=tcp"))
        #expect(turn.scheme == "turn" && turn.host == "relay.example.net" && turn.port == 3479 && turn.transport == "tcp")
        let turns = try #require(ICEServerURL("turns:relay.example.net"))
        #expect(turns.port == 5349 && turns.transport == "udp")
        let stun = try #require(ICEServerURL("stun:[2001:db8::1]:3478"))
        #expect(stun.host == "2001:db8::1" && stun.port == 3478)
        #expect(ICEServerURL("stun:[2001:db8::1]")?.port == 3478)
        for bad in ["stun", "stun:", "stun:host:0", "stun:host:65536", "stun:host:x", "stun:[::1", "turn::3478"] {
            #expect(ICEServerURL(bad) == nil, "\(bad)")
        }
    }

    @Test func hostsResolveOnTheBlockingPoolAndLiteralsWithoutIt() async throws {
        let literal = try #require(await PeerAgent.resolve("192.0.2.7", port: 3478))
        #expect(literal.ipAddress == "192.0.2.7" && literal.port == 3478)
        let v6 = try #require(await PeerAgent.resolve("2001:db8::1", port: 5349))
        #expect(v6.protocol == .inet6 && v6.port == 5349)
        // /etc/hosts names localhost on every machine this runs on.
        let named = try #require(await PeerAgent.resolve("localhost", port: 3478))
        #expect(named.port == 3478)
        #expect(named.ipAddress == "127.0.0.1" || named.ipAddress == "::1")
    }
}
