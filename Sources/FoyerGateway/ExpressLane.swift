internal import FoyerCore
internal import HTTPWire
internal import Logging
internal import NIOCore
internal import NIOHTTP1
internal import Prometheus
internal import WaitingRoom

#if canImport(Glibc)
internal import Glibc
#elseif canImport(Darwin)
internal import Darwin
#endif

/// The gateway's fast path for its hottest request: a body-less `GET`/`HEAD` that carries a
/// valid pass (or is outside every room). It is read from the connection's bytes, rewritten
/// as bytes, and the upstream's answer is passed back as bytes with only its head rewritten;
/// NIOHTTP1 never sees it.
///
/// Everything else goes to the NIOHTTP1 path behind this handler (codec, `ConnectionGuard`,
/// `RequestSequencer`, `GatewayHandler`), which answers everything the gateway answers
/// itself:
/// - a request whose length the reader knows (a clean head, no `Content-Length` or
///   `Transfer-Encoding`) is *delegated*: exactly its bytes go to the codec, and what follows
///   waits here until its response has ended (`CodecExchangeEnded`), so answers stay in order
///   and the codec only ever sees whole requests;
/// - anything else (a body, a head this reader does not take) *hands over* the connection
///   to the NIOHTTP1 path for good.
///
/// Both lanes forward through one engine: `UpstreamRequestHead` writes the upstream's head,
/// `ForwardingExchange` sends it and relays the answer (`ResponseHead`). The proxy suites run
/// on both, and `ForwardingDifferentialTests` checks the bytes are the same.
final class ExpressLane: ChannelDuplexHandler {
  typealias InboundIn = ByteBuffer
  typealias InboundOut = ByteBuffer
  typealias OutboundIn = IOData
  typealias OutboundOut = IOData

  private enum Mode {
    /// Reading the next request head.
    case idle
    /// An express exchange is on its way.
    case forwarding(ForwardingExchange)
    /// A status poll waits for Redis.
    case polling
    /// One request was given to the NIOHTTP1 path; the rest waits for its response's end.
    case delegated
    /// The NIOHTTP1 path owns the connection from here on.
    case handedOver
  }

  private enum Decision {
    case wait
    case handOver
    case delegate(length: Int)
    case forward(length: Int, ForwardingExchange.Request)
    /// `GET /_foyer/status` from a known visitor.
    case poll(length: Int, room: String, visitor: VisitorID, place: Int64?)
    /// The same, sooner than the visitor was told to ask again (`PollDiscipline`).
    case tooSoon(length: Int, waitMilliseconds: Int64)
  }

  private let shared: GatewayContext
  /// This connection's event loop's upstream pool and signer, looked up once.
  private let pool: UpstreamPool?
  private let signer: TokenSigner
  /// The pass rule, and the last visitor token that verified here (a keep-alive client
  /// repeats it).
  private var passes: PassCheck
  private var visitorTokens: TokenMemo
  private var placeTokens: TokenMemo
  private let connectionGuard: ConnectionGuard
  private var context: ChannelHandlerContext?
  private var mode = Mode.idle
  /// The exchange in flight, if the lane is forwarding one.
  private var exchange: ForwardingExchange? {
    if case .forwarding(let exchange) = mode { exchange } else { nil }
  }
  /// Client bytes not taken yet: a head still arriving, or pipelined requests.
  private var inbound: ByteBuffer?
  private var readPending = false
  private var inClientRead = false
  /// Shutdown asked the connection to close after the exchange in flight.
  private var quiescing = false
  /// The upstream's answer timeout (504), one timer per connection.
  private let timeout = DeadlineTimer()
  /// Requests forwarded on this connection, for request ids.
  private var forwardedCount = 0
  /// What every forwarded request of this connection carries (the client address does not
  /// change).
  private var forwarding = ClientForwarding(address: "unknown")
  /// The JSON of the last status answer, and the last answer the lane made itself, kept so
  /// the next ones are written without allocating.
  private var json: ByteBuffer?
  private var answerBuffer: ByteBuffer?

  /// Reads pause while a pipelining client is this far ahead.
  private static let inboundLimit = 1 << 20

  init(shared: GatewayContext, eventLoop: any EventLoop, connectionGuard: ConnectionGuard) {
    self.shared = shared
    pool = shared.pool(on: eventLoop)
    signer = shared.signer(on: eventLoop)
    passes = PassCheck(signer: signer, revocations: shared.revocations(on: eventLoop))
    visitorTokens = TokenMemo(signer: signer)
    placeTokens = TokenMemo(signer: signer)
    self.connectionGuard = connectionGuard
  }

  func handlerAdded(context: ChannelHandlerContext) {
    self.context = context
    forwarding = ClientForwarding(address: context.channel.remoteAddress?.ipAddress ?? "unknown")
  }

  func handlerRemoved(context: ChannelHandlerContext) {
    timeout.cancel()
    self.context = nil
  }

  // MARK: Client side

  func channelRead(context: ChannelHandlerContext, data: NIOAny) {
    if case .handedOver = mode {
      context.fireChannelRead(data)
      return
    }
    let bytes = unwrapInboundIn(data)
    connectionGuard.bytesArrived()
    if inbound == nil {
      inbound = bytes
    } else {
      inbound!.writeImmutableBuffer(bytes)
    }
    inClientRead = true
    defer { inClientRead = false }
    if case .idle = mode { takeNextRequest(context: context) }
  }

  func channelActive(context: ChannelHandlerContext) {
    context.fireChannelActive()
    readMore(context: context)
  }

  func channelReadComplete(context: ChannelHandlerContext) {
    switch mode {
    case .delegated, .handedOver: context.fireChannelReadComplete()
    case .idle, .forwarding, .polling: break
    }
    readMore(context: context)
  }

  /// Asks for the next read burst. `autoRead` is off where this lane is in the pipeline: NIO
  /// would ask through every handler from the tail after each burst, five hops that showed in
  /// profiles. While the lane serves the connection it asks the socket directly; while the
  /// NIOHTTP1 path does, the request goes through that path's handlers, which hold reads back
  /// while a body has nowhere to go.
  private func readMore(context: ChannelHandlerContext) {
    switch mode {
    case .delegated, .handedOver: context.pipeline.read()
    case .idle, .forwarding, .polling: read(context: context)
    }
  }

  func read(context: ChannelHandlerContext) {
    if case .handedOver = mode {
      context.read()
    } else if (inbound?.readableBytes ?? 0) > Self.inboundLimit || !context.channel.isWritable {
      // Far ahead, or not reading its answers: nothing more is read until it catches up.
      readPending = true
    } else {
      context.read()
    }
  }

  func channelWritabilityChanged(context: ChannelHandlerContext) {
    exchange?.clientWritabilityChanged(writable: context.channel.isWritable)
    context.fireChannelWritabilityChanged()
    if context.channel.isWritable, case .idle = mode {
      takeNextRequest(context: context)
      resumeReadsIfPending(context: context)
    }
  }

  func channelInactive(context: ChannelHandlerContext) {
    // The client left mid-exchange: the upstream connection's state is unknown; it goes.
    if let exchange {
      exchange.clientClosed()
      mode = .idle
    }
    timeout.cancel()
    context.fireChannelInactive()
  }

  func userInboundEventTriggered(context: ChannelHandlerContext, event: Any) {
    guard event is ChannelShouldQuiesceEvent else {
      context.fireUserInboundEventTriggered(event)
      return
    }
    quiescing = true
    switch mode {
    case .idle: context.close(promise: nil)
    case .forwarding(let exchange): exchange.closeClientAfter = true  // closed once its answer is out
    case .polling: break  // closed once this answer is out
    case .delegated, .handedOver: context.fireUserInboundEventTriggered(event)
    }
  }

  /// The NIOHTTP1 path finished the delegated request's answer (sent by `RequestSequencer`).
  func triggerUserOutboundEvent(context: ChannelHandlerContext, event: Any, promise: EventLoopPromise<Void>?)
  {
    guard event is CodecExchangeEnded else {
      context.triggerUserOutboundEvent(event, promise: promise)
      return
    }
    promise?.succeed(())
    guard case .delegated = mode else { return }
    mode = .idle
    // Not from inside the NIOHTTP1 handlers' write: the next request starts on a clean stack.
    takeNextRequestLater(context: context)
  }

  /// The next request, on a later turn of the loop: after an answer written from deep in a
  /// call chain, and so that answering pipelined requests one by one is a loop, not a stack.
  private func takeNextRequestLater(context: ChannelHandlerContext) {
    context.eventLoop.assumeIsolated().execute {
      guard case .idle = self.mode, !self.quiescing, let context = self.context else { return }
      self.takeNextRequest(context: context)
      self.resumeReadsIfPending(context: context)
    }
  }

  /// Reads the next request head from `inbound` and acts on it.
  private func takeNextRequest(context: ChannelHandlerContext) {
    // A client that does not read its answers gets no more until it does (see `read`).
    guard case .idle = mode, context.channel.isWritable, var buffer = inbound, buffer.readableBytes > 0 else {
      return
    }
    let decision = buffer.withUnsafeReadableBytes { bytes -> Decision in
      switch RawHTTP.request(bytes) {
      case .incomplete: bytes.count > shared.configuration.limits.maxHeaderBytes ? .handOver : .wait
      case .unsupported: .handOver
      case .head(let head): decide(bytes, head, context: context)
      }
    }
    switch decision {
    case .wait:
      return
    case .handOver:
      mode = .handedOver
      inbound = nil
      passToCodec(buffer, context: context)
      resumeReadsIfPending(context: context)
    case .delegate(let length):
      mode = .delegated
      let request = buffer.readSlice(length: length)!
      inbound = buffer.readableBytes > 0 ? buffer : nil
      passToCodec(request, context: context)
    case .forward(let length, let request):
      buffer.moveReaderIndex(forwardBy: length)
      inbound = buffer.readableBytes > 0 ? buffer : nil
      start(request, context: context)
    case .poll(let length, let room, let visitor, let place):
      let request = buffer.readSlice(length: length)!
      inbound = buffer.readableBytes > 0 ? buffer : nil
      poll(request, room: room, visitor: visitor, place: place, context: context)
    case .tooSoon(let length, let wait):
      buffer.moveReaderIndex(forwardBy: length)
      inbound = buffer.readableBytes > 0 ? buffer : nil
      refusePoll(waitMilliseconds: wait, context: context)
    }
  }

  private func passToCodec(_ bytes: ByteBuffer, context: ChannelHandlerContext) {
    context.fireChannelRead(wrapInboundOut(bytes))
    // Inside a read burst NIO ends it; otherwise the codec path still needs its end.
    if !inClientRead { context.fireChannelReadComplete() }
  }

  private func resumeReadsIfPending(context: ChannelHandlerContext) {
    if readPending && (inbound?.readableBytes ?? 0) <= Self.inboundLimit && context.channel.isWritable {
      readPending = false
      context.read()
    }
  }

  // MARK: Deciding

  /// Express, delegate or hand over, from the head alone; for express, the request as the
  /// upstream will see it.
  private func decide(
    _ bytes: UnsafeRawBufferPointer, _ head: RawHead, context: ChannelHandlerContext
  ) -> Decision {
    let (method, target, version) = head.start
    if RawHTTP.equals(bytes, method, lowercase: "connect") { return .handOver }
    // HTTP/1.1 only (the reader took `HTTP/1.0` or `HTTP/1.1` exactly), origin-form targets.
    var express =
      head.length <= shared.configuration.limits.maxHeaderBytes
      && bytes[version.upperBound - 1] == UInt8(ascii: "1") && bytes[target.lowerBound] == UInt8(ascii: "/")
    let isHead = bytes[method].equals(utf8: "HEAD")
    express = express && (isHead || bytes[method].equals(utf8: "GET"))
    var host: Range<Int>?
    var passHeader: Range<Int>?
    for field in head.fields {
      func named(_ lowercase: StaticString) -> Bool {
        RawHTTP.equals(bytes, field.name, lowercase: lowercase)
      }
      if named("content-length") || named("transfer-encoding") || named("upgrade") {
        // The codec decides what follows this head; from here on it reads the connection.
        return .handOver
      } else if named("connection") {
        express = express && RawHTTP.equals(bytes, field.value, lowercase: "keep-alive")
      } else if named("expect") || ForwardingHeaders.isHopByHop(bytes[field.name]) && !named("keep-alive") {
        // `Expect` and the other hop-by-hop headers are the NIOHTTP1 path's to handle.
        express = false
      } else if named("host") {
        // Exactly one, or the NIOHTTP1 path answers 400 (`RequestRules.framing`).
        express = express && host == nil
        host = field.value
      } else if named("foyer-pass") {
        if passHeader == nil { passHeader = field.value }
      }
    }
    // A target that is not plainly canonical is rewritten (or refused) by the NIOHTTP1 path.
    guard express, host != nil, CanonicalTarget.isPlainlyCanonical(bytes[target]) else {
      return .delegate(length: head.length)
    }
    let pathEnd = bytes[target].firstIndex(of: UInt8(ascii: "?")) ?? target.upperBound
    let path = bytes[target.lowerBound..<pathEnd]
    if path.hasPrefix(utf8: "/_foyer/") {
      guard !isHead, path.equals(utf8: "/_foyer/status") else { return .delegate(length: head.length) }
      guard passHeader == nil else { return .delegate(length: head.length) }
      return decidePoll(bytes, head, query: pathEnd..<target.upperBound, context: context)
    }
    guard pool != nil else { return .delegate(length: head.length) }

    var holder: Holder?
    if let room = shared.configuration.rooms.match(
      path: path, hostHeader: { host.map { Substring(decoding: bytes[$0], as: UTF8.self) } })
    {
      // The pass cookie first, then the header, as the NIOHTTP1 path looks for it; a pass that
      // fails is left to that path, which counts the rejection and answers.
      guard let pass = Cookies.presentedPass(bytes, head, room: room.id),
        case .valid(let visitor, let expiry) = passes.check(
          utf8: UnsafeRawBufferPointer(rebasing: bytes[pass]), room: room.id,
          now: GatewayHandler.unixSeconds())
      else { return .delegate(length: head.length) }
      holder = (room.id, visitor, pass, expiry)
    }
    forwardedCount &+= 1
    let (request, idRange) = UpstreamRequestHead.write(
      bytes, head, framing: .none, holder: holder.map { ($0.visitor, $0.pass) }, client: forwarding,
      requestNumber: forwardedCount, allocator: context.channel.allocator)
    return .forward(
      length: head.length,
      ForwardingExchange.Request(
        head: request, requestIDRange: idRange, isHead: isHead,
        holder: holder.map { ($0.room, $0.visitor, $0.expiry) }, framing: .none, clientKeepAlive: true,
        idempotent: true))
  }

  /// A verified pass holder: the room, the visitor, and where the pass is in the head.
  private typealias Holder = (room: String, visitor: VisitorID, pass: Range<Int>, expiry: Int64)

  /// A status poll the lane answers itself: a known visitor (valid visitor cookie) of a
  /// protected room, without a pass. New visitors, pass holders and mistakes take the
  /// NIOHTTP1 path.
  private func decidePoll(
    _ bytes: UnsafeRawBufferPointer, _ head: RawHead, query: Range<Int>, context: ChannelHandlerContext
  ) -> Decision {
    let delegate = Decision.delegate(length: head.length)
    guard let id = GatewayHandler.parameter("room", in: bytes[query].dropFirst()),
      let room = shared.room(id: id)
    else { return delegate }
    var token: Range<Int>?
    var placeToken: Range<Int>?
    for field in head.fields where RawHTTP.equals(bytes, field.name, lowercase: "cookie") {
      let (pass, visitor, place) = Cookies.pollRanges(room: room.id, inHeader: bytes[field.value])
      if pass != nil { return delegate }
      if token == nil { token = visitor }
      if placeToken == nil { placeToken = place }
    }
    guard let token else { return delegate }
    let now = GatewayHandler.unixSeconds()
    guard
      let (visitor, place) = Cookies.visitorAndPlace(
        visitor: UnsafeRawBufferPointer(rebasing: bytes[token]),
        place: placeToken.map { UnsafeRawBufferPointer(rebasing: bytes[$0]) }, room: room.id,
        verify: { token, kind in
          kind == .place
            ? self.placeTokens.verify(utf8: token, kind: kind, room: room.id, now: now)
            : self.visitorTokens.verify(utf8: token, kind: kind, room: room.id, now: now)
        })
    else { return delegate }
    if let wait = shared.polls.wait(visitor, room: room.id) {
      return .tooSoon(length: head.length, waitMilliseconds: wait)
    }
    return .poll(length: head.length, room: room.id, visitor: visitor, place: place)
  }

  // MARK: Status polls

  /// Asks Redis where the visitor stands and answers the JSON. A visitor who is not in the
  /// queue (a join) or a Redis failure goes to the NIOHTTP1 path with the same bytes, which
  /// joins, or answers with a retry hint, and counts it.
  private func poll(
    _ request: ByteBuffer, room: String, visitor: VisitorID, place: Int64?, context: ChannelHandlerContext
  ) {
    mode = .polling
    connectionGuard.exchangeStarted()
    shared.store.status(room: room, visitor: visitor, place: place, claim: true, on: context.eventLoop) { result in
      guard case .polling = self.mode, let context = self.context else { return }
      if case .success(let status) = result, !status.isAbsent {
        self.shared.metrics.statusPolls.increment()
        let (body, passCookie) = StatusBody.answer(
          status, room: room, visitor: visitor, signer: self.signer,
          secureCookies: self.shared.configuration.secureCookies, presentedPlace: place)
        // Taken out while written, so the buffer stays uniquely referenced and is reused.
        var json = self.json.take() ?? context.channel.allocator.buffer(capacity: 256)
        json.clear()
        body.writeJSON(into: &json)
        let fieldsLength = 16 + ReservedWriter.decimalLength + (passCookie.map { 16 + $0.utf8.count } ?? 0)
        self.answer(.ok, body: json, isHead: false, context: context, fieldsLength: fieldsLength) { head in
          head.write("retry-after: ")
          head.write(decimal: body.retryAfterSeconds)
          head.write("\r\n")
          if let passCookie {
            head.write("set-cookie: ")
            head.write(passCookie)
            head.write("\r\n")
          }
        }
        self.json = json
        self.shared.polls.answered(body, visitor: visitor)
        self.mode = .idle
        self.connectionGuard.exchangeEnded()
        self.afterAnswer(context: context)
      } else {
        self.mode = .delegated
        self.passToCodec(request, context: context)
        if self.quiescing { context.fireUserInboundEventTriggered(ChannelShouldQuiesceEvent()) }
      }
    }
  }

  /// A poll sooner than allowed: `429` from memory.
  private func refusePoll(waitMilliseconds: Int64, context: ChannelHandlerContext) {
    shared.metrics.countRefused(PollDiscipline.refusal.code)
    var json = self.json.take() ?? context.channel.allocator.buffer(capacity: 256)
    json.clear()
    json.writeString(PollDiscipline.refusalJSON)
    answer(.tooManyRequests, body: json, isHead: false, context: context, fieldsLength: 16 + ReservedWriter.decimalLength) {
      $0.write("retry-after: ")
      $0.write(decimal: PollDiscipline.retryAfterSeconds(waitMilliseconds))
      $0.write("\r\n")
    }
    self.json = json
    if quiescing {
      closeWhenWritten(context)
      return
    }
    takeNextRequestLater(context: context)
  }

  /// An answer the lane makes itself, as `LocalResponse` makes it on the NIOHTTP1 path: the
  /// headers `fields` writes (at most `fieldsLength` bytes), then type, length and
  /// `no-store`; `connection: close` when shutting down.
  private func answer(
    _ status: HTTPResponseStatus, body: ByteBuffer, isHead: Bool, context: ChannelHandlerContext,
    fieldsLength: Int = 0, fields: (inout ReservedWriter) -> Void = { _ in }
  ) {
    // The last answer's buffer is reused once its write is done (then this lane holds the only
    // reference); while the write is still pending, clearing it copies, as it must.
    var out = answerBuffer.take() ?? context.channel.allocator.buffer(capacity: 512)
    out.clear()
    let reason = status.reasonPhrase
    // The fixed text is under 130 bytes, with two numbers.
    let capacity =
      160 + 2 * ReservedWriter.decimalLength + reason.utf8.count + fieldsLength
      + (isHead ? 0 : body.readableBytes)
    out.writeReserved(capacity: capacity) { out in
      out.write("HTTP/1.1 ")
      out.write(decimal: Int(status.code))
      out.write(" ")
      out.write(reason)
      out.write("\r\n")
      fields(&out)
      out.write("content-type: application/json\r\ncontent-length: ")
      out.write(decimal: body.readableBytes)
      out.write("\r\ncache-control: no-store\r\n")
      if quiescing { out.write("connection: close\r\n") }
      out.write("\r\n")
      if !isHead { out.write(body) }
    }
    context.writeAndFlush(wrapOutboundOut(.byteBuffer(out)), promise: nil)
    answerBuffer = out
  }

  /// Closes once what was written is on the wire (a close with writes pending drops them).
  private func closeWhenWritten(_ context: ChannelHandlerContext) {
    context.writeAndFlush(wrapOutboundOut(.byteBuffer(ByteBuffer()))).assumeIsolated().whenComplete { _ in
      context.close(promise: nil)
    }
  }

  /// After an answer: close if shutting down, else the next request.
  private func afterAnswer(context: ChannelHandlerContext) {
    if quiescing {
      closeWhenWritten(context)
      return
    }
    takeNextRequest(context: context)
    resumeReadsIfPending(context: context)
  }

  // MARK: Forwarding

  private func start(_ request: ForwardingExchange.Request, context: ChannelHandlerContext) {
    guard let pool else { return }
    let exchange = ForwardingExchange(
      request, shared: shared, pool: pool, client: self, output: context, timer: timeout)
    exchange.closeClientAfter = quiescing
    mode = .forwarding(exchange)
    shared.metrics.expressRequests.increment()
    connectionGuard.exchangeStarted()
    exchange.start()
  }
}

extension ExpressLane: ForwardingClient {
  func exchangeEnded(_ exchange: ForwardingExchange, closeClient: Bool) {
    guard self.exchange === exchange, let context else { return }
    mode = .idle
    connectionGuard.exchangeEnded()
    if closeClient {
      closeWhenWritten(context)
      return
    }
    // The relay let go, so its read-complete flush will not come: one flush here carries the
    // answer (or its last part).
    context.flush()
    afterAnswer(context: context)
  }

  func exchangeFailed(_ exchange: ForwardingExchange, status: HTTPResponseStatus, body: String) {
    guard self.exchange === exchange, let context else { return }
    answer(
      status, body: context.channel.allocator.buffer(string: body), isHead: exchange.request.isHead,
      context: context)
    mode = .idle
    connectionGuard.exchangeEnded()
    afterAnswer(context: context)
  }

  func exchangeAborted(_ exchange: ForwardingExchange) {
    guard self.exchange === exchange else { return }
    mode = .idle  // nothing more is read: the connection is closing
    context?.close(promise: nil)
  }

  func exchangeCanTakeBody(_ exchange: ForwardingExchange) {}
}

/// Sent outbound by `RequestSequencer` when the NIOHTTP1 path has ended a response, so the
/// express lane can take the next request.
struct CodecExchangeEnded {}
