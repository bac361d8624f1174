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
