internal import NIOCore
internal import NIOHTTP1

/// Sits between the HTTP codec and the pipelining handler and answers what the request
/// handler never sees: requests the decoder rejects (431 for oversized headers, 400 for
/// anything else) and heads that do not arrive in time (408 for a head that started and
/// stalled; a quiet close for an idle keep-alive connection, and for a fresh one on which
/// nothing arrived: a client's pool may open a connection and use it later, and an answer it
/// never asked for would be read as the answer to its next request). Being below `RequestSequencer`, its answers
/// go straight to the encoder, outside the request/response pairing.
final class ConnectionGuard: ChannelDuplexHandler {
  typealias InboundIn = HTTPServerRequestPart
  typealias InboundOut = HTTPServerRequestPart
  typealias OutboundIn = HTTPServerResponsePart
  typealias OutboundOut = HTTPServerResponsePart

  private let limits: GatewayLimits
  private var context: ChannelHandlerContext?
  /// What the connection waits for and until when; `nil` while a request is being served.
  private var deadline: (at: NIODeadline, idle: Bool)?
  private let timer = DeadlineTimer()
  private var inRequest = false
  private var closing = false
  /// Whether any byte arrived. Only the express lane sees bytes before a whole head; without
  /// it a fresh connection counts as spoken to, and a silent one gets the 408 as before.
  private var spoken: Bool

  init(limits: GatewayLimits, bytesReported: Bool) {
    self.limits = limits
    spoken = !bytesReported
  }

  /// The express lane read bytes from the client.
  func bytesArrived() { spoken = true }

  func handlerAdded(context: ChannelHandlerContext) {
    self.context = context
    arm(context, idle: false)
  }

  func handlerRemoved(context: ChannelHandlerContext) {
    timer.cancel()
    self.context = nil
  }

  /// The express lane took a request this handler never sees: as a head would.
  func exchangeStarted() {
    deadline = nil
    inRequest = true
  }

  /// The express lane's answer is out: as a response's end would.
  func exchangeEnded() {
    inRequest = false
    if let context { arm(context, idle: true) }
  }

  func channelRead(context: ChannelHandlerContext, data: NIOAny) {
    if case .head = unwrapInboundIn(data) {
      deadline = nil
      inRequest = true
    }
    context.fireChannelRead(data)
  }

  /// A response's end re-arms the idle timer for the next request on this connection.
  func write(context: ChannelHandlerContext, data: NIOAny, promise: EventLoopPromise<Void>?) {
    if case .end = unwrapOutboundIn(data) {
      inRequest = false
      arm(context, idle: true)
    }
    context.write(data, promise: promise)
  }

  /// A forwarded answer's end (written below the codec): as a response's end.
  func triggerUserOutboundEvent(context: ChannelHandlerContext, event: Any, promise: EventLoopPromise<Void>?)
  {
    guard event is ForwardedResponseEnded else {
      context.triggerUserOutboundEvent(event, promise: promise)
      return
    }
    inRequest = false
    arm(context, idle: true)
    promise?.succeed(())
  }

  func errorCaught(context: ChannelHandlerContext, error: any Error) {
    guard let parserError = error as? HTTPParserError else {
      context.fireErrorCaught(error)
      return
    }
    deadline = nil
    if parserError == .headerOverflow {
      reject(context, .requestHeaderFieldsTooLarge, "headers_too_large", "the request headers are too large")
    } else {
      reject(context, .badRequest, "bad_request", "the request is not valid HTTP/1.1")
    }
  }

  private func arm(_ context: ChannelHandlerContext, idle: Bool) {
    let at = NIODeadline.now() + (idle ? limits.idleTimeout : limits.headerTimeout)
    deadline = (at, idle)
    timer.ensure(by: at, on: context.eventLoop) { self.check() }
  }

  /// Captures only `self` where it is passed as a closure: a closure holding one reference
  /// needs no heap context, and this is re-armed on every exchange.
  private func check() {
    guard let context, let deadline else { return }  // serving a request: armed again after it
    if deadline.at > NIODeadline.now() {
      timer.ensure(by: deadline.at, on: context.eventLoop) { self.check() }
    } else if deadline.idle || !spoken {
      context.close(promise: nil)
    } else {
      reject(context, .requestTimeout, "request_timeout", "the request head did not arrive in time")
    }
  }

  private func reject(
    _ context: ChannelHandlerContext, _ status: HTTPResponseStatus, _ code: String, _ message: String
  ) {
    guard !closing else { return }
    closing = true
    // Mid-response there is no clean answer left: just close.
    guard !inRequest else {
      context.close(promise: nil)
      return
    }
    let body = "{\"error\":\"\(code)\",\"message\":\"\(message)\"}"
    var headers = HTTPHeaders()
    headers.add(name: "content-type", value: "application/json")
    headers.add(name: "content-length", value: String(body.utf8.count))
    headers.add(name: "connection", value: "close")
    context.write(
      wrapOutboundOut(.head(HTTPResponseHead(version: .http1_1, status: status, headers: headers))),
      promise: nil)
    context.write(
      wrapOutboundOut(.body(.byteBuffer(context.channel.allocator.buffer(string: body)))), promise: nil)
    context.writeAndFlush(wrapOutboundOut(.end(nil))).assumeIsolated().whenComplete { _ in
      context.close(promise: nil)
    }
  }
}
