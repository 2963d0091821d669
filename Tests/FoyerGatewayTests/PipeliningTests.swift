import NIOCore
import NIOHTTP1
import Testing

@testable import FoyerGateway

/// The pipelining state machine on its own: what is delivered, what waits, when reads pause.
@Suite struct PipeliningTests {
  let head = HTTPServerRequestPart.head(HTTPRequestHead(version: .http1_1, method: .GET, uri: "/"))

  @Test func oneExchangeAtATimeInOrder() {
    var machine = PipeliningStateMachine(limit: 10)
    #expect(machine.received(head) == .deliver)
    #expect(machine.received(.end(nil)) == .deliver)
    // The next request waits for the first response, with its body and end.
    #expect(machine.received(head) == .queue)
    #expect(machine.received(.body(ByteBuffer(string: "abc"))) == .queue)
    #expect(machine.received(.end(nil)) == .queue)
    #expect(machine.received(head) == .queue)
    #expect(machine.nextQueued() == nil)
    machine.responseEnded()
    // The second request, whole; the third waits for the second response.
    guard case .head = machine.nextQueued(), case .body = machine.nextQueued(),
      case .end = machine.nextQueued()
    else {
      Issue.record("the second request was not delivered whole")
      return
    }
    #expect(machine.nextQueued() == nil && machine.inFlight)
    machine.responseEnded()
    guard case .head = machine.nextQueued() else {
      Issue.record("the third request was not delivered")
      return
    }
    #expect(!machine.isIdle)
    machine.responseEnded()
    #expect(machine.isIdle)
  }

  @Test func readsPauseOnlyWhenAPipeliningClientIsFarAhead() {
    var machine = PipeliningStateMachine(limit: 10)
    _ = machine.received(head)
    #expect(!machine.shouldHoldReads)
    _ = machine.received(head)
    _ = machine.received(.body(ByteBuffer(string: "0123456789ab")))
    #expect(machine.shouldHoldReads)
    machine.responseEnded()
    _ = machine.nextQueued()
    _ = machine.nextQueued()
    #expect(!machine.shouldHoldReads)
  }

  @Test func aResponseBeforeTheRequestEndsLetsTheRestThrough() {
    var machine = PipeliningStateMachine(limit: 10)
    #expect(machine.received(head) == .deliver)
    machine.responseEnded()  // answered early (413, 100-continue refused)
    #expect(machine.received(.body(ByteBuffer(string: "late"))) == .deliver)
    #expect(machine.received(.end(nil)) == .deliver)
    #expect(machine.received(head) == .deliver)
  }
}
