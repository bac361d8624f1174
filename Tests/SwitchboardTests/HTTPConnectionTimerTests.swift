import Testing
import Wire
@testable import Rendezvous

@Suite struct HTTPConnectionTimerTests {
    let start = ContinuousClock.now
    let limits = HTTPConnectionTimer.Limits(request: .seconds(10), idle: .seconds(75))

    func at(_ milliseconds: Int64) -> ContinuousClock.Instant { start + .milliseconds(milliseconds) }

    @Test func aNewConnectionMustSendItsRequestWithinTheRequestTimeout() {
        let timer = HTTPConnectionTimer(limits: limits, acceptedAt: start)
        #expect(timer.phase == .reading)
        #expect(!timer.expired(at: at(9_999)))
        #expect(timer.expired(at: at(10_000)))
    }

    @Test func bytesTrickledIntoARequestDoNotMoveItsDeadline() {
        var timer = HTTPConnectionTimer(limits: limits, acceptedAt: start)
        for second in 1...9 { timer.bytesArrived(at: at(Int64(second) * 1000)) }
        #expect(timer.expired(at: at(10_000)))
    }

    @Test func aRequestBeingAnsweredHasNoDeadline() {
        var timer = HTTPConnectionTimer(limits: limits, acceptedAt: start)
        timer.requestEnded()
        #expect(timer.phase == .answering)
        #expect(timer.deadline == nil)
        // A long-poll or an SSE stream: hours later it is still open.
        #expect(!timer.expired(at: at(10 * 3_600_000)))
    }

    @Test func afterTheResponseTheConnectionIsIdleThenTheNextRequestHasItsOwnClock() {
        var timer = HTTPConnectionTimer(limits: limits, acceptedAt: start)
        timer.requestEnded()
        timer.responseEnded(at: at(1_000))
        #expect(timer.phase == .idle)
        #expect(!timer.expired(at: at(75_999)))
        #expect(timer.expired(at: at(76_000)))
        // The next request's first byte comes at 30 s: 10 s from then, not 75 from the response.
        timer.bytesArrived(at: at(30_000))
        #expect(timer.phase == .reading)
        timer.bytesArrived(at: at(35_000))
        #expect(!timer.expired(at: at(39_999)))
        #expect(timer.expired(at: at(40_000)))
    }

    @Test func pipelinedRequestsKeepTheConnectionAnsweringUntilTheLastResponse() {
        var timer = HTTPConnectionTimer(limits: limits, acceptedAt: start)
        timer.requestEnded()
        timer.requestEnded()
        timer.responseEnded(at: at(1_000))
        #expect(timer.phase == .answering)
        timer.responseEnded(at: at(2_000))
        #expect(timer.phase == .idle)
        #expect(timer.deadline == at(77_000))
    }

    @Test func anUpgradedConnectionIsNoLongerTimed() {
        var timer = HTTPConnectionTimer(limits: limits, acceptedAt: start)
        timer.requestEnded()
        timer.upgraded()
        timer.responseEnded(at: at(1_000))
        timer.bytesArrived(at: at(2_000))
        #expect(timer.phase == .exempt)
        #expect(!timer.expired(at: at(10 * 3_600_000)))
    }
}

@Suite struct HTTPSourceCounterTests {
    @Test func theCapRefusesTheNPlusFirstAndARelease() {
        let counter = HTTPSourceCounter(limit: 3)
        let address = IPAddress("198.51.100.7")!
        for _ in 0..<3 { #expect(counter.acquire(address)) }
        #expect(!counter.acquire(address))
        #expect(counter.acquire(IPAddress("198.51.100.8")!))
        counter.release(address)
        #expect(counter.acquire(address))
        #expect(counter.count(address) == 3)
    }

    @Test func ipv6IsCountedBySlash64AndMappedIPv4AsIPv4() {
        let counter = HTTPSourceCounter(limit: 2)
        #expect(counter.acquire(IPAddress("2001:db8:0:1::1")!))
        #expect(counter.acquire(IPAddress("2001:db8:0:1:8000::2")!))
        #expect(!counter.acquire(IPAddress("2001:db8:0:1:ffff::3")!))
        #expect(counter.acquire(IPAddress("2001:db8:0:2::1")!))
        #expect(counter.acquire(IPAddress("192.0.2.9")!))
        #expect(counter.acquire(IPAddress("::ffff:192.0.2.9")!))
        #expect(!counter.acquire(IPAddress("192.0.2.9")!))
    }

    @Test func zeroMeansNoLimit() {
        let counter = HTTPSourceCounter(limit: 0)
        for _ in 0..<1000 { #expect(counter.acquire(IPAddress("192.0.2.9")!)) }
        counter.release(IPAddress("192.0.2.9")!)
        #expect(counter.count(IPAddress("192.0.2.9")!) == 999)
    }
}
