/// ListenAddress is a `HOST:PORT` from the configuration (`[::1]:8080` for IPv6 literals).
struct ListenAddress: Sendable, Equatable, CustomStringConvertible {
    var host: String
    var port: Int

    enum ParseError: Error, CustomStringConvertible {
        case invalid(String, reason: String)
        var description: String {
            switch self {
            case .invalid(let text, let reason): "invalid listen address \"\(text)\": \(reason) (expected HOST:PORT or [IPv6]:PORT)"
            }
        }
    }

    init(host: String, port: Int) {
        self.host = host
        self.port = port
    }

    init(parsing text: String) throws(ParseError) {
        let hostPart: Substring
        let portPart: Substring
        if text.hasPrefix("[") {
            guard let close = text.firstIndex(of: "]") else { throw .invalid(text, reason: "missing ]") }
            hostPart = text[text.index(after: text.startIndex)..<close]
            let rest = text[text.index(after: close)...]
            guard rest.first == ":" else { throw .invalid(text, reason: "missing :PORT after ]") }
            portPart = rest.dropFirst()
            guard hostPart.contains(":") else { throw .invalid(text, reason: "brackets are for IPv6 addresses") }
        } else {
            guard let colon = text.lastIndex(of: ":") else { throw .invalid(text, reason: "missing :PORT") }
            hostPart = text[..<colon]
            portPart = text[text.index(after: colon)...]
            guard !hostPart.contains(":") else { throw .invalid(text, reason: "put IPv6 addresses in brackets") }
        }
        guard !hostPart.isEmpty else { throw .invalid(text, reason: "empty host") }
        guard hostPart.allSatisfy({ $0.isASCII && ($0.isLetter || $0.isNumber || ".-_:%".contains($0)) }) else {
            throw .invalid(text, reason: "bad character in host")
        }
        guard portPart.allSatisfy({ $0.isASCII && $0.isNumber }), !portPart.isEmpty, portPart.count <= 5,
              let port = Int(portPart), (0...65535).contains(port)
        else { throw .invalid(text, reason: "port must be 0-65535") }
        self.host = String(hostPart)
        self.port = port
    }

    var description: String { host.contains(":") ? "[\(host)]:\(port)" : "\(host):\(port)" }
}
