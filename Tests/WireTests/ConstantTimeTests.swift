import Testing
@testable import Wire

/// The one constant-time comparison (MESSAGE-INTEGRITY, peer keys, stream tokens, nonces).
@Suite struct ConstantTimeTests {
    @Test func constantTimeEqualsAnswersLikeEquality() {
        #expect(constantTimeEquals([UInt8](), [UInt8]()))
        #expect(constantTimeEquals([1, 2, 3] as [UInt8], [1, 2, 3] as [UInt8]))
        #expect(!constantTimeEquals([1, 2, 3] as [UInt8], [1, 2, 4] as [UInt8]))
        #expect(!constantTimeEquals([1, 2, 3] as [UInt8], [0, 2, 3] as [UInt8]))
        #expect(!constantTimeEquals([1, 2, 3] as [UInt8], [1, 2] as [UInt8]))
        #expect(!constantTimeEquals([0x80] as [UInt8], [0x00] as [UInt8]))
    }

    /// The property that makes it constant-time: it reads every byte of both inputs whether
    /// they differ at the first byte, the last, or not at all.
    @Test(arguments: [0, 31, 63, nil as Int?])
    func constantTimeEqualsReadsEveryByteWhereverTheyDiffer(differAt: Int?) {
        let counter = ReadCounter()
        let a = CountingBytes(bytes: [UInt8](repeating: 7, count: 64), counter: counter)
        var other = [UInt8](repeating: 7, count: 64)
        if let differAt { other[differAt] = 8 }
        let b = CountingBytes(bytes: other, counter: counter)
        #expect(constantTimeEquals(a, b) == (differAt == nil))
        #expect(counter.reads == 128)
    }
}

final class ReadCounter: @unchecked Sendable {
    var reads = 0
}

/// A byte collection that counts how often its elements are read.
struct CountingBytes: Collection {
    let bytes: [UInt8]
    let counter: ReadCounter
    var startIndex: Int { bytes.startIndex }
    var endIndex: Int { bytes.endIndex }
    func index(after i: Int) -> Int { i + 1 }
    subscript(position: Int) -> UInt8 {
        counter.reads += 1
        return bytes[position]
    }
}
