import Testing
@testable import Wire

@Suite struct SDPTextTests {
    static let offer = """
        v=0\r
        o=- 4611731400430051336 2 IN IP4 127.0.0.1\r
        s=-\r
        t=0 0\r
        a=group:BUNDLE 0\r
        m=application 9 UDP/DTLS/SCTP webrtc-datachannel\r
        c=IN IP4 0.0.0.0\r
        a=mid:0\r
        a=ice-ufrag:abcd\r
        a=ice-pwd:0123456789012345678901\r

        """

    @Test func aBrowserStyleOfferPasses() throws {
        try SDPText.validateDescription(Self.offer)
        try SDPText.validateDescription(Self.offer.replacingOccurrences(of: "\r\n", with: "\n"))
        #expect(try SDPText.lines(Self.offer).count == 10)
    }

    @Test func trickleFragmentsPass() throws {
        try SDPText.validateFragment("a=ice-ufrag:abcd\r\na=ice-pwd:x\r\nm=audio 9 RTP/AVP 0\r\na=mid:0\r\n"
            + "a=candidate:1 1 udp 2130706431 127.0.0.1 5000 typ host\r\n")
        try SDPText.validateFragment("a=end-of-candidates\r\n")
    }

    @Test(arguments: [
        ("", SDPText.Problem.empty),
        ("\r\n\r\n", .empty),
        ("hello", .badLine(number: 1)),
        ("v=0\r\nX=1\r\nm=audio 9 RTP/AVP 0\r\n", .badLine(number: 2)),
        ("v=0\r\n=1\r\n", .badLine(number: 2)),
        ("v=0\r\na\r\n", .badLine(number: 2)),
        ("v=0\r\na=x\u{0}y\r\nm=audio 9 RTP/AVP 0\r\n", .badLine(number: 2)),
        ("v=0\r\na=x\u{7F}\r\nm=audio 9 RTP/AVP 0\r\n", .badLine(number: 2)),
        ("v=1\r\nm=audio 9 RTP/AVP 0\r\n", .missingVersion),
        ("o=- 1 1 IN IP4 0.0.0.0\r\nv=0\r\nm=audio 9 RTP/AVP 0\r\n", .missingVersion),
        ("v=0\r\no=- 1 1 IN IP4 0.0.0.0\r\ns=-\r\nt=0 0\r\n", .noMediaSection),
    ])
    func malformedDescriptionsAreRefused(text: String, problem: SDPText.Problem) {
        #expect(throws: problem) { try SDPText.validateDescription(text) }
    }

    @Test func valuesThatJoinTheEqualsSignIntoOneCharacterStillCount() throws {
        // U+1F3FB (an emoji modifier) and U+0301 (a combining accent) extend the "=" before
        // them into one grapheme; the line is still an m= line and the first still v=0.
        try SDPText.validateDescription("v=0\r\nm=\u{1F3FB}x\r\n")
        try SDPText.validateDescription("v=0\r\nm=\u{301}\r\n")
        #expect(throws: SDPText.Problem.missingVersion) { try SDPText.validateDescription("v=0\u{301}\r\nm=a\r\n") }
    }

    @Test func aTabInsideAValueIsAllowed() throws {
        try SDPText.validateDescription("v=0\r\ns=a\tb\r\nm=audio 9 RTP/AVP 0\r\n")
    }

    @Test func hugeLineCountsAreRefused() {
        let text = "v=0\n" + String(repeating: "a=x\n", count: SDPText.maximumLines) + "m=audio 9 RTP/AVP 0\n"
        #expect(throws: SDPText.Problem.tooManyLines) { try SDPText.validateDescription(text) }
    }

    @Test func fragmentsMustStillBeLines() {
        #expect(throws: SDPText.Problem.badLine(number: 1)) { try SDPText.validateFragment("candidate:1 1 udp") }
        #expect(throws: SDPText.Problem.empty) { try SDPText.validateFragment("") }
    }
}
