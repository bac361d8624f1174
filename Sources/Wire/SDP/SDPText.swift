/// SDPText checks that text is an SDP description (RFC 8866 §5) or an SDP fragment (RFC 8840)
/// in shape: `<type>=<value>` lines, one lower-case letter for the type, CRLF or LF endings.
/// It is the gate the signaling API puts in front of stored SDP; MediaEdge parses SDP fully.
public enum SDPText {
    public enum Problem: Error, Sendable, Equatable, CustomStringConvertible {
        case empty
        case notUTF8
        case badLine(number: Int)
        case missingVersion
        case noMediaSection
        case tooManyLines

        public var description: String {
            switch self {
            case .empty: "empty SDP"
            case .notUTF8: "SDP is not UTF-8"
            case .badLine(let number): "line \(number) is not <letter>=<value>"
            case .missingVersion: "SDP must start with v=0"
            case .noMediaSection: "SDP has no m= line"
            case .tooManyLines: "SDP has too many lines"
            }
        }
    }

    public static let maximumLines = 2000

    /// The lines of an SDP body, each checked to be `<letter>=<value>` without control
    /// characters.
    ///
    /// Read as UTF-8 bytes, not Characters (grapheme breaking costs ten times more, and every
    /// offer, answer and fragment the API takes passes here). The result is the same: CR and LF
    /// are always breaks of their own (no grapheme joins them to what follows; CR LF is one),
    /// and every byte of a multi-byte scalar is ≥ 0x80, so no such byte looks like a control
    /// character, a letter or "=".
    public static func lines(_ text: String) throws(Problem) -> [Substring] {
        var lines: [Substring] = []
        let bytes = text.utf8
        var start = bytes.startIndex
        var cursor = start
        while true {
            let end = cursor == bytes.endIndex
            if end || bytes[cursor] == 0x0A || bytes[cursor] == 0x0D {
                if start != cursor {
                    guard lines.count < maximumLines else { throw .tooManyLines }
                    lines.append(text[start..<cursor])
                }
                if end { break }
                start = bytes.index(after: cursor)
            }
            cursor = bytes.index(after: cursor)
        }
        guard !lines.isEmpty else { throw .empty }
        for (index, line) in lines.enumerated() {
            let bytes = line.utf8
            guard bytes.count >= 2, let type = bytes.first, (0x61...0x7A).contains(type),
                  bytes[bytes.index(after: bytes.startIndex)] == 0x3D,
                  !bytes.contains(where: { $0 < 0x20 && $0 != 0x09 || $0 == 0x7F }) else {
                throw .badLine(number: index + 1)
            }
        }
        return lines
    }

    /// A full session description: starts with `v=0` and has at least one media section.
    /// Returns its lines.
    @discardableResult
    public static func validateDescription(_ text: String) throws(Problem) -> [Substring] {
        let lines = try lines(text)
        // Compared as UTF-8, not as Characters: "m=" followed by a combining mark or an
        // emoji modifier is one Character "=…" and would not have the prefix "m=".
        guard let first = lines.first, first.utf8.elementsEqual("v=0".utf8) else { throw .missingVersion }
        guard lines.contains(where: { $0.utf8.starts(with: "m=".utf8) }) else { throw .noMediaSection }
        return lines
    }

    /// A trickle-ICE fragment (RFC 8840 §4): lines such as a=ice-ufrag, a=mid, m=,
    /// a=candidate and a=end-of-candidates; no v= line.
    public static func validateFragment(_ text: String) throws(Problem) {
        _ = try lines(text)
    }
}
