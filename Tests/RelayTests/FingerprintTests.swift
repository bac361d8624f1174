import Testing
import Wire
@testable import Relay

/// RFC 8489 §14.7: a message whose FINGERPRINT does not match is dropped.
@Suite struct FingerprintTests {
    @Test func aRequestWithAWrongFingerprintIsDroppedUnansweredAndCounted() throws {
        let harness = Harness()
        let request = STUNMessage(.binding, .request)
        var bytes = request.encoded(integrityKey: nil, fingerprint: true)
        bytes[bytes.count - 1] ^= 0x01
        let outcome = harness.core.handle(try STUNMessage(bytes: bytes), from: harness.client, time: harness.time)
        guard case .none = outcome else {
            Issue.record("a message with a wrong FINGERPRINT was answered: \(outcome)")
            return
        }
        #expect(harness.core.counters.badFingerprints == 1)
    }

    @Test func aRightFingerprintOrNoneIsAnswered() throws {
        let harness = Harness()
        for fingerprint in [true, false] {
            let bytes = STUNMessage(.binding, .request).encoded(integrityKey: nil, fingerprint: fingerprint)
            guard case .respond = harness.core.handle(try STUNMessage(bytes: bytes), from: harness.client,
                                                      time: harness.time) else {
                Issue.record("a Binding request (fingerprint: \(fingerprint)) was not answered")
                continue
            }
        }
        #expect(harness.core.counters.badFingerprints == 0)
    }

    @Test func anAllocateWithAWrongFingerprintAllocatesNothing() throws {
        let harness = Harness()
        harness.nonce = harness.core.nonces.make(for: harness.client.client.ip, now: harness.time.unix)
        let request = STUNMessage(.allocate, .request, attributes: [
            .requestedTransport(17), .text(.username, "bob"), .text(.realm, "switchboard"), .text(.nonce, harness.nonce!),
        ])
        var bytes = request.encoded(integrityKey: harness.key, fingerprint: true)
        bytes[bytes.count - 4] ^= 0x80
        guard case .none = harness.core.handle(try STUNMessage(bytes: bytes), from: harness.client, time: harness.time)
        else {
            Issue.record("an Allocate with a wrong FINGERPRINT was acted on")
            return
        }
        #expect(harness.core.lastAuthenticated == nil)
        #expect(harness.core.counters.badFingerprints == 1)
        #expect(harness.core.counters.authFailures == 0)
    }
}
