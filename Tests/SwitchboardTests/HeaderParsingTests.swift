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
        for bad in ["W/\"1\"", "\"1\", \"2\"", "\"\"", "\"-1\"", "12", "\"x\""] {
            #expect(SessionsAPI.parseIfMatch(bad) == .malformed, "\(bad)")
        }
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
