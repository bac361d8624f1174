import Foundation
import Logging
import ServiceLifecycle
import Store

/// RendezvousService runs the signaling housekeeping, once a second: offers nobody answered
/// in time become `expired` (with an event for the caller), and expired events and login
/// tokens, and sessions unchanged for the retention, are deleted.
///
/// The deletes run every second in small transactions rather than once a minute: at a
/// thousand sessions a second a minute's worth is 60k sessions and 120k events, each delete
/// touching random pages of the per-peer indexes, and the minute's purge held the write lock
/// in 500- and 1000-row transactions for about a second in all; the offers arriving then waited
/// up to 420 ms. A second's worth is spread over small transactions (see `deleteOldestRows`).
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
            var tick = 0
            while !Task.isCancelled {
                try? await Task.sleep(for: .seconds(1))
                tick &+= 1
                do {
                    let expired = try await database.expireOffers(eventTTL: configuration.eventTTL) { id in
                        (try? SessionsAPI.eventJSON(SessionsAPI.SessionOnlyEvent(session: id))) ?? "{}"
                    }
                    for event in expired { hub.notify(event) }
                    try await database.purgeExpiredEvents()
                    try await database.purgeOldSessions(retention: configuration.sessionRetention)
                    // History is kept for days: once a minute is plenty (and the first second after start).
                    if tick % 60 == 1 { try await database.purgeOldHistory(retention: configuration.historyRetention) }
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
