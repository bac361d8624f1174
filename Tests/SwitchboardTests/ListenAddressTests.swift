import Testing
@testable import switchboard

@Suite struct ListenAddressTests {
    @Test(arguments: [
        ("127.0.0.1:8080", "127.0.0.1", 8080),
        ("0.0.0.0:0", "0.0.0.0", 0),
        ("localhost:65535", "localhost", 65535),
        ("[::1]:3478", "::1", 3478),
        ("[fe80::1%lo]:80", "fe80::1%lo", 80),
    ])
    func validAddressesParse(text: String, host: String, port: Int) throws {
        let address = try ListenAddress(parsing: text)
        #expect(address == ListenAddress(host: host, port: port))
        #expect(address.description == text)
    }

    @Test(arguments: ["", "8080", ":8080", "127.0.0.1", "127.0.0.1:", "127.0.0.1:65536", "127.0.0.1:-1",
                      "127.0.0.1:80a", "::1:80", "[::1]", "[::1]80", "[127.0.0.1]:80", "[::1:80",
                      "host name:80", "127.0.0.1:0000080", "h/st:80"])
    func invalidAddressesAreRefused(text: String) {
        #expect(throws: ListenAddress.ParseError.self) { try ListenAddress(parsing: text) }
    }
}
