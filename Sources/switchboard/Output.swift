import Foundation

/// Output writes straight to the file descriptors (unbuffered), so output interleaves
/// correctly and is complete even when the process is stopped by a signal.
enum Output {
    static func line(_ text: String) {
        write(Data((text + "\n").utf8), to: .standardOutput)
    }

    /// A human note on stderr, keeping stdout for what scripts consume.
    static func note(_ text: String) {
        write(Data((text + "\n").utf8), to: .standardError)
    }

    /// Writes, or ends the process if it cannot: quietly when the reader went away
    /// (`switchboard peer list | head -1`: EPIPE, where C tools die of SIGPIPE), with status 1
    /// otherwise (a full disk). Never a crash.
    private static func write(_ data: Data, to handle: FileHandle) {
        do {
            try handle.write(contentsOf: data)
        } catch {
            let underlying = (error as NSError).userInfo[NSUnderlyingErrorKey] as? NSError
            exit(underlying?.code == Int(EPIPE) ? 0 : 1)
        }
    }

    static func json(_ value: some Encodable) {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys, .withoutEscapingSlashes]
        encoder.dateEncodingStrategy = .iso8601
        // Encoding our own plain structs cannot fail.
        let data = (try? encoder.encode(value)) ?? Data("null".utf8)
        line(String(decoding: data, as: UTF8.self))
    }

    static func table(header: [String]?, rows: [[String]]) {
        let all = (header.map { [$0] } ?? []) + rows
        guard let columns = all.map(\.count).max() else { return }
        var widths = [Int](repeating: 0, count: columns)
        for row in all {
            for (index, cell) in row.enumerated() { widths[index] = max(widths[index], cell.count) }
        }
        var text = ""
        for row in all {
            let cells = row.enumerated().map { index, cell in
                index == row.count - 1 ? cell : cell.padding(toLength: widths[index], withPad: " ", startingAt: 0)
            }
            text += cells.joined(separator: "  ") + "\n"
        }
        write(Data(text.utf8), to: .standardOutput)
    }

    static func time(_ date: Date?) -> String {
        guard let date else { return "never" }
        return formatter.string(from: date)
    }

    nonisolated(unsafe) private static let formatter: DateFormatter = {
        let formatter = DateFormatter()
        formatter.locale = Locale(identifier: "en_US_POSIX")
        formatter.timeZone = TimeZone(identifier: "UTC")
        formatter.dateFormat = "yyyy-MM-dd HH:mm:ss'Z'"
        return formatter
    }()
}
