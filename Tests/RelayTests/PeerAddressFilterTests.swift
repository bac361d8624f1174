import Testing
import Wire
@testable import Relay

@Suite struct PeerAddressFilterTests {
    /// Addresses from coturn's security advisories and the usual SSRF lists: every one is a
    /// way back into the relay host or its networks, and must be refused by default.
    static let denied = [
        // loopback, and the "this host" range (CVE-2020-26262: 0.0.0.0 reached loopback)
        "127.0.0.1", "127.255.255.254", "0.0.0.0", "0.1.2.3", "::1", "::",
        // IPv4-mapped / -compatible / SIIT encodings of loopback and of 0.0.0.0
        "::ffff:127.0.0.1", "::ffff:0.0.0.0", "::127.0.0.1", "::0.0.0.0", "::ffff:0:127.0.0.1",
        // 6to4, NAT64 (well-known and local-use) and Teredo wrapping loopback / private
        "2002:7f00:1::", "2002:a00:1::1", "64:ff9b::127.0.0.1", "64:ff9b::10.0.0.1", "64:ff9b:1::7f00:1",
        "2001:0:7f00:1::1", "2001:0:4136:e378:8000:63bf:80ff:fffe",  // Teredo client 127.0.0.1 (obfuscated)
        // RFC 1918, CGNAT, link-local and cloud metadata
        "10.0.0.1", "172.16.0.1", "172.31.255.255", "192.168.1.1", "100.64.0.1", "100.100.100.200",
        "169.254.169.254", "169.254.0.1", "::ffff:169.254.169.254", "::ffff:10.1.2.3", "::ffff:192.168.0.1",
        "192.0.0.192", "fd00:ec2::254", "fe80::1", "fc00::1", "fec0::1",
        // multicast, broadcast, reserved
        "224.0.0.1", "239.255.255.250", "255.255.255.255", "240.0.0.1", "ff02::1", "ff05::1:3",
    ]

    static let permitted = [
        "8.8.8.8", "1.1.1.1", "203.0.113.5", "172.32.0.1", "100.128.0.1", "2001:db8::1", "2606:4700::1111",
        "::ffff:8.8.8.8", "64:ff9b::8.8.8.8", "2002:808:808::1",
    ]

    @Test(arguments: denied)
    func deniedByDefault(text: String) throws {
        let address = try #require(IPAddress(text), "cannot parse \(text)")
        #expect(!PeerAddressFilter().permits(address), "\(text) was permitted")
    }

    @Test(arguments: permitted)
    func publicAddressesArePermitted(text: String) throws {
        #expect(PeerAddressFilter().permits(try #require(IPAddress(text))))
    }

    @Test func anAllowListOpensARangeAndItsEncodings() throws {
        let filter = PeerAddressFilter(allowed: [CIDR("127.0.0.0/8")!])
        #expect(filter.permits(IPAddress("127.0.0.1")!))
        #expect(filter.permits(IPAddress("::ffff:127.0.0.1")!))
        #expect(!filter.permits(IPAddress("10.0.0.1")!))
        #expect(!filter.permits(IPAddress("::1")!))
    }

    /// The server's own public address: its relay ports may be peers (two relay-only clients
    /// of this server reach each other there), nothing else on it, in any IPv6 encoding;
    /// an allow-list entry opens it all (tests on loopback).
    @Test func theServersOwnAddressesOpenOnlyTheRelayPorts() {
        var filter = PeerAddressFilter()
        filter.own = [IPAddress("203.0.113.1")!, IPAddress("2001:db8::1")!]
        filter.ownOpenPorts = 49152...65535
        func at(_ text: String, _ port: UInt16) -> TransportAddress { TransportAddress(ip: IPAddress(text)!, port: port) }
        #expect(filter.permits(at("203.0.113.1", 49152)) && filter.permits(at("203.0.113.1", 65535)))
        #expect(!filter.permits(at("203.0.113.1", 49151)) && !filter.permits(at("203.0.113.1", 3478)))
        #expect(!filter.permits(at("203.0.113.1", 8080)) && !filter.permits(at("203.0.113.1", 443)))
        #expect(!filter.permits(at("::ffff:203.0.113.1", 3478)) && !filter.permits(at("2002:cb00:7101::", 8080)))
        #expect(filter.permits(at("::ffff:203.0.113.1", 50000)))
        #expect(!filter.permits(at("2001:db8::1", 3478)) && filter.permits(at("2001:db8::1", 50000)))
        #expect(filter.permits(at("203.0.113.2", 3478)))  // a neighbour is not us
        #expect(filter.permits(IPAddress("203.0.113.1")!))  // CreatePermission is by address alone
        filter.allowed = [CIDR("203.0.113.1")!]
        #expect(filter.permits(at("203.0.113.1", 3478)))
    }

    @Test func aDenyListBeatsAnAllowList() {
        let filter = PeerAddressFilter(allowed: [CIDR("0.0.0.0/0")!], denied: [CIDR("203.0.113.0/24")!])
        #expect(filter.permits(IPAddress("10.0.0.1")!))
        #expect(!filter.permits(IPAddress("203.0.113.9")!))
        #expect(!filter.permits(IPAddress("::ffff:203.0.113.9")!))
    }

    @Test(arguments: ["10.0.0.0/8", "::/0", "2001:db8::/32", "1.2.3.4", "fe80::1/128"])
    func cidrParses(text: String) {
        #expect(CIDR(text) != nil)
    }

    @Test(arguments: ["", "10.0.0.0/33", "::/129", "10.0.0.0/-1", "10.0.0/8", "abc/8", "10.0.0.0/8/8", "10.0.0.0/ 8"])
    func badCIDRsAreRefused(text: String) {
        #expect(CIDR(text) == nil)
    }
}

@Suite struct NonceTests {
    let issuer = NonceIssuer(lifetime: 600)
    let client = IPAddress("192.0.2.10")!

    @Test func aNonceIsValidForItsLifetimeAndForItsClientOnly() {
        let nonce = issuer.make(for: client, now: 1000)
        #expect(issuer.check(nonce, for: client, now: 1000) == .valid)
        #expect(issuer.check(nonce, for: client, now: 1599) == .valid)
        #expect(issuer.check(nonce, for: client, now: 1600) == .stale)
        #expect(issuer.check(nonce, for: IPAddress("192.0.2.11")!, now: 1000) == .invalid)
    }

    @Test func anotherServersNonceOrGarbageIsInvalid() {
        let other = NonceIssuer(lifetime: 600)
        #expect(issuer.check(other.make(for: client, now: 1000), for: client, now: 1000) == .invalid)
        for garbage in ["", "abc", String(repeating: "z", count: 40), String(repeating: "0", count: 41)] {
            #expect(issuer.check(garbage, for: client, now: 1000) == .invalid)
        }
        // A nonce from the future is not accepted.
        #expect(issuer.check(issuer.make(for: client, now: 2000), for: client, now: 1000) == .invalid)
    }
}

@Suite struct RateLimiterTests {
    @Test func aBurstThenRefill() {
        var limiter = RateLimiter(burst: 2, perSecond: 1)
        let ip = IPAddress("192.0.2.1")!
        #expect(limiter.allows(ip, nowMillis: 0))
        limiter.recordFailure(ip, nowMillis: 0)
        limiter.recordFailure(ip, nowMillis: 0)
        #expect(!limiter.allows(ip, nowMillis: 0))
        #expect(limiter.allows(ip, nowMillis: 1000))
        limiter.prune(nowMillis: 10_000)
        #expect(limiter.trackedKeys == 0)
    }

    @Test func theNumberOfTrackedSourcesIsBounded() {
        var limiter = RateLimiter(burst: 5, perSecond: 0.001, maximumKeys: 10)
        for index in 0..<100 { limiter.recordFailure(.v4(UInt32(index)), nowMillis: 0) }
        #expect(limiter.trackedKeys <= 10)
    }
}
