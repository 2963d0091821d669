internal import FoyerCore
internal import HTTPWire
internal import Logging
internal import NIOCore
internal import NIOHTTP1
internal import Prometheus
internal import RedisNIO
internal import WaitingRoom

#if canImport(Glibc)
internal import Glibc
#elseif canImport(Darwin)
internal import Darwin
#endif

/// What every connection's handler shares: configuration, the room store, and one token
/// signer per event loop (OpenSSL contexts are not thread-safe).
struct GatewayContext: Sendable {
  let configuration: GatewayConfiguration
  let store: RoomStore
  let signers: [ObjectIdentifier: NIOLoopBound<TokenSigner>]
  /// One upstream pool per event loop; empty when no upstream is configured.
  let pools: [ObjectIdentifier: NIOLoopBound<UpstreamPool>]
  /// One revocation list per event loop (`RevocationRefresher` fills them).
  let revocations: [ObjectIdentifier: NIOLoopBound<RevocationList>]
  let metrics: GatewayMetrics
  let waitingPage: WaitingPage
  let logger: Logger
  /// The rooms' allow and block rules, for requests without a pass.
  let trafficRules: TrafficRuleBook
  /// When each waiting visitor may poll again.
  let polls: PollDiscipline

  func revocations(on loop: any EventLoop) -> RevocationList {
    revocations[ObjectIdentifier(loop)]!.value
  }

  /// Gives a pass holder's slot (or a waiting visitor's place) back. A pass is refused on
  /// every loop of this gateway at once, before Redis answers; the others learn it from
  /// Redis' revocation log.
  func release(
    room: String, visitor: VisitorID, passExpiry: Int64?, reason: ReleaseReason, on loop: any EventLoop
  ) -> EventLoopFuture<ReleaseResult> {
    if let passExpiry {
      for list in revocations.values {
        // On this loop at once: the next request here must already be refused.
        if list.eventLoop.inEventLoop {
          list.value.add(room: room, visitor: visitor, passExpiry: passExpiry)
        } else {
          list.eventLoop.execute { list.value.add(room: room, visitor: visitor, passExpiry: passExpiry) }
        }
      }
    }
    return store.release(room: room, visitor: visitor, reason: reason, on: loop)
  }

  func pool(on loop: any EventLoop) -> UpstreamPool? {
    pools[ObjectIdentifier(loop)]?.value
  }

  func signer(on loop: any EventLoop) -> TokenSigner {
    signers[ObjectIdentifier(loop)]!.value
  }

  /// A forwarded exchange failed before any answer went out: counted and logged, and the
  /// JSON body both lanes answer with (`upstream_timeout` for 504, else `upstream_unavailable`).
  func failedExchange(
    _ status: HTTPResponseStatus, _ message: String, code: String? = nil, requestID: String, uri: Substring,
    room: String?, started: NIODeadline
  ) -> String {
    metrics.countProxied(status: Int(status.code))
    let code = code ?? (status == .gatewayTimeout ? "upstream_timeout" : "upstream_unavailable")
    var metadata: Logger.Metadata = [
      "request_id": "\(requestID)", "status": "\(status.code)", "error": "\(code)",
      "uri": "\(uri.prefix(200))",
      "duration_ms": "\((NIODeadline.now() - started).nanoseconds / 1_000_000)",
    ]
    if let room { metadata["room"] = "\(room)" }
    logger.notice("request failed", metadata: metadata)
    return "{\"error\":\"\(code)\",\"message\":\"\(message)\"}"
  }

  func room(id: some Collection<UInt8>) -> RoomRoute? {
    configuration.rooms.first { id.equals(utf8: $0.id) }
  }

  func route(forPath path: Substring, headers: HTTPHeaders) -> RoomRoute? {
    configuration.rooms.match(path: path, headers: headers)
  }
}

extension [RoomRoute] {
  /// The room whose path prefix is the longest match for `path` among the rooms for this
  /// host (a room with a host beats one without at the same prefix length).
  func match(path: Substring, headers: HTTPHeaders) -> RoomRoute? {
    match(path: path.utf8) { headers.first(name: "host")?[...] }
  }

  /// The same on any UTF-8 path bytes (the express lane's raw request). `hostHeader` is asked
  /// only when a room names a host. Prefixes match without case, and a request without a
  /// `Host` (HTTP/1.0) belongs to host-bound rooms too: an upstream may serve either to it.
  func match<Path: Collection<UInt8>>(path: Path, hostHeader: () -> Substring?) -> RoomRoute? {
    var best: RoomRoute?
    var requestHost: Substring?
    var hostRead = false
    for room in self where path.hasPrefixIgnoringCase(utf8: room.pathPrefix) {
      if let host = room.host {
        if !hostRead {
          requestHost = hostHeader().map { CanonicalTarget.normalizedHost($0) }
          hostRead = true
        }
        if let requestHost, requestHost != host { continue }
      }
      guard let current = best else {
        best = room
        continue
      }
      let (length, bestLength) = (room.pathPrefix.utf8.count, current.pathPrefix.utf8.count)
      if length > bestLength || (length == bestLength && room.host != nil && current.host == nil) {
        best = room
      }
    }
    return best
  }
}

/// A request's verified pass: whose it is, the token as presented (sent upstream), and when
/// it runs out (what a revocation is matched on).
struct PassHolder {
  var visitor: VisitorID
  var pass: Substring
  var expiry: Int64
}

/// Where a request goes: its path and query, and the protected room it belongs to.
struct RequestTarget {
  var path: Substring
  var query: Substring
  /// A `/_foyer/…` endpoint: always answered by the gateway, never in a room.
  var isGatewayEndpoint: Bool
  var room: RoomRoute?
}

/// Serves every request on the event loop, with no async hop: `/_foyer/*` endpoints; room
/// paths (a valid pass is forwarded; anyone else joins or polls the queue and gets the
/// waiting page or JSON); everything else is forwarded unprotected.
///
/// NIOHTTP1 is only this path's parser: a forwarded request's head is written out as bytes
/// and goes through the same rewriter and `ForwardingExchange` as the express lane's, and
/// its answer is written below the codec (`RawResponseWriter`). The body streams on the same
/// event loop, and each side stops reading while the other cannot take more (the `read`
/// interception below, `UpstreamRelay`'s gate).
final class GatewayHandler: ChannelDuplexHandler {
  typealias InboundIn = HTTPServerRequestPart
  typealias OutboundIn = HTTPServerResponsePart
  typealias OutboundOut = HTTPServerResponsePart

  private enum State {
    case idle
    /// Answering from the gateway itself; the request body is not needed.
    case local(HTTPRequestHead)
    /// Forwarded: the body goes to the exchange, which writes the answer below the codec.
    case forwarding(HTTPRequestHead, ForwardingExchange)
    /// The exchange failed and was answered; the rest of the request is read and dropped.
    case discarding
  }

  private let shared: GatewayContext
  /// This connection's event loop's upstream pool and signer, looked up once.
  private let pool: UpstreamPool?
  private let signer: TokenSigner
  /// The pass rule (`PassCheck`, with this connection's memo).
  private var passes: PassCheck
  private var state = State.idle
  private var context: ChannelHandlerContext?
  private var readPending = false
  private var requestEnded = false
  /// The request was answered at its head (`Expect: 100-continue` without forwarding, or no
  /// `Host`); its body, if the client sends one anyway, is dropped.
  private var answeredEarly = false
  /// This request's body framing as the upstream gets it (`RequestRules.framing`).
  private var framing = RequestFraming.none
  /// The body of a request answered locally, kept (up to `localBodyLimit`) in case it is
  /// forwarded after all: a passthrough room is only known to be one once Redis answers.
  private var localBody: ByteBuffer?
  private var localBodyOverflow = false
  /// Answered at the head (`Expect: 100-continue`): its body was never asked for.
  private var answeredAtHead = false
  static let localBodyLimit = 64 * 1024
  /// The upstream's answer timeout, one timer per connection.
  private let timeout = DeadlineTimer()
  /// What every forwarded request of this connection carries.
  private var forwarding = ClientForwarding(address: "unknown")
  /// Where forwarded answers are written (below the codec).
  private let output: RawResponseWriter
  private var forwardedBodyBytes: Int64 = 0
  /// This request's path, query and room (see `target(_:)`).
  private var requestTarget: RequestTarget?
  /// This request's pass check, once per request: (room, holder or nil).
  private var passChecked: (room: String, holder: PassHolder?, revoked: Bool)?
  /// Requests on this connection, for request ids (with `forwarding.connectionTag`).
  private var requestCount = 0
  /// This request's id: the client's `X-Request-Id` if it is sane, else made here. Sent
  /// upstream and put on every log line about the request.
  private var requestID: String?

  init(shared: GatewayContext, eventLoop: any EventLoop, output: RawResponseWriter) {
    self.shared = shared
    self.output = output
    pool = shared.pool(on: eventLoop)
    signer = shared.signer(on: eventLoop)
    passes = PassCheck(signer: signer, revocations: shared.revocations(on: eventLoop))
  }

  func handlerAdded(context: ChannelHandlerContext) {
    self.context = context
    forwarding = ClientForwarding(address: context.channel.remoteAddress?.ipAddress ?? "unknown")
  }

  func handlerRemoved(context: ChannelHandlerContext) {
    timeout.cancel()
    self.context = nil
  }

  func channelRead(context: ChannelHandlerContext, data: NIOAny) {
    switch unwrapInboundIn(data) {
    case .head(var head):
      requestEnded = false
      answeredEarly = false
      forwardedBodyBytes = 0
      localBody = nil
      localBodyOverflow = false
      answeredAtHead = false
      passChecked = nil
      requestTarget = nil
      requestID = nil
      requestCount &+= 1
      switch RequestRules.framing(head).flatMap({ framing in
        RequestRules.canonical(head).map { (framing, $0) }
      }) {
      case .failure(let refusal):
        refuse(refusal, head: head, context: context)
        return
      case .success(let (framing, canonical)):
        self.framing = framing
        head = canonical
      }
      // `Expect: 100-continue` is answered here, as nginx does, and never forwarded: the
      // upstream sees a plain request whose body is already on its way.
      let expectsContinue =
        head.version.minor >= 1
        && head.headers[canonicalForm: "expect"].contains { $0.lowercased() == "100-continue" }
      if expectsContinue { head.headers.remove(name: "expect") }
      if let forward = forwardingDecision(head) {
        if expectsContinue {
          context.writeAndFlush(
            wrapOutboundOut(.head(HTTPResponseHead(version: head.version, status: .continue))), promise: nil)
        }
        startForwarding(head, room: forward, context: context)
      } else if expectsContinue {
        // Answered without the body (RFC 9110 §10.1.1): the client need not send it, so the
        // answer closes the connection rather than wait for a body that may never come.
        head.headers.replaceOrAdd(name: "connection", value: "close")
        answeredEarly = true
        answeredAtHead = true
        state = .local(head)
        route(head, context: context)
      } else {
        state = .local(head)
      }
    case .body(let body):
      if answeredEarly { break }
      if case .local = state {
        // Kept in case the room turns out to be passthrough and the request is forwarded.
        if localBodyOverflow || (localBody?.readableBytes ?? 0) + body.readableBytes > Self.localBodyLimit {
          localBodyOverflow = true
          localBody = nil
        } else if localBody == nil {
          localBody = body
        } else {
          localBody!.writeImmutableBuffer(body)
        }
        break
      }
      guard case .forwarding(_, let exchange) = state else { break }  // discarding
      forwardedBodyBytes += Int64(body.readableBytes)
      let limit = shared.configuration.limits.maxBodyBytes
      if limit > 0 && forwardedBodyBytes > limit {
        abandon(exchange, .payloadTooLarge, "the request body is over \(limit) bytes", code: "body_too_large")
        return
      }
      exchange.sendBody(body)
    case .end(let trailers):
      requestEnded = true
      if answeredEarly {
        answeredEarly = false
        if case .local = state { state = .idle }
        return
      }
      switch state {
      case .local(let head):
        route(head, context: context)
      case .forwarding(_, let exchange):
        exchange.sendEnd(trailers: trailers.map(Self.forwardableTrailers))
      case .discarding:
        state = .idle
      case .idle:
        break
      }
    }
  }

  /// Holds client reads while the request body has nowhere to go: the upstream is not
  /// connected yet or cannot take more. Once the request has ended, reads go on (what follows
  /// is the next request, which `RequestSequencer` queues): pausing and resuming reads costs
  /// two `epoll_ctl` calls per exchange.
  func read(context: ChannelHandlerContext) {
    switch state {
    case .forwarding(_, let exchange) where !requestEnded && !exchange.canTakeBody:
      readPending = true
    default:
      context.read()
    }
  }

  func channelWritabilityChanged(context: ChannelHandlerContext) {
    if case .forwarding(_, let exchange) = state {
      exchange.clientWritabilityChanged(writable: context.channel.isWritable)
    }
    context.fireChannelWritabilityChanged()
  }

  func channelInactive(context: ChannelHandlerContext) {
    // The client left mid-exchange: the upstream connection's state is unknown; it goes.
    if case .forwarding(_, let exchange) = state { exchange.clientClosed() }
    timeout.cancel()
    state = .idle
    context.fireChannelInactive()
  }

  /// A head the gateway will not frame or route: answered and the connection closed, so
  /// nothing after it is read as a request.
  private func refuse(_ refusal: Refusal, head: HTTPRequestHead, context: ChannelHandlerContext) {
    shared.metrics.countRefused(refusal.code)
    var head = head
    if head.version.major != 1 || head.version.minor > 1 { head.version = .http1_1 }
    head.headers.replaceOrAdd(name: "connection", value: "close")
    answeredEarly = true
    state = .local(head)
    var headers = HTTPHeaders()
    if let allow = refusal.allow { headers.add(name: "allow", value: allow) }
    respond(
      context, head, status: refusal.status, contentType: "application/json", body: refusal.json,
      extraHeaders: headers)
  }

  private func route(_ head: HTTPRequestHead, context: ChannelHandlerContext) {
    let target = self.target(head)
    guard target.isGatewayEndpoint else {
      if let route = target.room {
        visit(route.id, head: head, context: context, page: true)
      } else {
        answerNoUpstream(head, context: context)
      }
      return
    }
    let endpoint: GatewayEndpoint
    switch GatewayEndpoint.table.match(method: head.method.rawValue, path: target.path) {
    case .route(let matched, _):
      endpoint = matched
    case .methodNotAllowed(let allow):
      return respond(
        context, head, status: .methodNotAllowed, contentType: "application/json",
        body: "{\"error\":\"method_not_allowed\",\"message\":\"use \(allow) here\"}",
        extraHeaders: ["allow": allow])
    case .notFound:
      return respond(
        context, head, status: .notFound, contentType: "application/json",
        body: "{\"error\":\"not_found\",\"message\":\"no such endpoint\"}")
    }
    switch endpoint {
    case .healthz:
      respond(context, head, status: .ok, contentType: "text/plain", body: "ok\n")
    case .readyz:
      ready(head, context: context)
    case .openAPI:
      var body = context.channel.allocator.buffer(capacity: OpenAPIDocuments.public.count)
      body.writeBytes(OpenAPIDocuments.public)
      LocalResponse.write(context, to: head, status: .ok, contentType: "application/json", body: body)
    case .status, .leave, .solve:
      guard let roomID = Self.parameter("room", in: target.query.utf8) else {
        return respond(
          context, head, status: .badRequest, contentType: "application/json",
          body: "{\"error\":\"room_required\",\"message\":\"name the room: ?room=ID\"}")
      }
      guard let route = shared.room(id: roomID) else {
        return respond(
          context, head, status: .notFound, contentType: "application/json",
          body: "{\"error\":\"unknown_room\",\"message\":\"room must name a protected room\"}")
      }
      if endpoint == .leave {
        leave(route.id, head: head, context: context)
      } else if endpoint == .solve {
        solve(route.id, query: target.query, head: head, context: context)
      } else {
        visit(route.id, head: head, context: context, page: false)
      }
    }
  }

  /// This request's path, query and room, worked out once per request: the forwarding
  /// decision (at the head) and the local answer (at the end) both need them.
  private func target(_ head: HTTPRequestHead) -> RequestTarget {
    if let requestTarget { return requestTarget }
    let (path, query) = Self.split(head.uri)
    let isGatewayEndpoint = path.utf8.starts(with: "/_foyer/".utf8)
    let room = isGatewayEndpoint ? nil : shared.route(forPath: path, headers: head.headers)
    let target = RequestTarget(path: path, query: query, isGatewayEndpoint: isGatewayEndpoint, room: room)
    requestTarget = target
    return target
  }

  // MARK: Forwarding

  /// Decided on the head alone, so the body can stream: `nil` answers locally; otherwise
  /// the request is forwarded, carrying the pass holder's visitor id if it had a pass.
  private func forwardingDecision(_ head: HTTPRequestHead) -> String?? {
    guard pool != nil else { return nil }
    let target = self.target(head)
    if target.isGatewayEndpoint { return nil }
    guard let route = target.room else { return .some(nil) }  // not protected
    guard pass(in: head, room: route.id) != nil else {
      return nil
    }
    return .some(route.id)
  }

  /// The request id, made on first use (most requests never need one).
  private func id(_ head: HTTPRequestHead) -> String {
    if let requestID { return requestID }
    var id = forwarding.connectionTag + "-" + String(requestCount)
    if let given = head.headers.first(name: "x-request-id"), UpstreamRequestHead.isSaneID(given.utf8) {
      id = given
    }
    requestID = id
    return id
  }

  /// The verified pass holder of this request for `room`, or `nil`. Verified once per
  /// request (the forwarding decision and the queue path both ask); a presented pass that
  /// fails is counted by reason.
  private func pass(in head: HTTPRequestHead, room: String) -> VisitorID? {
    passHolder(in: head, room: room)?.visitor
  }

  private func passHolder(in head: HTTPRequestHead, room: String) -> PassHolder? {
    if let checked = passChecked, checked.room == room { return checked.holder }
    var holder: PassHolder?
    var revoked = false
    let presented =
      Cookies.value(prefix: Cookies.passPrefix, room: room, in: head.headers)
      ?? head.headers.first(name: "foyer-pass")?[...]
    if let presented {
      let now = Self.unixSeconds()
      let outcome =
        presented.utf8.withContiguousStorageIfAvailable {
          passes.check(utf8: UnsafeRawBufferPointer($0), room: room, now: now)
        } ?? Array(presented.utf8).withUnsafeBytes { passes.check(utf8: $0, room: room, now: now) }
      switch outcome {
      case .valid(let visitor, let expiry):
        holder = PassHolder(visitor: visitor, pass: presented, expiry: expiry)
      case .revoked:
        shared.metrics.passRejections[.revoked]?.increment()
        revoked = true
      case .rejected(let reason):
        shared.metrics.passRejections[reason]?.increment()
      }
    }
    passChecked = (room, holder, revoked)
    return holder
  }

  /// Forwards the request (a pass holder's of `room`, or unprotected): its head through the
  /// one request rewriter, its body and answer through a `ForwardingExchange`.
  private func startForwarding(
    _ head: HTTPRequestHead, room: String?, context: ChannelHandlerContext, requestComplete: Bool = false
  ) {
    guard let pool, let output = output.context else {
      return answerNoUpstream(head, context: context)
    }
    // A pass holder of `room` (the pass check ran at the head); `nil` when unprotected.
    let holder = room.flatMap { room in passChecked?.holder.map { (room: room, pass: $0) } }
    let serialized = UpstreamRequestHead.serialize(head, allocator: context.channel.allocator)
    let rewritten = serialized.withUnsafeReadableBytes { bytes -> (ByteBuffer, Range<Int>)? in
      guard case .head(let raw) = RawHTTP.request(bytes) else { return nil }
      // The same token the check verified, found in the written-out head by the one lookup.
      let token = holder.flatMap { Cookies.presentedPass(bytes, raw, room: $0.room) }
      return UpstreamRequestHead.write(
        bytes, raw, framing: framing,
        holder: holder.flatMap { holder in token.map { (visitor: holder.pass.visitor, pass: $0) } },
        client: forwarding, requestNumber: requestCount, allocator: context.channel.allocator)
    }
    guard let (upstreamHead, idRange) = rewritten else {
      // NIOHTTP1 took a head the byte reader does not: nothing goes upstream that it cannot read.
      return respond(
        context, head, status: .badRequest, contentType: "application/json",
        body: "{\"error\":\"bad_request\",\"message\":\"the request head cannot be forwarded\"}")
    }
    let exchange = ForwardingExchange(
      ForwardingExchange.Request(
        head: upstreamHead, requestIDRange: idRange, isHead: head.method == .HEAD,
        holder: holder.map { ($0.room, $0.pass.visitor, $0.pass.expiry) }, framing: framing,
        clientKeepAlive: head.version.minor >= 1 && head.isKeepAlive,
        idempotent: Self.idempotent.contains(head.method)),
      shared: shared, pool: pool, client: self, output: output, timer: timeout)
    requestID = exchange.requestID
    state = .forwarding(head, exchange)
    if requestComplete {
      if let localBody { exchange.sendBody(localBody) }
      exchange.sendEnd(trailers: nil)
    }
    exchange.start()
  }

  /// RFC 9110 §9.2.2: sent again once when a kept-alive upstream connection turns out stale.
  private static let idempotent: [HTTPMethod] = [.GET, .HEAD, .OPTIONS, .TRACE, .PUT, .DELETE]

  /// Trailers go upstream under the header rules: no hop-by-hop fields, none of the gateway's
  /// own (a `Foyer-Visitor` in a trailer is as forged as in the head).
  static func forwardableTrailers(_ trailers: HTTPHeaders) -> HTTPHeaders {
    var kept = trailers
    ForwardingHeaders.stripHopByHop(&kept)
    ForwardingHeaders.stripGatewayHeaders(&kept)
    for name in ["content-length", "transfer-encoding", "cookie", "host"] { kept.remove(name: name) }
    return kept
  }

  func channelReadComplete(context: ChannelHandlerContext) {
    if case .forwarding(_, let exchange) = state { exchange.flushUpstream() }
    context.fireChannelReadComplete()
  }

  /// The request cannot go on (its body is over the limit): the exchange is dropped, the
  /// client answered if nothing went out yet, and the connection closed.
  private func abandon(
    _ exchange: ForwardingExchange, _ status: HTTPResponseStatus, _ message: String, code: String
  ) {
    guard case .forwarding(let request, _) = state, let context else { return }
    exchange.clientClosed()
    state = .discarding
    if exchange.responseStarted {
      context.close(promise: nil)
      return
    }
    var head = request
    head.headers.replaceOrAdd(name: "connection", value: "close")
    let body = shared.failedExchange(
      status, message, code: code, requestID: id(head), uri: head.uri[...], room: target(head).room?.id,
      started: exchange.started)
    respond(context, head, status: status, contentType: "application/json", body: body)
  }

  // MARK: Endpoints

  private func ready(_ head: HTTPRequestHead, context: ChannelHandlerContext) {
    let loop = context.eventLoop
    shared.store.redis.send(RedisCommand("PING"), on: loop, timeout: shared.configuration.redisTimeout)
    .hop(to: loop).assumeIsolated().whenComplete { result in
      switch result {
      case .success:
        self.respond(context, head, status: .ok, contentType: "text/plain", body: "ready\n")
      case .failure:
        self.shared.metrics.redisErrors.increment()
        self.respond(
          context, head, status: .serviceUnavailable, contentType: "application/json",
          body: "{\"error\":\"unavailable\",\"message\":\"Redis is unreachable\"}")
      }
    }
  }

  /// A visitor of `room`: a valid pass goes through; anyone else joins or polls the queue
  /// and gets JSON (`/_foyer/status`, or `Accept: application/json`) or the waiting page.
  private func visit(_ room: String, head: HTTPRequestHead, context: ChannelHandlerContext, page: Bool) {
    let loop = context.eventLoop
    let wallNow = Self.unixSeconds()
    var cookies: [String] = []
    let wantsJSON =
      !page || head.headers[canonicalForm: "accept"].contains { $0.contains("application/json") }

    // An existing pass answers without Redis (verification is local).
    if pass(in: head, room: room) != nil {
      if page {
        answerNoUpstream(head, context: context)
      } else {
        respondJSON(context, head, StatusBody.admitted(room: room, pass: nil), cookies: [])
      }
      return
    }
    if passChecked?.revoked == true {
      // The pass was given back (checkout done, left, or taken by an operator): the visit has
      // ended. The pass goes from the jar; a visitor who comes back after that joins again.
      let cleared = Cookies.setCookie(
        name: Cookies.passName(room: room), value: "", maxAge: 0, secure: shared.configuration.secureCookies)
      let body = StatusBody.notWaiting(room: room, state: "ended", pollAfterMilliseconds: 2_000)
      if wantsJSON {
        respondJSON(context, head, body, cookies: [cleared])
      } else {
        respond(
          context, head, status: .ok, contentType: "text/html; charset=utf-8",
          body: self.page(body, message: "Your visit has ended. Thank you!"),
          extraHeaders: ["set-cookie": cleared])
      }
      return
    }

    // Who the client is, once: the traffic rules and the join's per-client limits read it.
    let client = clientAddress(head, context: context)
    // The room's traffic rules, for anyone without a pass: staff and monitors skip the line,
    // blocked clients get no place.
    if let rules = shared.trafficRules.rules(room: room) {
      if let rule = rules.match(address: client, userAgent: head.headers.first(name: "user-agent")) {
        shared.metrics.countRule(rule.action)
        switch rule.action {
        case .block:
          return refuse(
            Refusal(status: .forbidden, code: "blocked", message: "requests like this one are not let into this sale"),
            retryAfter: nil, room: room, head: head, context: context, json: wantsJSON)
        case .allow:
          return answer(
            .passthrough, room: room, visitor: VisitorID(high: 0, low: 0), cookies: [], head: head, context: context,
            page: page, json: wantsJSON)
        }
      }
    }

    let visitor: VisitorID
    // A visitor id made by this request (not read from a cookie or an enqueue token).
    var minted = false
    var place: Int64?
    if let (known, presented) = Self.visitorAndPlace(in: head, room: room, signer: signer, now: wallNow) {
      place = presented
      // Asked again too soon (a reload, a script): answered from memory, the place is kept.
      if let wait = shared.polls.wait(known, room: room) {
        return refuse(
          PollDiscipline.refusal, retryAfter: PollDiscipline.retryAfterSeconds(wait), room: room, head: head,
          context: context, json: wantsJSON)
      }
      visitor = known
    } else {
      if let key = shared.configuration.enqueueKeys[room] {
        // Invite-only: the account's own visitor id, or no place at all.
        switch Self.enqueueToken(in: head, room: room, key: key, now: wallNow) {
        case .success(let account): visitor = account
        case .failure(let refusal):
          return refuse(refusal, retryAfter: nil, room: room, head: head, context: context, json: wantsJSON)
        }
      } else {
        visitor = .random()
        minted = true
      }
      let token = signer.sign(Token(kind: .visitor, room: room, visitor: visitor, time: wallNow))
      cookies.append(
        Cookies.setCookie(
          name: Cookies.visitorName(room: room), value: token, maxAge: 86_400,
          secure: shared.configuration.secureCookies))
    }

    enter(
      room, visitor: visitor, place: place, client: client, minted: minted, solved: nil, cookies: cookies,
      head: head, context: context, page: page, json: wantsJSON)
  }

  /// The client's address as `ClientIdentity` resolves it (the peer, or behind a trusted
  /// proxy the forwarded client).
  private func clientAddress(_ head: HTTPRequestHead, context: ChannelHandlerContext) -> [UInt8]? {
    ClientIdentity.address(
      peer: context.channel.remoteAddress, headers: head.headers, trusted: shared.configuration.clients.trustedProxies)
  }

  /// Where `visitor` stands in `room`, joining (and claiming at once if the join admits) when
  /// not in line yet, and the answer to the visitor: the queue, a challenge, a pass, or why not.
  private func enter(
    _ room: String, visitor: VisitorID, place: Int64? = nil, client address: [UInt8]?, minted: Bool,
    solved: Challenge?, cookies: [String], head: HTTPRequestHead, context: ChannelHandlerContext, page: Bool,
    json: Bool
  ) {
    let loop = context.eventLoop
    let store = shared.store
    // A visitor id made just now is in no line: it joins at once.
    let found =
      minted
      ? loop.makeSucceededFuture(VisitorStatus.absent(.queue))
      : store.status(room: room, visitor: visitor, place: place, claim: true, on: loop)
    found
      .flatMap { status -> EventLoopFuture<VisitorStatus> in
        guard case .absent = status else { return loop.makeSucceededFuture(status) }
        // The per-client limits ride on the join's round trip (Scripts.join).
        let client = address.map {
          JoiningClient(
            key: ClientIdentity.key($0), newVisitor: minted,
            newVisitorsPerMinute: self.shared.configuration.clients.newVisitorsPerMinute)
        }
        return store.join(room: room, visitor: visitor, client: client, solved: solved, on: loop).flatMap { joined in
          guard case .admitted = joined else { return loop.makeSucceededFuture(joined) }
          return store.claim(room: room, visitor: visitor, on: loop)
        }
      }
      .hop(to: loop).assumeIsolated().whenComplete { result in
        switch result {
        case .success(.refused(let limit, let seconds)):
          let refusal = Refusal(
            status: .tooManyRequests, code: limit.rawValue,
            message: limit == .tooManyPlaces
              ? "too many places in line were taken from your network; try again later"
              : "too many new visitors came from your network in the last minute; retry shortly")
          self.refuse(refusal, retryAfter: seconds, room: room, head: head, context: context, json: json)
        case .success(let status):
          if minted { self.shared.metrics.newVisitors.increment() }
          switch status {
          case .challenge: self.shared.metrics.challengesIssued.increment()
          case .queued where solved != nil: self.shared.metrics.challengesSolved.increment()
          default: break
          }
          self.shared.metrics.statusPolls.increment()
          self.answer(
            status, room: room, visitor: visitor, cookies: cookies, head: head, context: context, page: page, json: json,
            presentedPlace: place)
        case .failure(let error):
          self.shared.metrics.redisErrors.increment()
          self.shared.logger.warning(
            "queue unavailable",
            metadata: ["request_id": "\(self.id(head))", "room": "\(room)", "error": "\(error)"])
          self.unavailable(room: room, cookies: cookies, head: head, context: context, json: json)
        }
      }
  }

  /// `POST /_foyer/solve?room=R&challenge=C&solution=N`: a solved challenge, checked here
  /// (signature, room, the caller's own visitor id, expiry, the work) before any Redis work,
  /// buys the visitor one place.
  private func solve(_ room: String, query: Substring, head: HTTPRequestHead, context: ChannelHandlerContext) {
    let now = Self.unixSeconds()
    func invalid(_ reason: String) {
      shared.metrics.countRefused("invalid_solution")
      respond(
        context, head, status: .badRequest, contentType: "application/json",
        body: Refusal(
          status: .badRequest, code: "invalid_solution",
          message: "the solution does not solve a challenge of yours (\(reason)); ask for a new one").json)
    }
    guard let visitor = Self.visitorCookie(in: head, room: room, signer: signer, now: now) else {
      return invalid("no visitor id")
    }
    guard let challenge = Self.parameter("challenge", in: query.utf8),
      let counter = Self.parameter("solution", in: query.utf8)
    else { return invalid("name challenge and solution") }
    switch Challenge.verify(
      challenge: String(decoding: challenge, as: UTF8.self), counter: String(decoding: counter, as: UTF8.self),
      room: room, visitor: visitor, now: now, signer: signer)
    {
    case .failure(let rejection): invalid(rejection.rawValue)
    case .success(let solved):
      enter(
        room, visitor: visitor, client: clientAddress(head, context: context), minted: false, solved: solved,
        cookies: [], head: head, context: context, page: false, json: true)
    }
  }

  /// A client over a per-client limit (`429`, with `Retry-After`) or without a valid enqueue
  /// token in an invite-only room (`403`): no place and no visitor cookie; apps get
  /// `{error, message}`, browsers a page that says why.
  private func refuse(
    _ refusal: Refusal, retryAfter: Int?, room: String, head: HTTPRequestHead, context: ChannelHandlerContext,
    json: Bool
  ) {
    shared.metrics.countRefused(refusal.code)
    var headers = HTTPHeaders()
    if let retryAfter { headers.add(name: "retry-after", value: String(retryAfter)) }
    if json {
      respond(context, head, status: refusal.status, contentType: "application/json", body: refusal.json, extraHeaders: headers)
    } else {
      let body = StatusBody.notWaiting(
        room: room, state: "refused", pollAfterMilliseconds: (retryAfter ?? 60) * 1_000)
      respond(
        context, head, status: refusal.status, contentType: "text/html; charset=utf-8",
        body: page(body, message: "Sorry: \(refusal.message)."), extraHeaders: headers)
    }
  }

  /// The account's visitor id from a valid enqueue token (`Foyer-Enqueue` header, else the
  /// `foyer_enqueue` query parameter), or why there is none.
  static func enqueueToken(
    in head: HTTPRequestHead, room: String, key: [UInt8], now: Int64
  ) -> Result<VisitorID, Refusal> {
    let query = head.uri.firstIndex(of: "?").map { head.uri[head.uri.index(after: $0)...] } ?? ""
    guard let text = head.headers[canonicalForm: "foyer-enqueue"].first.map(String.init)
      ?? parameter("foyer_enqueue", in: query.utf8).map({ String(decoding: $0, as: UTF8.self) })
    else {
      return .failure(
        Refusal(
          status: .forbidden, code: "enqueue_token_required",
          message: "this on-sale is by invitation: open it from the link on your account page"))
    }
    guard let context = try? HMACSHA256(key: key) else {
      return .failure(Refusal(status: .internalServerError, code: "internal", message: "no HMAC context"))
    }
    switch EnqueueToken.verify(text, room: room, key: context, now: now) {
    case .success(let token): return .success(token.visitor(key: context))
    case .failure(let rejection):
      return .failure(
        Refusal(
          status: .forbidden, code: "invalid_enqueue_token",
          message: "the invitation is not valid (\(rejection.rawValue)): open it again from your account page"))
    }
  }

  /// `POST /_foyer/leave?room=R`: gives the slot (a pass holder) or the place in line (a
  /// waiting visitor) back at once, and clears the gateway's cookies for the room.
  private func leave(_ room: String, head: HTTPRequestHead, context: ChannelHandlerContext) {
    let holder = passHolder(in: head, room: room)
    let visitor =
      holder?.visitor ?? Self.visitorCookie(in: head, room: room, signer: signer, now: Self.unixSeconds())
    var headers = HTTPHeaders()
    for name in [Cookies.passName(room: room), Cookies.visitorName(room: room), Cookies.placeName(room: room)] {
      headers.add(
        name: "set-cookie",
        value: Cookies.setCookie(name: name, value: "", maxAge: 0, secure: shared.configuration.secureCookies)
      )
    }
    guard let visitor else {
      respond(
        context, head, status: .ok, contentType: "application/json",
        body: "{\"room\":\"\(room)\",\"result\":\"none\"}", extraHeaders: headers)
      return
    }
    shared.release(
      room: room, visitor: visitor, passExpiry: holder?.expiry, reason: .left, on: context.eventLoop
    )
    .hop(to: context.eventLoop).assumeIsolated().whenComplete { result in
      switch result {
      case .success(let outcome):
        self.respond(
          context, head, status: .ok, contentType: "application/json",
          body: "{\"room\":\"\(room)\",\"result\":\"\(outcome.rawValue)\"}", extraHeaders: headers)
      case .failure:
        self.shared.metrics.redisErrors.increment()
        self.unavailable(room: room, cookies: [], head: head, context: context, json: true)
      }
    }
  }

  /// Redis is unreachable: nobody without a pass goes through; JSON gets 503 with a retry
  /// hint, browsers the waiting page (which keeps polling).
  private func unavailable(
    room: String, cookies: [String], head: HTTPRequestHead, context: ChannelHandlerContext, json: Bool
  ) {
    var headers = HTTPHeaders()
    let retry = shared.configuration.unavailableRetrySeconds
    headers.add(name: "retry-after", value: String(retry))
    for cookie in cookies { headers.add(name: "set-cookie", value: cookie) }
    if json {
      respond(
        context, head, status: .serviceUnavailable, contentType: "application/json",
        body: "{\"error\":\"unavailable\",\"message\":\"the waiting room is briefly unavailable; retry\"}",
        extraHeaders: headers)
    } else {
      let body = StatusBody.notWaiting(room: room, state: "unavailable", pollAfterMilliseconds: retry * 1_000)
      respond(
        context, head, status: .ok, contentType: "text/html; charset=utf-8",
        body: page(body, message: "We are reconnecting. You keep your place; this page retries by itself."),
        extraHeaders: headers)
    }
  }

  private func answer(
    _ status: VisitorStatus, room: String, visitor: VisitorID, cookies: [String],
    head: HTTPRequestHead, context: ChannelHandlerContext, page: Bool, json: Bool, presentedPlace: Int64? = nil
  ) {
    var cookies = cookies
    let (body, cookie) = StatusBody.answer(
      status, room: room, visitor: visitor, signer: signer, secureCookies: shared.configuration.secureCookies,
      presentedPlace: presentedPlace)
    if let cookie { cookies.append(cookie) }
    shared.polls.answered(body, visitor: visitor)
    if page && body.admitted {
      if case .passthrough = status, pool != nil {
        // Not protected right now: forward the request as it was read, body and all.
        if answeredAtHead {
          respond(
            context, head, status: .expectationFailed, contentType: "application/json",
            body: "{\"error\":\"expectation_failed\",\"message\":\"retry without Expect: 100-continue\"}")
        } else if localBodyOverflow {
          respond(
            context, head, status: .payloadTooLarge, contentType: "application/json",
            body: Refusal(
              status: .payloadTooLarge, code: "body_too_large",
              message: "a request body answered by the queue is kept up to \(Self.localBodyLimit) bytes"
            ).json)
        } else {
          framing = localBody.map { .length(Int64($0.readableBytes)) } ?? .none
          startForwarding(head, room: nil, context: context, requestComplete: true)
        }
      } else {
        // Admitted just now: send the visitor back to the same URL, now with the pass, so
        // the request (and any body) goes through the forwarding path (307 keeps the method).
        var headers = HTTPHeaders()
        for cookie in cookies { headers.add(name: "set-cookie", value: cookie) }
        headers.add(name: "location", value: head.uri)
        respond(
          context, head, status: .temporaryRedirect, contentType: "text/plain", body: "admitted\n",
          extraHeaders: headers)
      }
    } else if json {
      respondJSON(context, head, body, cookies: cookies)
    } else {
      var headers = HTTPHeaders()
      for cookie in cookies { headers.add(name: "set-cookie", value: cookie) }
      respond(
        context, head, status: .ok, contentType: "text/html; charset=utf-8", body: self.page(body),
        extraHeaders: headers)
    }
  }

  /// No upstream is configured: a request that would be forwarded gets a clear 502.
  private func answerNoUpstream(_ head: HTTPRequestHead, context: ChannelHandlerContext) {
    respond(
      context, head, status: .badGateway, contentType: "application/json",
      body: "{\"error\":\"no_upstream\",\"message\":\"this gateway has no upstream configured\"}")
  }

  private func page(_ body: StatusBody, message: String? = nil) -> String {
    shared.metrics.waitingPages.increment()
    let progress = 0
    var values: [String: String] = [
      "room": body.room, "state": body.state, "pollAfterMs": String(body.pollAfterMilliseconds),
      "refreshSeconds": String(max(2, body.pollAfterMilliseconds / 1_000)),
      "startsAt": String(body.startsAtMilliseconds),
      "progress": String(progress),
      "eta": body.etaSeconds.map(Self.waitText) ?? "unknown while the sale is paused",
    ]
    if let challenge = body.challenge {
      values["challenge"] = challenge
      values["bits"] = String(body.challengeBits)
    }
    if let position = body.position {
      values["position"] = String(position)
      values["ahead"] = String(max(position - 1, 0))
      values["waiting"] = String(body.waiting ?? position)
    }
    values["message"] =
      message
      ?? [
        "paused": "The sale is paused. You keep your place.", "closed": "This sale is closed.",
        "full": "The line is full right now. We will keep trying.",
        "challenge": "Checking your browser before you join the line…",
      ][body.state] ?? "Thank you for waiting. We will take you in as soon as we can."
    return shared.waitingPage.render(values)
  }

  // MARK: Writing

  private func respondJSON(
    _ context: ChannelHandlerContext, _ head: HTTPRequestHead, _ body: StatusBody, cookies: [String]
  ) {
    var headers = HTTPHeaders()
    headers.add(name: "retry-after", value: String(body.retryAfterSeconds))
    for cookie in cookies { headers.add(name: "set-cookie", value: cookie) }
    respond(
      context, head, status: .ok, contentType: "application/json", body: body.json, extraHeaders: headers)
  }

  private func respond(
    _ context: ChannelHandlerContext, _ request: HTTPRequestHead, status: HTTPResponseStatus,
    contentType: String,
    body: String, extraHeaders: HTTPHeaders = [:]
  ) {
    LocalResponse.write(
      context, to: request, status: status, contentType: contentType,
      body: context.channel.allocator.buffer(string: body), extraHeaders: extraHeaders)
  }

  // MARK: Helpers

  private static func verify(
    _ signer: TokenSigner, _ token: Substring, kind: TokenKind, room: String, now: Int64
  )
    -> TokenVerification
  {
    // Straight from the header's bytes: no copy of the token into a new String.
    token.utf8.withContiguousStorageIfAvailable {
      signer.verify(utf8: UnsafeRawBufferPointer($0), kind: kind, room: room, now: now)
    } ?? signer.verify(String(token), kind: kind, room: room, now: now)
  }

  /// The visitor and place a request's cookies for `room` present (`Cookies.visitorAndPlace`).
  private static func visitorAndPlace(
    in head: HTTPRequestHead, room: String, signer: TokenSigner, now: Int64
  ) -> (visitor: VisitorID, place: Int64?)? {
    guard let token = Cookies.value(prefix: Cookies.visitorPrefix, room: room, in: head.headers) else { return nil }
    let place = Cookies.value(prefix: Cookies.placePrefix, room: room, in: head.headers).map { Array($0.utf8) }
    return Array(token.utf8).withUnsafeBytes { token in
      func verify(_ bytes: UnsafeRawBufferPointer, _ kind: TokenKind) -> TokenVerification {
        signer.verify(utf8: bytes, kind: kind, room: room, now: now)
      }
      guard let place else { return Cookies.visitorAndPlace(visitor: token, place: nil, room: room, verify: verify) }
      return place.withUnsafeBytes { Cookies.visitorAndPlace(visitor: token, place: $0, room: room, verify: verify) }
    }
  }

  /// The visitor proven by the request's visitor cookie for `room`, if it is valid.
  private static func visitorCookie(
    in head: HTTPRequestHead, room: String, signer: TokenSigner, now: Int64
  ) -> VisitorID? {
    guard let token = Cookies.value(prefix: Cookies.visitorPrefix, room: room, in: head.headers),
      case .valid(let known, _) = verify(signer, token, kind: .visitor, room: room, now: now)
    else { return nil }
    return known
  }

  static func split(_ uri: String) -> (path: Substring, query: Substring) {
    guard let question = uri.firstIndex(of: "?") else { return (uri[...], "") }
    return (uri[..<question], uri[uri.index(after: question)...])
  }

  /// The value of the first `name=value` pair of a query (pairs split by `&`), undecoded:
  /// room ids need no decoding. Over bytes, so the express lane reads a poll's room with it
  /// straight from the request buffer.
  static func parameter<Bytes: Collection<UInt8>>(_ name: StaticString, in query: Bytes) -> Bytes.SubSequence?
  {
    let key = UnsafeRawBufferPointer(start: name.utf8Start, count: name.utf8CodeUnitCount)
    var rest = query[...]
    while true {
      let end = rest.firstIndex(of: UInt8(ascii: "&")) ?? rest.endIndex
      var pair = rest[..<end]
      if pair.starts(with: key) {
        pair.removeFirst(key.count)
        if pair.first == UInt8(ascii: "=") { return pair.dropFirst() }
      }
      guard end < rest.endIndex else { return nil }
      rest = rest[rest.index(after: end)...]
    }
  }

  /// The wait in words, as the page's script words it when it updates (WaitingPageTemplate).
  static func waitText(seconds: Int) -> String {
    guard seconds >= 60 else { return "less than a minute" }
    let minutes = (seconds + 30) / 60
    if minutes < 90 { return "about \(minutes) minute" + (minutes == 1 ? "" : "s") }
    return "about \((minutes + 30) / 60) hours"
  }

  static func unixSeconds() -> Int64 {
    var now = timespec()
    clock_gettime(CLOCK_REALTIME, &now)
    return Int64(now.tv_sec)
  }
}

extension GatewayHandler: ForwardingClient {
  func exchangeEnded(_ exchange: ForwardingExchange, closeClient: Bool) {
    guard case .forwarding(let head, let current) = state, current === exchange, let context,
      let written = output.flushed()
    else { return }
    // A request whose answer came before its body ended: the rest is read and dropped.
    state = requestEnded ? .idle : .discarding
    context.triggerUserOutboundEvent(
      ForwardedResponseEnded(written: written, close: closeClient || !head.isKeepAlive), promise: nil)
  }

  func exchangeFailed(_ exchange: ForwardingExchange, status: HTTPResponseStatus, body: String) {
    guard case .forwarding(let head, let current) = state, current === exchange, let context else { return }
    state = requestEnded ? .idle : .discarding
    respond(context, head, status: status, contentType: "application/json", body: body)
  }

  func exchangeAborted(_ exchange: ForwardingExchange) {
    guard case .forwarding(_, let current) = state, current === exchange else { return }
    state = .idle
    context?.close(promise: nil)
  }

  func exchangeCanTakeBody(_ exchange: ForwardingExchange) {
    guard readPending, case .forwarding(_, let current) = state, current === exchange else { return }
    readPending = false
    context?.read()
  }
}
