internal import NIOCore
internal import NIOHTTP1

/// Which request parts the gateway handler may see now: HTTP/1.1 pipelining, answered in
/// order, one exchange at a time.
///
/// A state machine returning what to do; `RequestSequencer` carries it out.
struct PipeliningStateMachine {
  /// A delivered request's response has not ended yet.
  private(set) var inFlight = false
  /// Parts of requests that arrived while another was in flight, in order.
  private var queued = CircularBuffer<HTTPServerRequestPart>()
  private var queuedBytes = 0
  private var queuedHeads = 0
  /// Above this many queued body bytes the client's reads pause until the queue drains.
  let limit: Int
  /// Above this many queued requests the same: a head costs memory even without a body.
  let headLimit: Int

  init(limit: Int, headLimit: Int = 32) {
    self.limit = limit
    self.headLimit = headLimit
  }

  enum Received { case deliver, queue }

  /// A part from the decoder: delivered now, or queued behind the exchange in flight (with
  /// the parts that follow its head).
  mutating func received(_ part: HTTPServerRequestPart) -> Received {
    if !queued.isEmpty {
      enqueue(part)
      return .queue
    }
    if case .head = part {
      if inFlight {
        enqueue(part)
        return .queue
      }
      inFlight = true
    }
    return .deliver
  }

  /// The response in flight has ended.
  mutating func responseEnded() { inFlight = false }

  /// The next queued part that may be delivered: the next request's head once nothing is in
  /// flight, then its body and end.
  mutating func nextQueued() -> HTTPServerRequestPart? {
    guard let first = queued.first else { return nil }
    if case .head = first {
      guard !inFlight else { return nil }
      inFlight = true
    }
    let part = queued.removeFirst()
    switch part {
    case .body(let buffer): queuedBytes -= buffer.readableBytes
    case .head: queuedHeads -= 1
    case .end: break
    }
    return part
  }

  var isIdle: Bool { !inFlight && queued.isEmpty }

  /// Reads pause only while a pipelining client has sent more than `limit` ahead.
  var shouldHoldReads: Bool { queuedBytes > limit || queuedHeads > headLimit }

  private mutating func enqueue(_ part: HTTPServerRequestPart) {
    switch part {
    case .body(let buffer): queuedBytes += buffer.readableBytes
    case .head: queuedHeads += 1
    case .end: break
    }
    queued.append(part)
  }
}

/// Sequences pipelined requests for `GatewayHandler` and drains on shutdown, in place of
/// NIO's `HTTPServerPipelineHandler`.
///
/// Written here because that handler pauses the connection's reads from each request's end
/// to its response's end: two `epoll_ctl` calls per request, on every keep-alive exchange,
/// which made up a measurable share of the gateway's kernel time. This one reads on while
/// the next requests are queued, and pauses only when a pipelining client gets more than
/// `limit` bytes ahead.
final class RequestSequencer: ChannelDuplexHandler {
  typealias InboundIn = HTTPServerRequestPart
  typealias InboundOut = HTTPServerRequestPart
  typealias OutboundIn = HTTPServerResponsePart
  typealias OutboundOut = HTTPServerResponsePart

  private var machine: PipeliningStateMachine
  private var readPending = false
  private var delivering = false
  /// Shutdown asked the connection to close after the exchange in flight.
  private var quiescing = false
  /// The response in flight closes the connection once it is written.
  private var closing = false

  init(limit: Int = 1 << 20) {
    machine = PipeliningStateMachine(limit: limit)
  }

  func channelRead(context: ChannelHandlerContext, data: NIOAny) {
    if closing { return }
    switch machine.received(unwrapInboundIn(data)) {
    case .deliver: context.fireChannelRead(data)
    case .queue: break
    }
  }

  /// Reads also wait while the client does not read its answers: what it sends next would
  /// only pile more answers up in the gateway's memory.
  func read(context: ChannelHandlerContext) {
    if closing { return }
    if machine.shouldHoldReads || !context.channel.isWritable { readPending = true } else { context.read() }
  }

  func channelWritabilityChanged(context: ChannelHandlerContext) {
    context.fireChannelWritabilityChanged()
    guard context.channel.isWritable else { return }
    deliverQueued(context: context)
  }

  func write(context: ChannelHandlerContext, data: NIOAny, promise: EventLoopPromise<Void>?) {
    switch unwrapOutboundIn(data) {
    case .head(let head):
      // An answer that says it closes the connection (a refused head, a client that asked):
      // nothing queued behind it is a request to serve.
      if head.headers[canonicalForm: "connection"].contains(where: { $0.lowercased() == "close" }) {
        closing = true
      }
      context.write(data, promise: promise)
      return
    case .body:
      context.write(data, promise: promise)
      return
    case .end:
      break
    }
    machine.responseEnded()
    if quiescing || closing {
      // Close once this response is on the wire; queued requests are not started.
      let written = promise ?? context.eventLoop.makePromise()
      written.futureResult.assumeIsolated().whenComplete { _ in context.close(promise: nil) }
      context.write(data, promise: written)
      return
    }
    context.write(data, promise: promise)
    responseEnded(context: context)
  }

  /// A forwarded answer, written below the codec, has ended: as a response's `.end`.
  func triggerUserOutboundEvent(context: ChannelHandlerContext, event: Any, promise: EventLoopPromise<Void>?)
  {
    guard let ended = event as? ForwardedResponseEnded else {
      context.triggerUserOutboundEvent(event, promise: promise)
      return
    }
    context.triggerUserOutboundEvent(event, promise: promise)  // for `ConnectionGuard`
    machine.responseEnded()
    if ended.close { closing = true }
    if quiescing || closing {
      ended.written.assumeIsolated().whenComplete { _ in context.close(promise: nil) }
      return
    }
    responseEnded(context: context)
  }

  private func responseEnded(context: ChannelHandlerContext) {
    // The express lane in front (if any) may take the next request now.
    context.triggerUserOutboundEvent(CodecExchangeEnded(), promise: nil)
    deliverQueued(context: context)
  }

  func userInboundEventTriggered(context: ChannelHandlerContext, event: Any) {
    guard event is ChannelShouldQuiesceEvent else {
      context.fireUserInboundEventTriggered(event)
      return
    }
    if machine.isIdle {
      context.close(promise: nil)
    } else {
      quiescing = true
    }
  }

  /// Hands queued parts over while nothing is in flight. Not re-entered: a response that ends
  /// synchronously inside the delivery continues the loop instead.
  private func deliverQueued(context: ChannelHandlerContext) {
    guard !delivering else { return }
    delivering = true
    defer { delivering = false }
    var delivered = false
    while context.channel.isWritable, let part = machine.nextQueued() {
      delivered = true
      context.fireChannelRead(wrapInboundOut(part))
    }
    if delivered { context.fireChannelReadComplete() }
    if readPending && !machine.shouldHoldReads && context.channel.isWritable {
      readPending = false
      context.read()
    }
  }
}
