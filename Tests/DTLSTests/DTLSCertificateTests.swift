import Foundation
import Testing
@testable import DTLS

@Suite struct DTLSCertificateTests {
    @Test func theSDPFingerprintIsTheHashNameAndUpperCaseHexPairs() throws {
        let certificate = try Certificates.client
        let text = certificate.sdpFingerprint
        #expect(text.hasPrefix("sha-256 "))
        let pairs = text.dropFirst("sha-256 ".count).split(separator: ":", omittingEmptySubsequences: false)
        #expect(pairs.count == 32)
        #expect(pairs.allSatisfy { $0.count == 2 && $0.allSatisfy { "0123456789ABCDEF".contains($0) } })
        #expect(certificate.fingerprint == String(text.dropFirst("sha-256 ".count)))
        #expect(DTLSFingerprint(sdp: text) == certificate.sha256Fingerprint)
        #expect(DTLSFingerprint(sdp: text.lowercased()) == certificate.sha256Fingerprint)
        #expect(DTLSFingerprint(sdp: "SHA-256 " + certificate.fingerprint) == certificate.sha256Fingerprint)
        #expect(certificate.sha256Fingerprint.sdpValue == text)
        #expect(certificate.fingerprint != (try Certificates.server.fingerprint))
    }

    @Test func otherHashFunctionsGiveDigestsOfTheirOwnLength() throws {
        let certificate = try Certificates.client
        for algorithm in DTLSFingerprint.Algorithm.allCases {
            let fingerprint = try certificate.fingerprint(algorithm)
            #expect(fingerprint.digest.count == algorithm.digestLength)
            #expect(DTLSFingerprint(sdp: fingerprint.sdpValue) == fingerprint)
        }
        #expect(try certificate.fingerprint(.sha256) == certificate.sha256Fingerprint)
    }

    @Test(arguments: [
        "",
        "sha-256",
        "AB:CD",
        "md5 AB:CD:EF:01:23:45:67:89:AB:CD:EF:01:23:45:67:89",
        "sha-1 AB:CD",
        "sha-1 AB:CD:EF:01:23:45:67:89:AB:CD:EF:01:23:45:67:89:AB:CD:EF:01:",
        "sha-1 AB:CD:EF:01:23:45:67:89:AB:CD:EF:01:23:45:67:89:AB:CD:EF:0G",
        "sha-1 AB:CD:EF:01:23:45:67:89:AB:CD:EF:01:23:45:67:89:AB:CD:EF:012",
        "sha-1 AB:CD:EF:01:23:45:67:89:AB:CD:EF:01:23:45:67:89:AB:CD:EF:+1",
        "sha-1 AB:CD:EF:01:23:45:67:89:AB:CD:EF:01:23:45:67:89:AB:CD:EF:01 extra",
    ])
    func malformedSDPFingerprintsAreRefused(text: String) {
        #expect(DTLSFingerprint(sdp: text) == nil)
    }

    @Test func aDigestOfTheWrongLengthIsNoFingerprint() {
        #expect(DTLSFingerprint(algorithm: .sha256, digest: [UInt8](repeating: 1, count: 20)) == nil)
        #expect(DTLSFingerprint(algorithm: .sha1, digest: [UInt8](repeating: 1, count: 20))?.hex.count == 59)
    }

    @Test func theCertificateSurvivesPEMAndTheFingerprintStays() throws {
        let certificate = try DTLSCertificate.generate()
        let again = try DTLSCertificate(pem: certificate.pem)
        #expect(again.fingerprint == certificate.fingerprint)
        #expect(certificate.pem.contains("BEGIN PRIVATE KEY") && certificate.pem.contains("BEGIN CERTIFICATE"))
        #expect(throws: OpenSSLError.self) { try DTLSCertificate(pem: "not a certificate") }
    }

    @Test func loadOrCreateKeepsTheCertificateInItsFile() throws {
        let file = NSTemporaryDirectory() + "dtls-certificate-\(UUID().uuidString).pem"
        defer { try? FileManager.default.removeItem(atPath: file) }
        let created = try DTLSCertificate.loadOrCreate(file: file)
        let loaded = try DTLSCertificate.loadOrCreate(file: file)
        #expect(loaded.fingerprint == created.fingerprint)
        let permissions = try FileManager.default.attributesOfItem(atPath: file)[.posixPermissions] as? Int
        #expect(permissions == 0o600)
    }
}
