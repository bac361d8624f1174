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

    /// The byte reading gives what the Character reading it replaced gave: the same lines, the
    /// same problem, on texts made of the pieces where the two could differ (CR, LF, CR LF,
    /// combining marks and emoji modifiers after "=" or a break, controls, tab, DEL, C1 NEL,
    /// U+2028, multi-byte letters).
    @Test func bytesAndCharactersAgree() {
        let pieces = ["v=0", "m=", "a=", "=", "a", "z", "A", "x", "\r", "\n", "\r\n", "\n\r", "\u{301}", "\u{1F3FB}",
                      "\u{0}", "\u{1F}", "\t", "\u{7F}", "\u{85}", "\u{2028}", "é", "中", " ", "=\u{301}"]
        var state: UInt64 = 0x5DEE_CE66D
        func next(_ bound: Int) -> Int {
            state = state &* 6_364_136_223_846_793_005 &+ 1_442_695_040_888_963_407
            return Int((state >> 33) % UInt64(bound))
        }
        for _ in 0..<5000 {
            let text = (0..<next(24)).map { _ in pieces[next(pieces.count)] }.joined()
            let bytes = Result { () throws(SDPText.Problem) in try SDPText.lines(text).map(String.init) }
            let characters = Result { () throws(SDPText.Problem) in try Self.linesByCharacter(text).map(String.init) }
            #expect(bytes == characters, "\(Array(text.unicodeScalars))")
        }
    }

    /// The Character reading of `SDPText.lines` as it was, kept as the reference.
    static func linesByCharacter(_ text: String) throws(SDPText.Problem) -> [Substring] {
        let lines = text.split(omittingEmptySubsequences: true, whereSeparator: { $0 == "\n" || $0 == "\r\n" || $0 == "\r" })
        guard !lines.isEmpty else { throw .empty }
        guard lines.count <= SDPText.maximumLines else { throw .tooManyLines }
        for (index, line) in lines.enumerated() {
            let scalars = line.unicodeScalars
            guard scalars.count >= 2, let type = scalars.first, ("a"..."z").contains(type),
                  scalars[scalars.index(after: scalars.startIndex)] == "=",
                  !scalars.contains(where: { $0.value < 0x20 && $0 != "\t" || $0.value == 0x7F }) else {
                throw .badLine(number: index + 1)
            }
        }
        return lines
    }
}
