import Testing

@testable import FoyerGateway

/// The forwarding engine's rules on their own: what an upstream close means, when a request is
/// sent again, when a connection goes back to the pool.
@Suite struct ExchangeStateMachineTests {
  @Test func aStaleConnectionIsRetriedOnceForABodilessIdempotentRequest() {
    var machine = ExchangeStateMachine(idempotent: true, hasBody: false)
    #expect(machine.upstreamClosed(reused: true) == .retry)
    // The second connection closing too is the upstream's failure, not staleness.
    #expect(machine.upstreamClosed(reused: true) == .badGateway)
    // A fresh connection that closes was never stale.
    var fresh = ExchangeStateMachine(idempotent: true, hasBody: false)
    #expect(fresh.upstreamClosed(reused: false) == .badGateway)
  }

  @Test func requestsThatCouldActTwiceAreNotRetried() {
    var post = ExchangeStateMachine(idempotent: false, hasBody: false)
    #expect(post.upstreamClosed(reused: true) == .badGateway)
    // A body already streamed upstream is gone: the request cannot be sent again.
    var put = ExchangeStateMachine(idempotent: true, hasBody: true)
    put.sentBody()
    put.sentEnd()
    #expect(put.upstreamClosed(reused: true) == .badGateway)
  }

  @Test func aCloseMidAnswerAbortsAndEndsACloseDelimitedOne() {
    var midAnswer = ExchangeStateMachine(idempotent: true, hasBody: false)
    midAnswer.answerStarted(upstreamKeepAlive: true, untilClose: false)
    #expect(midAnswer.upstreamClosed(reused: true) == .abort)
    var delimited = ExchangeStateMachine(idempotent: true, hasBody: false)
    delimited.answerStarted(upstreamKeepAlive: false, untilClose: true)
    #expect(delimited.upstreamClosed(reused: false) == .answerEnded)
    #expect(!delimited.reusable(leftover: false))
  }

  @Test func aConnectionGoesBackOnlyWhenBothDirectionsEndedCleanly() {
    var clean = ExchangeStateMachine(idempotent: false, hasBody: true)
    clean.sentBody()
    clean.answerStarted(upstreamKeepAlive: true, untilClose: false)
    // The upstream answered before the request's body ended: the rest was never sent.
    #expect(!clean.reusable(leftover: false))
    clean.sentEnd()
    #expect(clean.reusable(leftover: false))
    #expect(!clean.reusable(leftover: true))
    var closing = ExchangeStateMachine(idempotent: true, hasBody: false)
    closing.answerStarted(upstreamKeepAlive: false, untilClose: false)
    #expect(!closing.reusable(leftover: false))
    var chatty = ExchangeStateMachine(idempotent: true, hasBody: false)
    chatty.answerStarted(upstreamKeepAlive: true, untilClose: false)
    chatty.bytesAfterAnswer()
    #expect(!chatty.reusable(leftover: false))
  }
}
