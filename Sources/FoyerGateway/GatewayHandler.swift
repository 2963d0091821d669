internal import FoyerCore
internal import Logging
internal import NIOCore
internal import NIOHTTP1
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
  let logger: Logger

  func signer(on loop: any EventLoop) -> TokenSigner {
    signers[ObjectIdentifier(loop)]!.value
  }

  var waitingPage: WaitingPage { WaitingPage.builtIn }

  func room(id: Substring) -> RoomRoute? {
    configuration.rooms.first { $0.id == id }
  }

  /// The room whose path prefix is the longest match for `path`.
  func route(forPath path: Substring) -> RoomRoute? {
    configuration.rooms.filter { path.hasPrefix($0.pathPrefix) }.max {
      $0.pathPrefix.count < $1.pathPrefix.count
    }
  }
}

/// Serves every request on the event loop, with no async hop: `/_foyer/*` endpoints, then
/// room paths (pass check, then queue join/poll with the waiting page or JSON).
///
/// Not built yet (the gateway issue goes on): forwarding to the upstream (requests that
/// would be forwarded get a 502 `no_upstream`), the admin API, metrics and request limits.
final class GatewayHandler: ChannelInboundHandler {
  typealias InboundIn = HTTPServerRequestPart
  typealias OutboundOut = HTTPServerResponsePart

  private let shared: GatewayContext
  private var head: HTTPRequestHead?

  init(shared: GatewayContext) {
    self.shared = shared
  }

  func channelRead(context: ChannelHandlerContext, data: NIOAny) {
    switch unwrapInboundIn(data) {
    case .head(let head):
      self.head = head
    case .body:
      break  // The gateway's own endpoints take no body.
    case .end:
      guard let head else { return }
      self.head = nil
      route(head, context: context)
    }
  }

  private func route(_ head: HTTPRequestHead, context: ChannelHandlerContext) {
    let (path, query) = Self.split(head.uri)
    switch path {
    case "/_foyer/healthz":
      respond(context, head, status: .ok, contentType: "text/plain", body: "ok\n")
    case "/_foyer/readyz":
      ready(head, context: context)
    case "/_foyer/status":
      guard let roomID = Self.parameter("room", in: query), let route = shared.room(id: roomID) else {
        respond(
          context, head, status: .badRequest, contentType: "application/json",
          body: "{\"error\":\"unknown_room\",\"message\":\"room must name a protected room\"}")
        return
      }
      visit(route.id, head: head, context: context, page: false)
    default:
      if path.hasPrefix("/_foyer/") {
        respond(
          context, head, status: .notFound, contentType: "application/json",
          body: "{\"error\":\"not_found\",\"message\":\"no such endpoint\"}")
      } else if let route = shared.route(forPath: path) {
        visit(route.id, head: head, context: context, page: true)
      } else {
        forward(head, context: context)
      }
    }
  }

  // MARK: Endpoints

  private func ready(_ head: HTTPRequestHead, context: ChannelHandlerContext) {
    let loop = context.eventLoop
    shared.store.redis.connection(on: loop).send(
      RedisCommand("PING"), timeout: shared.configuration.redisTimeout
    )
    .hop(to: loop).assumeIsolated().whenComplete { result in
      switch result {
      case .success:
        self.respond(context, head, status: .ok, contentType: "text/plain", body: "ready\n")
      case .failure:
        self.respond(
          context, head, status: .serviceUnavailable, contentType: "text/plain", body: "redis unreachable\n")
      }
    }
  }

  /// A visitor of `room`: a valid pass goes through; anyone else joins or polls the queue
  /// and gets JSON (`/_foyer/status`, or `Accept: application/json`) or the waiting page.
  private func visit(_ room: String, head: HTTPRequestHead, context: ChannelHandlerContext, page: Bool) {
    let loop = context.eventLoop
    let signer = shared.signer(on: loop)
    let wallNow = Self.unixSeconds()
    var cookies: [String] = []
    let wantsJSON =
      !page || head.headers[canonicalForm: "accept"].contains { $0.contains("application/json") }

    // An existing pass answers without Redis (verification is local).
    let presented =
      Cookies.value(named: Cookies.passName(room: room), in: head.headers)
      ?? head.headers.first(name: "foyer-pass")?[...]
    if let presented, case .valid = Self.verify(signer, presented, kind: .pass, room: room, now: wallNow) {
      if page {
        forward(head, context: context)
      } else {
        respondJSON(context, head, StatusBody.admitted(room: room, pass: nil), cookies: [])
      }
      return
    }

    let visitor: VisitorID
    if let token = Cookies.value(named: Cookies.visitorName(room: room), in: head.headers),
      case .valid(let known, _) = Self.verify(signer, token, kind: .visitor, room: room, now: wallNow)
    {
      visitor = known
    } else {
      visitor = .random()
      let token = signer.sign(Token(kind: .visitor, room: room, visitor: visitor, time: wallNow))
      cookies.append(
        Cookies.setCookie(
          name: Cookies.visitorName(room: room), value: token, maxAge: 86_400,
          secure: shared.configuration.secureCookies))
    }

    let store = shared.store
    store.status(room: room, visitor: visitor, claim: true, on: loop)
      .flatMap { status -> EventLoopFuture<VisitorStatus> in
        // Not waiting yet (or any more): join, and claim at once if the join admits.
        guard case .absent = status else { return loop.makeSucceededFuture(status) }
        return store.join(room: room, visitor: visitor, on: loop).flatMap { joined in
          guard case .admitted = joined else { return loop.makeSucceededFuture(joined) }
          return store.claim(room: room, visitor: visitor, on: loop)
        }
      }
      .hop(to: loop).assumeIsolated().whenComplete { result in
        switch result {
        case .success(let status):
          self.answer(
            status, room: room, visitor: visitor, signer: signer, cookies: cookies, head: head,
            context: context,
            page: page, json: wantsJSON)
        case .failure(let error):
          self.shared.logger.warning("queue unavailable", metadata: ["room": "\(room)", "error": "\(error)"])
          self.unavailable(room: room, cookies: cookies, head: head, context: context, json: wantsJSON)
        }
      }
  }

  /// Redis is unreachable: nobody without a pass goes through; JSON gets 503 with a retry
  /// hint, browsers the waiting page (which keeps polling).
  private func unavailable(
    room: String, cookies: [String], head: HTTPRequestHead, context: ChannelHandlerContext, json: Bool
  ) {
    var headers = HTTPHeaders()
    headers.add(name: "retry-after", value: "2")
    for cookie in cookies { headers.add(name: "set-cookie", value: cookie) }
    if json {
      respond(
        context, head, status: .serviceUnavailable, contentType: "application/json",
        body: "{\"error\":\"unavailable\",\"message\":\"the waiting room is briefly unavailable; retry\"}",
        extraHeaders: headers)
    } else {
      let body = StatusBody.notWaiting(room: room, state: "unavailable", pollAfterMilliseconds: 2_000)
      respond(
        context, head, status: .ok, contentType: "text/html; charset=utf-8",
        body: page(body, message: "We are reconnecting. You keep your place; this page retries by itself."),
        extraHeaders: headers)
    }
  }

  private func answer(
    _ status: VisitorStatus, room: String, visitor: VisitorID, signer: TokenSigner, cookies: [String],
    head: HTTPRequestHead, context: ChannelHandlerContext, page: Bool, json: Bool
  ) {
    var cookies = cookies
    let body: StatusBody
    switch status {
    case .queued(let place):
      body = .queued(room: room, place: place)
    case .active(let sessionEnd):
      let expiry = sessionEnd / 1_000
      let pass = signer.sign(Token(kind: .pass, room: room, visitor: visitor, time: expiry))
      cookies.append(
        Cookies.setCookie(
          name: Cookies.passName(room: room), value: pass, maxAge: expiry - Self.unixSeconds(),
          secure: shared.configuration.secureCookies))
      body = .admitted(room: room, pass: pass)
    case .admitted:
      body = .notWaiting(room: room, state: "admitted", pollAfterMilliseconds: 250)
    case .absent(let state):
      body = .notWaiting(room: room, state: state.rawValue, pollAfterMilliseconds: 2_000)
    case .closed:
      body = .notWaiting(room: room, state: RoomState.closed.rawValue, pollAfterMilliseconds: 30_000)
    case .passthrough:
      body = .admitted(room: room, pass: nil)
    case .full:
      body = .notWaiting(room: room, state: "full", pollAfterMilliseconds: 10_000)
    }
    if page && body.admitted {
      forward(head, context: context, setCookies: cookies)
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

  /// Forwarding to the upstream is not built yet (the proxy is the next part of the gateway
  /// issue): a request that would be forwarded gets a clear 502 rather than a silent stub.
  private func forward(_ head: HTTPRequestHead, context: ChannelHandlerContext, setCookies: [String] = []) {
    var headers = HTTPHeaders()
    for cookie in setCookies { headers.add(name: "set-cookie", value: cookie) }
    respond(
      context, head, status: .badGateway, contentType: "application/json",
      body: "{\"error\":\"no_upstream\",\"message\":\"this gateway does not forward to an upstream yet\"}",
      extraHeaders: headers)
  }

  private func page(_ body: StatusBody, message: String? = nil) -> String {
    let progress = 0
    var values: [String: String] = [
      "room": body.room, "state": body.state, "pollAfterMs": String(body.pollAfterMilliseconds),
      "refreshSeconds": String(max(2, body.pollAfterMilliseconds / 1_000)),
      "startsAt": String(body.startsAtMilliseconds),
      "progress": String(progress),
      "eta": body.etaSeconds.map { $0 < 60 ? "less than a minute" : "about \(($0 + 30) / 60) minutes" }
        ?? "unknown while the sale is paused",
    ]
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
      ][body.state] ?? "Thank you for waiting. We will take you in as soon as we can."
    return shared.waitingPage.render(values)
  }

  // MARK: Writing

  private func respondJSON(
    _ context: ChannelHandlerContext, _ head: HTTPRequestHead, _ body: StatusBody, cookies: [String]
  ) {
    var headers = HTTPHeaders()
    headers.add(name: "retry-after", value: String(max(1, (body.pollAfterMilliseconds + 999) / 1_000)))
    for cookie in cookies { headers.add(name: "set-cookie", value: cookie) }
    respond(
      context, head, status: .ok, contentType: "application/json", body: body.json, extraHeaders: headers)
  }

  private func respond(
    _ context: ChannelHandlerContext, _ request: HTTPRequestHead, status: HTTPResponseStatus,
    contentType: String,
    body: String, extraHeaders: HTTPHeaders = [:]
  ) {
    var headers = extraHeaders
    headers.add(name: "content-type", value: contentType)
    headers.add(name: "content-length", value: String(body.utf8.count))
    headers.add(name: "cache-control", value: "no-store")
    let keepAlive = request.isKeepAlive
    if !keepAlive { headers.add(name: "connection", value: "close") }
    let head = HTTPResponseHead(version: request.version, status: status, headers: headers)
    context.write(wrapOutboundOut(.head(head)), promise: nil)
    if request.method != .HEAD {
      context.write(
        wrapOutboundOut(.body(.byteBuffer(context.channel.allocator.buffer(string: body)))), promise: nil)
    }
    let done = context.writeAndFlush(wrapOutboundOut(.end(nil)))
    if !keepAlive { done.assumeIsolated().whenComplete { _ in context.close(promise: nil) } }
  }

  // MARK: Helpers

  private static func verify(
    _ signer: TokenSigner, _ token: Substring, kind: TokenKind, room: String, now: Int64
  )
    -> TokenVerification
  {
    signer.verify(String(token), kind: kind, room: room, now: now)
  }

  static func split(_ uri: String) -> (path: Substring, query: Substring) {
    guard let question = uri.firstIndex(of: "?") else { return (uri[...], "") }
    return (uri[..<question], uri[uri.index(after: question)...])
  }

  static func parameter(_ name: String, in query: Substring) -> Substring? {
    for pair in query.split(separator: "&")
    where pair.hasPrefix(name) && pair.dropFirst(name.count).first == "=" {
      return pair.dropFirst(name.count + 1)
    }
    return nil
  }

  static func unixSeconds() -> Int64 {
    var now = timespec()
    clock_gettime(CLOCK_REALTIME, &now)
    return Int64(now.tv_sec)
  }
}
