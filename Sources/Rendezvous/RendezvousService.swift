import Foundation
import Logging
import ServiceLifecycle
import Store

/// RendezvousService runs the signaling housekeeping: once a second, offers nobody answered
/// in time become `expired` (with an event for the caller); once a minute (or once per
/// session retention, when that is shorter), expired events and login tokens, and sessions
/// unchanged for the retention, are deleted.
package struct RendezvousService: Service, CustomStringConvertible {
    /// ServiceLifecycle logs services by description: never the configuration (it holds the TURN secret).
    package var description: String { "RendezvousService" }

    let database: SwitchboardDatabase
    let hub: EventHub
    let configuration: RendezvousConfiguration
    let logger: Logger

    package init(database: SwitchboardDatabase, hub: EventHub, configuration: RendezvousConfiguration, logger: Logger) {
        self.database = database
        self.hub = hub
        self.configuration = configuration
        self.logger = logger
    }

    package func run() async throws {
        await cancelWhenGracefulShutdown {
            var ticks = 0
            let purgeEvery = max(1, min(60, configuration.sessionRetention))
            while !Task.isCancelled {
                try? await Task.sleep(for: .seconds(1))
                ticks += 1
                do {
                    let expired = try await database.expireOffers(eventTTL: configuration.eventTTL) { id in
                        #"{"session":"\#(id)"}"#
                    }
                    for event in expired { hub.notify(event) }
                    if ticks % purgeEvery == 0 {
                        try await database.purgeExpiredEvents()
                        try await database.purgeOldSessions(retention: configuration.sessionRetention)
                    }
                } catch is CancellationError {
                    break
                } catch {
                    logger.error("signaling housekeeping failed", metadata: ["error": "\(error)"])
                }
            }
        }
        // Shutting down: end every event stream so clients reconnect elsewhere or later.
        hub.shutDown()
    }
}
