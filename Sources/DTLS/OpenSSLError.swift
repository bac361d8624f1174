import CSSL

/// OpenSSLError is a failed OpenSSL call, with what OpenSSL's error queue said.
package struct OpenSSLError: Error, CustomStringConvertible, Sendable, Equatable {
    package var call: String
    package var reason: String

    package init(call: String, reason: String) {
        self.call = call
        self.reason = reason
    }

    package var description: String { "\(call): \(reason)" }

    /// Drains the thread's OpenSSL error queue into one error for `call`.
    static func drain(_ call: String) -> OpenSSLError {
        OpenSSLError(call: call, reason: drainReasons() ?? "failed")
    }

    /// What the thread's error queue holds, emptying it; nil when it is empty.
    static func drainReasons() -> String? {
        var reasons: [String] = []
        while case let code = ERR_get_error(), code != 0 {
            // The queue is bounded (ERR_NUM_ERRORS), so is this loop; keep a few for the text.
            guard reasons.count < 8 else { continue }
            var text = [CChar](repeating: 0, count: 256)
            ERR_error_string_n(code, &text, text.count)
            reasons.append(String(decoding: text.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self))
        }
        return reasons.isEmpty ? nil : reasons.joined(separator: "; ")
    }
}

/// Checks an OpenSSL return value that is 1 on success.
func check(_ result: Int32, _ call: String) throws(OpenSSLError) {
    guard result == 1 else { throw OpenSSLError.drain(call) }
}
