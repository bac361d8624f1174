import Logging
import Synchronization
import Testing
@testable import switchboard

@Suite struct LogHandlerTests {
    /// Collects what a StreamLogHandler writes.
    final class Capture: TextOutputStream, @unchecked Sendable {
        let text = Mutex("")
        func write(_ string: String) { text.withLock { $0 += string } }
    }

    @Test func metadataIsWrittenWithTheMessageAndTheMessagesOwnWins() {
        let capture = Capture()
        var logger = Logger(label: "test") { label in
            var handler = DeferredMetadataLogHandler(output: StreamLogHandler(label: label, stream: capture, metadataProvider: nil))
            handler.logLevel = .info
            return handler
        }
        logger[metadataKey: "hb.request.id"] = "42"
        logger[metadataKey: "peer"] = "alice"
        logger.debug("below the level")
        #expect(capture.text.withLock { $0 }.isEmpty)
        logger.info("offer stored", metadata: ["peer": "bob", "session": "s1"])
        let line = capture.text.withLock { $0 }
        // StreamLogHandler's format: sorted key=value pairs, then the source and message.
        #expect(line.contains("info test: hb.request.id=42 peer=bob session=s1 [SwitchboardTests] offer stored\n"), "\(line)")
        #expect(logger[metadataKey: "peer"] == "alice")
        logger[metadataKey: "peer"] = nil
        logger.warning("plain")
        #expect(capture.text.withLock { $0 }.hasSuffix("warning test: hb.request.id=42 [SwitchboardTests] plain\n"))
    }
}
