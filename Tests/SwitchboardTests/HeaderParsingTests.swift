import Store
import Testing
@testable import Rendezvous

@Suite struct HeaderParsingTests {
    @Test(arguments: [
        ("Bearer abc", "abc"), ("bearer abc", "abc"), ("BEARER \tabc \t", "abc"), ("Bearer  a b ", "a b"),
    ])
    func aBearerTokenIsTheValueAfterTheScheme(header: String, token: String) {
        #expect(RendezvousAPI.bearerToken(header: header) == token)
    }

    @Test(arguments: ["Bearer", "Bearer ", "Bearer \t ", "Basic abc", "Bearerabc", "", String(repeating: "x", count: 300)])
    func noTokenIsNil(header: String) {
        #expect(RendezvousAPI.bearerToken(header: header) == nil)
    }

    @Test func aTokenLongerThan256BytesIsRefused() {
        #expect(RendezvousAPI.bearerToken(header: "Bearer " + String(repeating: "t", count: 256)) != nil)
        #expect(RendezvousAPI.bearerToken(header: "Bearer " + String(repeating: "t", count: 257)) == nil)
    }

    @Test func ifMatchTakesStarOrOneStrongETag() {
        #expect(SessionsAPI.parseIfMatch(nil) == .any)
        #expect(SessionsAPI.parseIfMatch(" * ") == .any)
        #expect(SessionsAPI.parseIfMatch("\t\"12\" ") == .version(12))
        for bad in ["W/\"1\"", "\"1\", \"2\"", "\"\"", "\"-1\"", "\"+12\"", "12", "\"x\"", "\"1 \""] {
            #expect(SessionsAPI.parseIfMatch(bad) == .malformed, "\(bad)")
        }
        // The documented form ("[0-9]+") but no version a session can have: a stale tag (412),
        // not a malformed one. Schemathesis found the 400 for a 21-digit tag.
        for stale in ["\"894001068088822366269\"", "\"9223372036854775808\"", "\"012\"", "\"00\""] {
            #expect(SessionsAPI.parseIfMatch(stale) == .noVersion, "\(stale)")
        }
        #expect(SessionsAPI.parseIfMatch("\"9223372036854775807\"") == .version(.max))
        #expect(SessionsAPI.parseIfMatch("\"0\"") == .version(0))
    }

    @Test func lastEventIDIsACursor() {
        #expect(EventPump.resumeCursor(lastEventID: nil) == 0)
        #expect(EventPump.resumeCursor(lastEventID: " 42\t") == 42)
        #expect(EventPump.resumeCursor(lastEventID: "-1") == nil)
        #expect(EventPump.resumeCursor(lastEventID: "soon") == nil)
    }

    @Test func optionalWhitespaceIsSpacesAndTabsOnly() {
        #expect(" \t a b \t ".trimmingOWS == "a b")
        #expect("".trimmingOWS == "")
        #expect(" \t ".trimmingOWS == "")
        #expect("\na\n".trimmingOWS == "\na\n")
    }
}
