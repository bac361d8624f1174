import Hummingbird
import NIOCore

/// SwitchboardRequestContext is the per-request context of the HTTP API: Hummingbird's core
/// context plus the client's address (for per-IP login limits and the audit log).
package struct SwitchboardRequestContext: RequestContext, RemoteAddressRequestContext {
    package var coreContext: CoreRequestContextStorage
    package let remoteAddress: SocketAddress?

    package init(source: ApplicationRequestContextSource) {
        coreContext = .init(source: source)
        remoteAddress = source.channel.remoteAddress
    }

    /// The client IP as text, for limits and the audit log.
    package var clientIP: String {
        remoteAddress?.ipAddress ?? "unknown"
    }
}

extension StringProtocol {
    /// The value without the optional whitespace (spaces and tabs, RFC 9110 §5.6.3) HTTP
    /// allows around it. Foundation's `trimmingCharacters(in:)` bridges through NSString,
    /// which showed in profiles for headers read on every request.
    var trimmingOWS: SubSequence {
        var start = startIndex
        var end = endIndex
        while start < end, self[start] == " " || self[start] == "\t" { start = index(after: start) }
        while end > start, case let last = index(before: end), self[last] == " " || self[last] == "\t" { end = last }
        return self[start..<end]
    }
}
