/// PeerID is a validated peer identifier: 1–64 characters of `[A-Za-z0-9._-]`.
///
/// The same rule is a CHECK constraint in `Migrations/0001_initial.sql`, so rows written
/// by hand with the sqlite3 CLI obey it too.
package struct PeerID: Sendable, Hashable, Comparable, CustomStringConvertible {
    package let rawValue: String

    package init(_ text: String) throws(StoreError) {
        guard Self.isValidName(text) else { throw .invalidPeerID(text) }
        rawValue = text
    }

    package var description: String { rawValue }

    package static func < (a: PeerID, b: PeerID) -> Bool { a.rawValue < b.rawValue }

    /// The character rule shared by peer IDs and group names.
    static func isValidName(_ text: String) -> Bool {
        let bytes = text.utf8
        guard (1...64).contains(bytes.count) else { return false }
        return bytes.allSatisfy { byte in
            switch byte {
            case UInt8(ascii: "A")...UInt8(ascii: "Z"), UInt8(ascii: "a")...UInt8(ascii: "z"),
                 UInt8(ascii: "0")...UInt8(ascii: "9"),
                 UInt8(ascii: "."), UInt8(ascii: "_"), UInt8(ascii: "-"):
                true
            default:
                false
            }
        }
    }
}

/// GroupName names a set of peers that may reach each other (the ACL arrives with Rendezvous).
package struct GroupName: Sendable, Hashable, Comparable, CustomStringConvertible {
    package let rawValue: String

    package init(_ text: String) throws(StoreError) {
        guard PeerID.isValidName(text) else { throw .invalidGroupName(text) }
        rawValue = text
    }

    package var description: String { rawValue }

    package static func < (a: GroupName, b: GroupName) -> Bool { a.rawValue < b.rawValue }
}
