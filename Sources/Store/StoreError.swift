/// StoreError is every failure the Store reports to its callers, each with a one-line
/// description fit for a CLI's stderr or an HTTP problem document.
package enum StoreError: Error, Equatable, CustomStringConvertible {
    case invalidPeerID(String)
    case invalidGroupName(String)
    case peerExists(String)
    case peerNotFound(String)
    case migrationFailed(file: String, message: String)
    case databaseNewerThanBinary(unknownMigrations: [String])
    case migrationEdited(file: String, appliedAs: String)
    case cannotOpen(path: String, message: String)
    case invalidTURNUserName(String)
    case emptyPassword
    case turnUserExists(String)
    case turnUserNotFound(String)
    case invalidACLSubject(String)
    case aclRuleNotFound(Int64)
    case invalidStreamName(String)
    case streamNeedsPort
    case invalidPort(Int)
    case portInUse(Int)
    case streamExists(String)
    case streamNotFound(String)
    /// Another process (an admin's `sqlite3` transaction) held the write lock longer than
    /// this write would wait; nothing was written.
    case busy(waited: Duration)

    package var description: String {
        switch self {
        case .invalidPeerID(let id):
            "invalid peer ID \(Self.quoted(id)): use 1-64 characters from A-Z a-z 0-9 . _ -"
        case .invalidGroupName(let name):
            "invalid group name \(Self.quoted(name)): use 1-64 characters from A-Z a-z 0-9 . _ -"
        case .peerExists(let id):
            "peer \(Self.quoted(id)) already exists"
        case .peerNotFound(let id):
            "no peer \(Self.quoted(id))"
        case .migrationFailed(let file, let message):
            "migration \(file) failed: \(message); the database was left as it was before this migration"
        case .databaseNewerThanBinary(let unknown):
            "the database has migrations this binary does not know (\(unknown.joined(separator: ", "))); run a newer switchboard"
        case .migrationEdited(let file, let appliedAs):
            "migration \(file) differs from the \(appliedAs) this database applied (landed migrations are never edited; add a new numbered file instead)"
        case .cannotOpen(let path, let message):
            "cannot open database \(path): \(message)"
        case .invalidTURNUserName(let name):
            "invalid TURN user name \(Self.quoted(name)): use 1-128 printable characters without \":\""
        case .emptyPassword:
            "the password must not be empty"
        case .turnUserExists(let name):
            "TURN user \(Self.quoted(name)) already exists in this realm"
        case .turnUserNotFound(let name):
            "no TURN user \(Self.quoted(name)) in this realm"
        case .invalidACLSubject(let text):
            "invalid ACL subject \(Self.quoted(text)): use peer:ID or group:NAME"
        case .aclRuleNotFound(let id):
            "no ACL rule \(id)"
        case .invalidStreamName(let name):
            "invalid stream name \(Self.quoted(name)): use 1-64 characters from A-Z a-z 0-9 . _ -, not starting with ."
        case .streamNeedsPort:
            "a stream needs a video port, an audio port or both"
        case .invalidPort(let port):
            "invalid port \(port): use 1-65535"
        case .portInUse(let port):
            "port \(port) is already used by a stream"
        case .streamExists(let name):
            "stream \(Self.quoted(name)) already exists"
        case .streamNotFound(let name):
            "no stream \(Self.quoted(name))"
        case .busy(let waited):
            "the database is locked by another process's write (an open sqlite3 transaction?); gave up after \(waited)"
        }
    }

    /// Quotes user input so that control characters cannot reach a terminal or a log line raw.
    static func quoted(_ text: String) -> String {
        var out = "\""
        for scalar in text.prefix(80).unicodeScalars {
            switch scalar {
            case "\"": out += "\\\""
            case "\\": out += "\\\\"
            case " "..."~": out.unicodeScalars.append(scalar)
            default: out += "\\u{\(String(scalar.value, radix: 16))}"
            }
        }
        if text.count > 80 { out += "…" }
        return out + "\""
    }
}
