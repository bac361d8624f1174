import Foundation
import Logging
import Peer
import Testing

/// The signaling client against the real server: login, offer, answer, trickle, hang-up, the
/// WebSocket event stream, refusals as problem documents, and logging in again when the
/// token is revoked.
@Suite(.serialized) struct SignalingClientTests {
    let logger = Logger(label: "test")

    func clients(_ server: TestServer) throws -> (SignalingClient, SignalingClient) {
        let alice = SignalingClient(configuration: .init(baseURL: server.baseURL, peerID: "alice",
                                                         key: try server.addPeer("alice")), logger: logger)
        let bob = SignalingClient(configuration: .init(baseURL: server.baseURL, peerID: "bob",
                                                       key: try server.addPeer("bob")), logger: logger)
        return (alice, bob)
    }

    static let offerSDP = "v=0\r\no=- 1 1 IN IP4 0.0.0.0\r\ns=-\r\nt=0 0\r\nm=application 9 UDP/DTLS/SCTP webrtc-datachannel\r\nc=IN IP4 0.0.0.0\r\na=mid:0\r\n"

    @Test func aSessionGoesFromOfferToAnswerToTrickleToHangUpWithEventsOnBothSides() async throws {
        let server = try TestServer()
        defer { server.stop() }
        let (alice, bob) = try clients(server)
        let login = try await alice.logIn()
        #expect(!login.token.isEmpty && login.expiresAt > Date())
        #expect(login.iceServers.contains { $0.urls.contains { $0.hasPrefix("turn:") } })

        var bobEvents = bob.events().makeAsyncIterator()
        var aliceEvents = alice.events().makeAsyncIterator()
        try await Task.sleep(for: .milliseconds(300))  // both streams connected

        let session = try await alice.offer(to: "bob", mode: .relay, description: "https", sdp: Self.offerSDP)
        #expect(session.caller == "alice" && session.callee == "bob" && session.mode == .relay)
        #expect(session.iceTransportPolicy == .relay && session.state == .offered)
        #expect(session.iceServers?.allSatisfy { $0.urls.allSatisfy { $0.hasPrefix("turn") } } == true)

        let offered = try #require(await bobEvents.next())
        guard case .offer(let offer) = offered.kind else { Issue.record("\(offered)"); return }
        #expect(offer.from == "alice" && offer.session == session.id && offer.desc == "https")
        #expect(offer.mode == .relay && offer.iceTransportPolicy == .relay && offer.sdp == Self.offerSDP)

        try await bob.answer(session: session.id, sdp: Self.offerSDP)
        let answered = try #require(await aliceEvents.next())
        guard case .answer(let id, let sdp) = answered.kind else { Issue.record("\(answered)"); return }
        #expect(id == session.id && sdp == Self.offerSDP)

        let fragment = "a=ice-ufrag:abcd\r\na=ice-pwd:0123456789012345678901\r\nm=application 9 UDP/DTLS/SCTP webrtc-datachannel\r\na=mid:0\r\na=candidate:1 1 udp 2130706431 127.0.0.1 50000 typ host\r\na=end-of-candidates\r\n"
        try await alice.trickle(session: session.id, fragment: fragment)
        let trickled = try #require(await bobEvents.next())
        guard case .candidates(_, let received) = trickled.kind else { Issue.record("\(trickled)"); return }
        #expect(received == fragment)

        try await bob.hangUp(session: session.id)
        let closed = try #require(await aliceEvents.next())
        guard case .closed(let closedID) = closed.kind else { Issue.record("\(closed)"); return }
        #expect(closedID == session.id)
        // Hanging up a session that is gone is not an error.
        try await alice.hangUp(session: session.id)
    }

    /// After an ICE restart the agent drops its event stream and makes a new one at once (the
    /// old TCP connection may have died with the NAT mapping): events in between are not lost,
    /// and none comes twice.
    @Test func aReconnectedEventStreamResumesAfterTheLastEventSeen() async throws {
        let server = try TestServer()
        defer { server.stop() }
        let (alice, bob) = try clients(server)
        var bobEvents = bob.events().makeAsyncIterator()
        try await Task.sleep(for: .milliseconds(300))
        let first = try await alice.offer(to: "bob", mode: .auto, description: "one", sdp: Self.offerSDP)
        let seen = try #require(await bobEvents.next())
        guard case .offer(let offer) = seen.kind else { Issue.record("\(seen)"); return }
        #expect(offer.session == first.id)
        #expect(await bob.reconnectEvents())
        // Sent while the stream reconnects.
        let second = try await alice.offer(to: "bob", mode: .auto, description: "two", sdp: Self.offerSDP)
        let third = try await alice.offer(to: "bob", mode: .auto, description: "three", sdp: Self.offerSDP)
        var sessions: [String] = []
        for _ in 0..<2 {
            let event = try #require(await bobEvents.next())
            guard case .offer(let offer) = event.kind else { Issue.record("\(event)"); return }
            sessions.append(offer.session)
        }
        #expect(sessions == [second.id, third.id])
    }

    @Test func aWrongKeyIsRefusedWithTheServersProblem() async throws {
        let server = try TestServer()
        defer { server.stop() }
        _ = try server.addPeer("carol")
        let carol = SignalingClient(configuration: .init(baseURL: server.baseURL, peerID: "carol", key: "wrong"),
                                    logger: logger)
        do {
            try await carol.logIn()
            Issue.record("a wrong key logged in")
        } catch {
            #expect(error.status == 401)
        }
    }

    @Test func anOfferToAnUnknownPeerIsRefusedAs404() async throws {
        let server = try TestServer()
        defer { server.stop() }
        let (alice, _) = try clients(server)
        do {
            _ = try await alice.offer(to: "nobody", mode: .auto, description: "x", sdp: Self.offerSDP)
            Issue.record("offered to nobody")
        } catch {
            #expect(error.status == 404)
        }
    }

    @Test func aRevokedTokenLogsInAgainAndTheRequestGoesThrough() async throws {
        let server = try TestServer()
        defer { server.stop() }
        let (alice, _) = try clients(server)
        let first = try await alice.logIn()
        try await alice.logOut()  // the server revokes the token; the client forgets nothing
        let session = try await alice.offer(to: "bob", mode: .auto, description: "x", sdp: Self.offerSDP)
        #expect(session.caller == "alice")
        let second = try #require(await alice.session)
        #expect(second.token != first.token)
    }
}
