internal import HTTPWire
internal import FoyerCore
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
/// `RequestSequencer`, `GatewayHandler`), which stays the reference behaviour:
/// - a request whose length the reader knows (a clean head, no `Content-Length` or
///   `Transfer-Encoding`) is *delegated*: exactly its bytes go to the codec, and what follows
///   waits here until its response has ended (`CodecExchangeEnded`), so answers stay in order
///   and the codec only ever sees whole requests;
/// - anything else (a body, a head this reader does not take) *hands over* the connection
///   to the NIOHTTP1 path for good.
///
/// Both lanes forward the same request: the same headers stripped and added, the same pass
/// check, metrics, timeouts and errors. A test runs the proxy suite on both.
final class ExpressLane: ChannelDuplexHandler {
  typealias InboundIn = ByteBuffer
  typealias InboundOut = ByteBuffer
  typealias OutboundIn = IOData
  typealias OutboundOut = IOData

  private enum Mode {
    /// Reading the next request head.
    case idle
    /// An express exchange is on its way.
    case forwarding(Exchange)
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
    case forward(length: Int, Exchange)
    /// `GET /_foyer/status` from a known visitor.
    case poll(length: Int, room: String, visitor: VisitorID)
  }

  /// What the relay still expects of the upstream's answer.
  private enum ResponseBody {
    case head
    case fixed(remaining: Int)
    case chunked(ChunkedBodyScanner)
    case untilClose
    case done

    var isUntilClose: Bool {
      if case .untilClose = self { true } else { false }
    }
  }

  /// One forwarded request and how far its answer has come. A class: the relay updates it
  /// on every upstream read, and a struct held in an optional was copied in and out each time.
  private final class Exchange {
    /// The request as sent upstream; kept for one retry on a stale keep-alive connection.
    let request: ByteBuffer
    let requestIDRange: Range<Int>
    let isHead: Bool
    let holder: (room: String, visitor: VisitorID, expiry: Int64)?
    let started: NIODeadline
    var upstream: UpstreamConnection?
    var retried = false
    var body = ResponseBody.head
    var responseStarted = false
    var reusable = true
    /// Upstream bytes not relayed yet (a head still arriving).
    var pending: ByteBuffer?

    init(
      request: ByteBuffer, requestIDRange: Range<Int>, isHead: Bool,
      holder: (room: String, visitor: VisitorID, expiry: Int64)?, started: NIODeadline
    ) {
      self.request = request
      self.requestIDRange = requestIDRange
      self.isHead = isHead
      self.holder = holder
      self.started = started
    }

    var requestID: String {
      String(decoding: request.readableBytesView[requestIDRange], as: UTF8.self)
    }

    /// The request line's target, for logs.
    var target: String {
      let view = request.readableBytesView
      let line = view.prefix(while: { $0 != RawHTTP.cr })
      let parts = line.split(separator: RawHTTP.space)
      return parts.count == 3 ? String(decoding: parts[1], as: UTF8.self) : "?"
    }
  }

  private let shared: GatewayContext
  /// This connection's event loop's upstream pool and signer, looked up once.
  private let pool: UpstreamPool?
  private let signer: TokenSigner
  private let revocations: RevocationList
  /// The last pass and visitor token that verified here (a keep-alive client repeats them).
  private var passes: TokenMemo
  private var visitorTokens: TokenMemo
  private let connectionGuard: ConnectionGuard
  private var context: ChannelHandlerContext?
  private var mode = Mode.idle
  /// The exchange in flight, if the lane is forwarding one.
  private var exchange: Exchange? {
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
  /// Per connection: the request-id prefix, and the forwarding headers (the client address
  /// does not change).
  private let connectionTag = String(UInt32.random(in: .min ... .max), radix: 16)
  private var clientAddress = "unknown"
  private var forwardingTail = ""
  /// The JSON of the last status answer, and the last answer the lane made itself, kept so
  /// the next ones are written without allocating.
  private var json: ByteBuffer?
  private var answerBuffer: ByteBuffer?

  /// Reads pause while a pipelining client is this far ahead.
  private static let inboundLimit = 1 << 20
  /// A body up to this size that arrived with its head is copied into the head's write.
  private static let coalesceLimit = 16 * 1024
  /// An upstream head longer than this is refused (502).
  private static let responseHeadLimit = 64 * 1024

  init(shared: GatewayContext, eventLoop: any EventLoop, connectionGuard: ConnectionGuard) {
    self.shared = shared
    pool = shared.pool(on: eventLoop)
    signer = shared.signer(on: eventLoop)
    revocations = shared.revocations(on: eventLoop)
    passes = TokenMemo(signer: signer)
    visitorTokens = TokenMemo(signer: signer)
    self.connectionGuard = connectionGuard
  }

  func handlerAdded(context: ChannelHandlerContext) {
    self.context = context
    clientAddress = context.channel.remoteAddress?.ipAddress ?? "unknown"
    forwardingTail = "x-forwarded-proto: http\r\nforwarded: for=\"\(clientAddress)\";proto=http\r\n"
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
    exchange?.upstream?.relay.paused = !context.channel.isWritable
    context.fireChannelWritabilityChanged()
    if context.channel.isWritable, case .idle = mode {
      takeNextRequest(context: context)
      resumeReadsIfPending(context: context)
    }
  }

  func channelInactive(context: ChannelHandlerContext) {
    // The client left mid-exchange: the upstream connection's state is unknown; drop it.
    if let upstream = exchange?.upstream {
      upstream.relay.delegate = nil
      upstream.channel.close(promise: nil)
    }
    if exchange != nil { mode = .idle }
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
    case .forwarding, .polling: break  // closed once this exchange's answer is out
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
    case .forward(let length, let exchange):
      buffer.moveReaderIndex(forwardBy: length)
      inbound = buffer.readableBytes > 0 ? buffer : nil
      start(exchange, context: context)
    case .poll(let length, let room, let visitor):
      let request = buffer.readSlice(length: length)!
      inbound = buffer.readableBytes > 0 ? buffer : nil
      poll(request, room: room, visitor: visitor, context: context)
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
      guard let pass = cookie(Cookies.passPrefix, bytes, head, room: room.id) ?? passHeader,
        case .valid(let visitor, let expiry) = passes.verify(
          utf8: UnsafeRawBufferPointer(rebasing: bytes[pass]), kind: .pass, room: room.id,
          now: GatewayHandler.unixSeconds()),
        !revocations.isRevoked(room: room.id, visitor: visitor, passExpiry: expiry)
      else { return .delegate(length: head.length) }
      holder = (room.id, visitor, pass, expiry)
    }
    forwardedCount &+= 1
    let (request, idRange) = upstreamRequest(
      bytes, head, holder: holder, allocator: context.channel.allocator)
    return .forward(
      length: head.length,
      Exchange(
        request: request, requestIDRange: idRange, isHead: isHead,
        holder: holder.map { ($0.room, $0.visitor, $0.expiry) }, started: .now()))
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
    for field in head.fields where RawHTTP.equals(bytes, field.name, lowercase: "cookie") {
      let (pass, visitor) = Cookies.passAndVisitorRanges(room: room.id, inHeader: bytes[field.value])
      if pass != nil { return delegate }
      if token == nil { token = visitor }
    }
    guard let token,
      case .valid(let visitor, _) = visitorTokens.verify(
        utf8: UnsafeRawBufferPointer(rebasing: bytes[token]), kind: .visitor, room: room.id,
        now: GatewayHandler.unixSeconds())
    else { return delegate }
    return .poll(length: head.length, room: room.id, visitor: visitor)
  }

  /// The value of the gateway's cookie `prefix + room`, as the NIOHTTP1 path finds it.
  private func cookie(
    _ prefix: String, _ bytes: UnsafeRawBufferPointer, _ head: RawHead, room: String
  ) -> Range<Int>? {
    for field in head.fields where RawHTTP.equals(bytes, field.name, lowercase: "cookie") {
      if let value = Cookies.valueRange(prefix: prefix, room: room, inHeader: bytes[field.value]) {
        return value
      }
    }
    return nil
  }

  /// The request as the upstream sees it, as `GatewayHandler.upstreamHead` makes it: no
  /// hop-by-hop headers, no gateway cookies or smuggled Foyer headers, the verified visitor
  /// and pass, the forwarding chain and the request id (whose range is returned for logs).
  private func upstreamRequest(
    _ bytes: UnsafeRawBufferPointer, _ head: RawHead, holder: Holder?, allocator: ByteBufferAllocator
  ) -> (ByteBuffer, Range<Int>) {
    let (method, target, version) = head.start
    var out = allocator.buffer(capacity: head.length + 320)
    var copier = RunWriter(bytes)
    if bytes[version.upperBound - 1] == UInt8(ascii: "1") {
      // `method SP target SP HTTP/1.1 CRLF` exactly, as the reader took it.
      copier.copy(0..<(version.upperBound + 2), to: &out)
    } else {
      out.writeBytes(UnsafeRawBufferPointer(rebasing: bytes[method]))
      out.writeStaticString(" ")
      out.writeBytes(UnsafeRawBufferPointer(rebasing: bytes[target]))
      out.writeStaticString(" HTTP/1.1\r\n")
    }
    var forwardedFor: [Range<Int>] = []
    var givenID: Range<Int>?
    for field in head.fields {
      func named(_ lowercase: StaticString) -> Bool {
        RawHTTP.equals(bytes, field.name, lowercase: lowercase)
      }
      if named("connection") || named("keep-alive") || named("foyer-pass") || named("foyer-visitor")
        || named("x-forwarded-proto")
      {
        continue
      } else if named("x-forwarded-for") {
        forwardedFor.append(field.value)
        continue
      } else if named("x-request-id") {
        if givenID == nil { givenID = field.value }
        continue
      } else if named("cookie") {
        let value = bytes[field.value]
        if Cookies.hasGatewayCookie(inHeader: value) {
          copier.flush(&out)
          var first = true
          for pair in Cookies.foreignPairs(inHeader: value) {
            out.writeStaticString(first ? "cookie: " : "; ")
            out.writeBytes(UnsafeRawBufferPointer(rebasing: bytes[pair]))
            first = false
          }
          if !first { out.writeStaticString("\r\n") }
          continue
        }
      }
      copier.copy(field.line, to: &out)
    }
    copier.flush(&out)
    if let holder {
      out.writeStaticString("foyer-visitor: ")
      out.writeString(holder.visitor.description)
      out.writeStaticString("\r\nfoyer-pass: ")
      out.writeBytes(UnsafeRawBufferPointer(rebasing: bytes[holder.pass]))
      out.writeStaticString("\r\n")
    }
    out.writeStaticString("x-forwarded-for: ")
    for prior in forwardedFor where !prior.isEmpty {
      out.writeBytes(UnsafeRawBufferPointer(rebasing: bytes[prior]))
      out.writeStaticString(", ")
    }
    out.writeString(clientAddress)
    out.writeStaticString("\r\n")
    out.writeString(forwardingTail)
    out.writeStaticString("x-request-id: ")
    let idStart = out.writerIndex - out.readerIndex
    if let givenID, (1...128).contains(givenID.count), bytes[givenID].allSatisfy({ $0 > 0x20 && $0 < 0x7f }) {
      out.writeBytes(UnsafeRawBufferPointer(rebasing: bytes[givenID]))
    } else {
      out.writeString(connectionTag)
      out.writeStaticString("-")
      out.writeString(String(forwardedCount))
    }
    let idRange = idStart..<(out.writerIndex - out.readerIndex)
    out.writeStaticString("\r\n\r\n")
    return (out, idRange)
  }

  // MARK: Status polls

  /// Asks Redis where the visitor stands and answers the JSON. A visitor who is not in the
  /// queue (a join) or a Redis failure goes to the NIOHTTP1 path with the same bytes, which
  /// joins, or answers with a retry hint, and counts it.
  private func poll(_ request: ByteBuffer, room: String, visitor: VisitorID, context: ChannelHandlerContext) {
    mode = .polling
    connectionGuard.exchangeStarted()
    shared.store.status(room: room, visitor: visitor, claim: true, on: context.eventLoop) { result in
      guard case .polling = self.mode, let context = self.context else { return }
      if case .success(let status) = result, !status.isAbsent {
        self.shared.metrics.statusPolls.increment()
        let (body, passCookie) = StatusBody.answer(
          status, room: room, visitor: visitor, signer: self.signer,
          secureCookies: self.shared.configuration.secureCookies)
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

  /// After an answer: close if shutting down, else the next request.
  private func afterAnswer(context: ChannelHandlerContext) {
    if quiescing {
      context.writeAndFlush(wrapOutboundOut(.byteBuffer(ByteBuffer()))).assumeIsolated().whenComplete { _ in
        context.close(promise: nil)
      }
      return
    }
    takeNextRequest(context: context)
    resumeReadsIfPending(context: context)
  }

  // MARK: Forwarding

  private func start(_ exchange: Exchange, context: ChannelHandlerContext) {
    mode = .forwarding(exchange)
    shared.metrics.expressRequests.increment()
    connectionGuard.exchangeStarted()
    armTimeout(context: context)
    guard let pool else { return }
    if let upstream = pool.takeIdle() {
      attach(upstream)
    } else {
      connect(pool, for: exchange)
    }
  }

  private func connect(_ pool: UpstreamPool, for exchange: Exchange) {
    // The retry after a stale kept-alive connection asks for a new one.
    pool.acquire(fresh: exchange.retried).assumeIsolated().whenComplete { result in
      // Still this exchange's to use: the client may have gone, or a timeout answered it.
      guard self.exchange === exchange, exchange.upstream == nil else {
        if case .success(let upstream) = result { pool.release(upstream) }
        return
      }
      switch result {
      case .success(let upstream):
        self.attach(upstream)
      case .failure(UpstreamPoolError.busy):
        self.shared.metrics.upstreamBusy.increment()
        self.fail(.serviceUnavailable, "the upstream is at its connection limit", code: "upstream_busy")
      case .failure(let error):
        self.shared.metrics.upstreamConnectErrors.increment()
        self.shared.logger.warning(
          "upstream connect failed",
          metadata: ["request_id": "\(exchange.requestID)", "error": "\(error)"])
        self.fail(.badGateway, "the upstream is unreachable")
      }
    }
  }

  private func attach(_ upstream: UpstreamConnection) {
    guard let exchange else { return }
    let request = exchange.request
    exchange.upstream = upstream
    upstream.relay.delegate = self
    upstream.relay.paused = !(context?.channel.isWritable ?? true)
    upstream.relay.send(request)
  }

  private func armTimeout(context: ChannelHandlerContext) {
    guard let exchange, let pool else { return }
    timeout.ensure(by: exchange.started + pool.configuration.responseTimeout, on: context.eventLoop) {
      self.checkTimeout()
    }
  }

  /// The exchange in flight (if it is still waiting for its answer) is failed with 504 once
  /// its deadline has passed.
  private func checkTimeout() {
    guard let current = exchange, !current.responseStarted, let context, let pool else { return }
    if NIODeadline.now() - current.started < pool.configuration.responseTimeout {
      armTimeout(context: context)
    } else {
      shared.metrics.upstreamTimeouts.increment()
      fail(.gatewayTimeout, "the upstream did not answer in time")
    }
  }

  // MARK: Relaying the answer

  func relayRead(_ bytes: ByteBuffer) {
    guard let exchange else { return }
    if exchange.pending == nil {
      exchange.pending = bytes
    } else {
      exchange.pending!.writeImmutableBuffer(bytes)
    }
    relay(exchange)
  }

  /// Passes on what can be passed on of `pending`, and ends the exchange when the answer is
  /// complete.
  private func relay(_ exchange: Exchange) {
    guard let context, var pending = exchange.pending else { return }
    exchange.pending = nil
    relaying: while pending.readableBytes > 0 {
      switch exchange.body {
      case .head:
        switch responseHead(&pending, exchange, context: context) {
        case .wait:
          break relaying
        case .invalid:
          return fail(.badGateway, "the upstream's answer is not valid HTTP/1.1")
        case .skipped, .written:
          continue
        }
      case .fixed(let remaining):
        let take = min(remaining, pending.readableBytes)
        write(pending.readSlice(length: take)!, context: context, upstream: exchange.upstream)
        exchange.body = remaining == take ? .done : .fixed(remaining: remaining - take)
      case .chunked(var scanner):
        switch pending.withUnsafeReadableBytes({ scanner.scan($0) }) {
        case .needMore:
          write(
            pending.readSlice(length: pending.readableBytes)!, context: context, upstream: exchange.upstream)
          exchange.body = .chunked(scanner)
        case .ended(let consumed):
          write(pending.readSlice(length: consumed)!, context: context, upstream: exchange.upstream)
          exchange.body = .done
        case .invalid:
          return abort()
        }
      case .untilClose:
        write(
          pending.readSlice(length: pending.readableBytes)!, context: context, upstream: exchange.upstream)
      case .done:
        // Bytes after the answer: this connection cannot be trusted with another request.
        exchange.reusable = false
        pending.moveReaderIndex(to: pending.writerIndex)
      }
    }
    exchange.pending = pending.readableBytes > 0 ? pending : nil
    if case .done = exchange.body { finish(closeClient: false) }
  }

  private enum HeadOutcome { case wait, invalid, skipped, written }

  /// Reads the upstream's head from `pending`; writes the client's head and sets the framing.
  private func responseHead(
    _ pending: inout ByteBuffer, _ exchange: Exchange, context: ChannelHandlerContext
  ) -> HeadOutcome {
    var release = false
    var status = 0
    let result = pending.withUnsafeReadableBytes { bytes -> (HeadOutcome, Int, ByteBuffer?) in
      let head: RawHead
      switch RawHTTP.response(bytes) {
      case .incomplete: return (bytes.count > Self.responseHeadLimit ? .invalid : .wait, 0, nil)
      case .unsupported: return (.invalid, 0, nil)
      case .head(let h): head = h
      }
      let (version, code, reason) = head.start
      status = bytes[code].reduce(0) { $0 * 10 + Int($1 - UInt8(ascii: "0")) }
      if status < 200 {
        // 1xx: informational, not passed on (the client sent no `Expect`); 101 was never asked.
        return (status == 101 ? .invalid : .skipped, head.length, nil)
      }
      var framing = ResponseBody.untilClose
      var contentLength: Int?
      var chunked = false
      var keepAlive = bytes[version.upperBound - 1] == UInt8(ascii: "1")
      var listed: [Range<Int>] = []
      for field in head.fields {
        if RawHTTP.equals(bytes, field.name, lowercase: "content-length") {
          guard let length = RawHTTP.contentLength(bytes, field.value),
            contentLength == nil || contentLength == length
          else { return (.invalid, 0, nil) }
          contentLength = length
        } else if RawHTTP.equals(bytes, field.name, lowercase: "transfer-encoding") {
          guard !chunked, RawHTTP.equals(bytes, field.value, lowercase: "chunked") else {
            return (.invalid, 0, nil)
          }
          chunked = true
        } else if RawHTTP.equals(bytes, field.name, lowercase: "connection") {
          // Almost always exactly one of the two; only a list is split.
          if RawHTTP.equals(bytes, field.value, lowercase: "keep-alive") {
            keepAlive = true
            continue
          } else if RawHTTP.equals(bytes, field.value, lowercase: "close") {
            keepAlive = false
            continue
          }
          for token in bytes[field.value].split(separator: UInt8(ascii: ",")) {
            let trimmed = Self.trim(token)
            if RawHTTP.equals(bytes, trimmed, lowercase: "close") {
              keepAlive = false
            } else if RawHTTP.equals(bytes, trimmed, lowercase: "keep-alive") {
              keepAlive = true
            } else if !trimmed.isEmpty && ForwardingHeaders.dropsListedName(bytes[trimmed]) {
              listed.append(trimmed)
            }
          }
        }
      }
      if chunked && contentLength != nil { return (.invalid, 0, nil) }
      if exchange.isHead || status == 204 || status == 304 {
        framing = .done
      } else if chunked {
        framing = .chunked(ChunkedBodyScanner())
      } else if let contentLength {
        framing = contentLength == 0 ? .done : .fixed(remaining: contentLength)
      }
      if case .untilClose = framing { keepAlive = false }
      exchange.body = framing
      exchange.reusable = keepAlive

      var small = 0
      if case .fixed(let length) = framing, length <= Self.coalesceLimit { small = length }
      var out = context.channel.allocator.buffer(capacity: head.length + 160 + small)
      var copier = RunWriter(bytes)
      if bytes[version.upperBound - 1] == UInt8(ascii: "1") && reason.upperBound > 12 {
        // `HTTP/1.1 SP code SP [reason] CRLF` as it came (one without the second space gets it).
        copier.copy(0..<(reason.upperBound + 2), to: &out)
      } else {
        out.writeStaticString("HTTP/1.1 ")
        out.writeBytes(UnsafeRawBufferPointer(rebasing: bytes[code]))
        out.writeStaticString(" ")
        out.writeBytes(UnsafeRawBufferPointer(rebasing: bytes[reason]))
        out.writeStaticString("\r\n")
      }
      for field in head.fields {
        let name = field.name
        if ForwardingHeaders.isHopByHop(bytes[name])
          || listed.contains(where: { ForwardingHeaders.equalsIgnoringCase(bytes[$0], bytes[name]) })
        {
          continue
        }
        if RawHTTP.equals(bytes, name, lowercase: "foyer-release") {
          release = release || RawHTTP.equals(bytes, field.value, lowercase: "done")
          continue
        }
        copier.copy(field.line, to: &out)
      }
      copier.flush(&out)
      if release, let holder = exchange.holder {
        out.writeStaticString("set-cookie: ")
        out.writeString(
          Cookies.setCookie(
            name: Cookies.passName(room: holder.room), value: "", maxAge: 0,
            secure: shared.configuration.secureCookies))
        out.writeStaticString("\r\n")
      }
      if quiescing || framing.isUntilClose {
        out.writeStaticString("connection: close\r\n")
      }
      out.writeStaticString("\r\n")
      // A small body that came with the head goes out in the same write.
      if case .fixed(let length) = framing, length <= Self.coalesceLimit, bytes.count - head.length >= length
      {
        out.writeBytes(UnsafeRawBufferPointer(rebasing: bytes[head.length..<(head.length + length)]))
        exchange.body = .done
        return (.written, head.length + length, out)
      }
      return (.written, head.length, out)
    }
    let (outcome, length, clientHead) = result
    guard outcome == .written || outcome == .skipped else { return outcome }
    pending.moveReaderIndex(forwardBy: length)
    guard let clientHead else { return outcome }
    exchange.responseStarted = true
    shared.metrics.countProxied(status: status)
    if release, let holder = exchange.holder {
      // Checkout done: free the slot at once (the cookie above clears the pass).
      let logger = shared.logger
      let requestID = exchange.requestID
      shared.release(
        room: holder.room, visitor: holder.visitor, passExpiry: holder.expiry, reason: .done,
        on: context.eventLoop
      )
        .whenFailure { error in
          logger.warning(
            "release failed",
            metadata: ["request_id": "\(requestID)", "room": "\(holder.room)", "error": "\(error)"])
        }
    }
    write(clientHead, context: context, upstream: exchange.upstream)
    return .written
  }

  private func write(_ bytes: ByteBuffer, context: ChannelHandlerContext, upstream: UpstreamConnection?) {
    context.write(wrapOutboundOut(.byteBuffer(bytes)), promise: nil)
    if !context.channel.isWritable {
      // Pause first: the flush may drain the socket and turn the channel writable at once,
      // and that event is what resumes reading.
      upstream?.relay.paused = true
      context.flush()
    }
  }

  /// The upstream's read burst is over: one flush to the client for all of it.
  func relayReadComplete() {
    context?.flush()
  }

  func relayClosed() {
    guard let current = exchange, let pool else { return }
    current.upstream?.relay.delegate = nil
    if case .untilClose = current.body {
      // The close is the end of this answer.
      current.reusable = false
      finish(closeClient: true)
    } else if !current.responseStarted && current.upstream?.reused == true && !current.retried {
      // A kept-alive connection closed as the request went out: the request is a GET or
      // HEAD, so it is sent again once, on a new connection (as nginx does).
      current.retried = true
      current.upstream = nil
      current.pending = nil
      connect(pool, for: current)
    } else if !current.responseStarted {
      shared.metrics.upstreamResets.increment()
      fail(.badGateway, "the upstream closed the connection")
    } else {
      shared.metrics.upstreamResets.increment()
      abort()
    }
  }

  /// The answer is complete: the upstream goes back to the pool and the next request may start.
  private func finish(closeClient: Bool) {
    guard let current = exchange, let context else { return }
    if current.responseStarted {
      shared.metrics.recordProxied(since: current.started)
    }
    mode = .idle
    if let upstream = current.upstream {
      upstream.relay.delegate = nil
      upstream.relay.paused = false
      if current.reusable && current.pending == nil {
        pool?.release(upstream)
      } else {
        upstream.channel.close(promise: nil)
      }
    }
    connectionGuard.exchangeEnded()
    if closeClient {
      context.writeAndFlush(wrapOutboundOut(.byteBuffer(ByteBuffer()))).assumeIsolated().whenComplete { _ in
        context.close(promise: nil)
      }
      return
    }
    // The relay is detached, so its read-complete flush will not come: one flush here carries
    // the answer (or its last part).
    context.flush()
    afterAnswer(context: context)
  }

  /// The exchange failed before any answer went out: a small JSON answer, as the NIOHTTP1
  /// path gives (`GatewayHandler.failExchange`).
  private func fail(_ status: HTTPResponseStatus, _ message: String, code: String? = nil) {
    guard let current = exchange, let context else { return }
    if current.responseStarted { return abort() }
    if let upstream = current.upstream {
      upstream.relay.delegate = nil
      upstream.channel.close(promise: nil)
    }
    current.upstream = nil
    current.reusable = false
    let body = shared.failedExchange(
      status, message, code: code, requestID: current.requestID, uri: current.target[...])
    answer(
      status, body: context.channel.allocator.buffer(string: body), isHead: current.isHead, context: context)
    finish(closeClient: false)
  }

  /// Cut off mid-answer: the client cannot be told otherwise than by a close.
  private func abort() {
    if let upstream = exchange?.upstream {
      upstream.relay.delegate = nil
      upstream.channel.close(promise: nil)
    }
    mode = .idle  // nothing more is read: the connection is closing
    context?.close(promise: nil)
  }

  // MARK: Helpers

  private static func trim(_ slice: Slice<UnsafeRawBufferPointer>) -> Range<Int> {
    var range = slice.startIndex..<slice.endIndex
    while let first = range.first, slice.base[first] == RawHTTP.space || slice.base[first] == RawHTTP.tab {
      range = range.dropFirst()
    }
    while let last = range.last, slice.base[last] == RawHTTP.space || slice.base[last] == RawHTTP.tab {
      range = range.dropLast()
    }
    return range
  }
}

/// Sent outbound by `RequestSequencer` when the NIOHTTP1 path has ended a response, so the
/// express lane can take the next request.
struct CodecExchangeEnded {}
