import Logging
import NIOConcurrencyHelpers
import Testing
@testable import switchboard

@Suite struct LogHandlerTests {
    /// Collects what a StreamLogHandler writes.
    final class Capture: TextOutputStream, @unchecked Sendable {
        let text = NIOLockedValueBox("")
        func write(_ string: String) { text.withLockedValue { $0 += string } }
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
        #expect(capture.text.withLockedValue { $0 }.isEmpty)
        logger.info("offer stored", metadata: ["peer": "bob", "session": "s1"])
        let line = capture.text.withLockedValue { $0 }
        // StreamLogHandler's format: sorted key=value pairs, then the source and message.
        #expect(line.contains("info test: hb.request.id=42 peer=bob session=s1 [SwitchboardTests] offer stored\n"), "\(line)")
        #expect(logger[metadataKey: "peer"] == "alice")
        logger[metadataKey: "peer"] = nil
        logger.warning("plain")
        #expect(capture.text.withLockedValue { $0 }.hasSuffix("warning test: hb.request.id=42 [SwitchboardTests] plain\n"))
    }

    @Test func aProvidersMetadataSitsBetweenTheLoggersAndTheMessages() {
        let capture = Capture()
        let provider = Logger.MetadataProvider { ["trace": "t1", "peer": "from-provider"] }
        let logger = Logger(label: "test") { label in
            var output = StreamLogHandler(label: label, stream: capture, metadataProvider: provider)
            output[metadataKey: "node"] = "n1"  // set before the wrapper: kept, not lost
            var handler = DeferredMetadataLogHandler(output: output)
            handler[metadataKey: "peer"] = "from-logger"
            handler[metadataKey: "trace"] = "from-logger"
            return handler
        }
        logger.info("a", metadata: ["trace": "t2"])
        #expect(capture.text.withLockedValue { $0 }.contains("node=n1 peer=from-provider trace=t2 [SwitchboardTests] a\n"),
                "\(capture.text.withLockedValue { $0 })")
    }
}
