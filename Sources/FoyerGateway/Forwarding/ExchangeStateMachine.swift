/// The rules of one forwarded exchange, apart from the channels and the bytes (DESIGN §8;
/// async-http-client's `HTTPRequestStateMachine` is the model): what an upstream close
/// means, when the request is sent again, and whether the connection goes back to the pool.
/// `ForwardingExchange` carries it out.
struct ExchangeStateMachine {
  /// Safe to send twice (RFC 9110 §9.2.2).
  let idempotent: Bool
  /// The request's end has been sent (or it has none).
  private(set) var requestComplete: Bool
  private var bodySent = false
  /// The client has the answer's head.
  private(set) var responseStarted = false
  /// The answer ends at the upstream's close.
  private var untilClose = false
  private var upstreamKeepAlive = true
  private(set) var retried = false

  init(idempotent: Bool, hasBody: Bool) {
    self.idempotent = idempotent
    requestComplete = !hasBody
  }

  mutating func sentBody() { bodySent = true }
  mutating func sentEnd() { requestComplete = true }

  mutating func answerStarted(upstreamKeepAlive: Bool, untilClose: Bool) {
    responseStarted = true
    self.upstreamKeepAlive = upstreamKeepAlive
    self.untilClose = untilClose
  }

  /// The upstream sent bytes after its answer: it cannot be trusted with another request.
  mutating func bytesAfterAnswer() { upstreamKeepAlive = false }

  enum Closed: Equatable {
    /// The close is the end of a close-delimited answer.
    case answerEnded
    /// A kept-alive connection closed as the request went out: send it again, once, on a
    /// new connection (as nginx does).
    case retry
    /// Nothing went to the client yet: 502.
    case badGateway
    /// Cut off mid-answer: only a close tells the client.
    case abort
  }

  /// The upstream closed the connection; `reused` if it had served an exchange before.
  mutating func upstreamClosed(reused: Bool) -> Closed {
    if untilClose { return .answerEnded }
    if responseStarted { return .abort }
    // Only a request that is whole here and changes nothing twice is sent again.
    if reused && !retried && idempotent && requestComplete && !bodySent {
      retried = true
      return .retry
    }
    return .badGateway
  }

  /// Whether the connection goes back to the pool when the answer has ended: only when both
  /// directions ended cleanly (`leftover`: upstream bytes not accounted for).
  func reusable(leftover: Bool) -> Bool {
    upstreamKeepAlive && !untilClose && requestComplete && !leftover
  }
}
