import Testing
import Wire

/// Bytes from hex text in a test's source; spaces and newlines are ignored.
func hex(_ text: String) -> [UInt8] {
    guard let bytes = hexBytes(text) else { preconditionFailure("not hex: \(text)") }
    return bytes
}

@Suite struct HexTests {
    /// RFC 4648 §10's base16 vectors, in both cases, with the spaces and line breaks vectors are written with.
    @Test(arguments: [("", ""), ("f", "66"), ("fo", "666F"), ("foo", "666F6F"), ("foob", "666F6F62"),
                      ("fooba", "666F6F6261"), ("foobar", "666F6F626172")])
    func base16VectorsDecodeAndEncode(text: String, encoded: String) {
        #expect(hexBytes(encoded) == Array(text.utf8))
        #expect(hexBytes(encoded.lowercased()) == Array(text.utf8))
        #expect(hexString(Array(text.utf8)) == encoded.lowercased())
    }

    @Test func spacesAndLineBreaksAreSkipped() {
        #expect(hexBytes("de ad\nbe ef") == [0xDE, 0xAD, 0xBE, 0xEF])
    }

    @Test(arguments: ["0", "abc", "0g", "zz", "12 3", "0x12", "12-34"])
    func textThatIsNotWholeBytesOfHexIsRefused(text: String) {
        #expect(hexBytes(text) == nil)
    }
}
