import Foundation
import Testing
@testable import Store

@Suite struct ACLTests {
    let dir = TemporaryDirectory()
    let db: SwitchboardDatabase

    init() throws {
        db = try SwitchboardDatabase(dataDirectory: dir.path)
        _ = try db.addPeer(try PeerID("cam1"), groups: [try GroupName("cams")])
        _ = try db.addPeer(try PeerID("cam2"), groups: [try GroupName("cams")])
        _ = try db.addPeer(try PeerID("phone"), groups: [try GroupName("family")])
        _ = try db.addPeer(try PeerID("guest"))
    }

    func reach(_ a: String, _ b: String, open: Bool = false) async throws -> Bool {
        try await db.mayReach(from: try PeerID(a), to: try PeerID(b), open: open)
    }

    @Test func aSharedGroupIsEnoughAndNothingElseIs() async throws {
        #expect(try await reach("cam1", "cam2"))
        #expect(try await reach("cam2", "cam1"))
        #expect(!(try await reach("phone", "cam1")))
        #expect(!(try await reach("guest", "cam1")))
        #expect(!(try await reach("cam1", "ghost")))
    }

    @Test func allowRulesAreDirectionalAndWorkForPeersAndGroups() async throws {
        _ = try db.addACLRule(.allow, from: try ACLSubject(parsing: "group:family"), to: try ACLSubject(parsing: "group:cams"))
        #expect(try await reach("phone", "cam1"))
        #expect(!(try await reach("cam1", "phone")))
        _ = try db.addACLRule(.allow, from: try ACLSubject(parsing: "peer:guest"), to: try ACLSubject(parsing: "peer:cam2"))
        #expect(try await reach("guest", "cam2"))
        #expect(!(try await reach("guest", "cam1")))
    }

    @Test func denyBeatsAllowSharedGroupsAndOpen() async throws {
        _ = try db.addACLRule(.deny, from: try ACLSubject(parsing: "peer:cam2"), to: try ACLSubject(parsing: "group:cams"))
        #expect(!(try await reach("cam2", "cam1")))
        #expect(!(try await reach("cam2", "cam1", open: true)))
        #expect(try await reach("cam1", "cam2"))
        #expect(try await reach("guest", "phone", open: true))
    }

    @Test func disabledPeersCannotBeReachedNorReach() async throws {
        try db.setDisabled(try PeerID("cam2"), true)
        #expect(!(try await reach("cam1", "cam2")))
        #expect(!(try await reach("cam2", "cam1", open: true)))
    }

    @Test func rulesAreListedDeduplicatedAndRemoved() throws {
        let first = try db.addACLRule(.allow, from: try ACLSubject(parsing: "peer:guest"), to: try ACLSubject(parsing: "group:cams"))
        let again = try db.addACLRule(.allow, from: try ACLSubject(parsing: "peer:guest"), to: try ACLSubject(parsing: "group:cams"))
        #expect(first == again)
        #expect(try db.aclRules().map(\.from) == ["peer:guest"])
        try db.removeACLRule(id: first)
        #expect(try db.aclRules().isEmpty)
        #expect(throws: StoreError.aclRuleNotFound(first)) { try db.removeACLRule(id: first) }
    }

    @Test(arguments: ["cams", "peer:", "team:x", "group:bad name", "peer:a/b", ":x", ""])
    func badSubjectsAreRefused(text: String) {
        #expect(throws: StoreError.self) { try ACLSubject(parsing: text) }
    }
}
