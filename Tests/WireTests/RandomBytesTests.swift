import Testing
import Wire

@Suite struct RandomBytesTests {
    @Test func givesExactlyTheCountAskedFor() {
        for count in [0, 1, 7, 8, 9, 16, 32, 33] {
            #expect(randomBytes(count).count == count)
        }
    }

    @Test func drawsFreshBytesEachTime() {
        // 128 bits twice: equal only if the generator is broken.
        #expect(randomBytes(16) != randomBytes(16))
    }

    @Test func usesEveryByteValue() {
        // 64 KiB of CSPRNG output misses one of the 256 byte values with probability ~1e-108;
        // a bug that leaves bytes zeroed or repeats one word does not cover them all.
        #expect(Set(randomBytes(65_536)).count == 256)
        #expect(Set(randomBytes(32)).count > 16)
    }
}
