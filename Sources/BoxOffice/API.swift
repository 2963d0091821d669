public import Foundation
internal import FoyerCore
public import HTTPTypes
public import Hummingbird
public import Logging
internal import NIOConcurrencyHelpers
internal import NIOCore
internal import PostgresNIO
internal import Prometheus

/// The JSON API of DESIGN §5 on a Hummingbird router. Handlers validate input into clear
/// `4xx` answers; the rules about seats live in `Inventory` and `Checkout`.
///
/// Reading events and seat maps is public; holds, checkout and orders need a visitor (a
/// valid pass, or the gateway's `Foyer-Visitor` when trusted) and only ever show that
/// visitor's own.
public struct BoxOfficeAPI: Sendable {
  let configuration: BoxOfficeConfiguration
  let inventory: Inventory
  let checkout: Checkout
  let cancellation: Cancellation
  let waitlist: Waitlist
  let expiry: ExpiryWorker?
  let hotSeats: HotSeatGuard?
  let metrics: BoxOfficeMetrics
  let signers: SignerPool
  /// Paces each visitor's hold attempts (`holds.attempts_per_minute`).
  let holdAttempts: HoldAttemptLimiter
  /// For `POST /admin/events` and `GET /metrics`; `nil` turns those off.
  let adminToken: String?
  let logger: Logger

  public init(
    configuration: BoxOfficeConfiguration, inventory: Inventory, checkout: Checkout, cancellation: Cancellation,
    waitlist: Waitlist, expiry: ExpiryWorker?, hotSeats: HotSeatGuard?, metrics: BoxOfficeMetrics, adminToken: String?,
    logger: Logger
  ) {
    self.configuration = configuration
    self.inventory = inventory
    self.checkout = checkout
    self.cancellation = cancellation
    self.waitlist = waitlist
    self.expiry = expiry
    self.hotSeats = hotSeats
    self.metrics = metrics
    self.signers = SignerPool(keyRing: configuration.keyRing)
    self.holdAttempts = HoldAttemptLimiter(perMinute: configuration.holdAttemptsPerMinute ?? 0)
    self.adminToken = adminToken
    self.logger = logger
  }

  /// The OpenAPI 3.1 document, as committed in `OpenAPI/` and compiled in.
  public static var openAPIDocument: [UInt8] { PackageResources.boxoffice_openapi_json }

  public func router() -> Router<BasicRequestContext> {
    let router = Router()
    router.add(middleware: ErrorMiddleware(logger: logger, metrics: metrics))
    for route in BoxOfficeRoute.allCases {
      router.on(RouterPath(route.route.template), method: HTTPRequest.Method(route.route.method)!) {
        request, context in try await respond(route, request, context)
      }
    }
    return router
  }

  /// What the router holds, as `METHOD /path`: the OpenAPI test compares it with the table.
  func registeredRoutes() -> [String] {
    router().routes.map { "\($0.method.rawValue) \($0.path)" }
  }

  func respond(_ route: BoxOfficeRoute, _ request: Request, _ context: BasicRequestContext) async throws
    -> Response
  {
    switch route {
    case .healthz: return Self.text("ok\n")
    case .readyz:
      try await inventory.client.query("SELECT 1", logger: logger)
      return Self.text("ready\n")
    case .openAPI:
      return Response(
        status: .ok, headers: [.contentType: "application/json"],
        body: .init(byteBuffer: ByteBuffer(bytes: Self.openAPIDocument)))
    case .events:
      if Self.wantsPage(request) { return Self.page(ShopPage.html) }
      return try await events(request)
    case .event:
      if Self.wantsPage(request) { return Self.page(ShopPage.html) }
      return try Self.json(try await inventory.event(try Self.uuid(context, "id")), orNotFound: "event")
    case .seats: return try await seats(request, context)
    case .createHold: return try await createHold(request, context)
    case .hold:
      let visitor = try visitor(request)
      return try Self.json(
        try await inventory.hold(try Self.uuid(context, "id"), visitor: visitor), orNotFound: "hold")
    case .releaseHold:
      let visitor = try visitor(request)
      let id = try Self.uuid(context, "id")
      guard try await inventory.release(id, visitor: visitor) else {
        throw APIError(.notFound, "not_found", "no active hold with this id")
      }
      metrics.holdsReleased.increment()
      return Response(status: .noContent)
    case .checkout: return try await runCheckout(request, context)
    case .orders:
      if Self.wantsPage(request) { return Self.page(ShopPage.html) }
      let buyer = try buyer(request)
      return try Self.json(["orders": try await inventory.orders(visitor: buyer)])
    case .order:
      let buyer = try buyer(request)
      return try Self.json(
        try await inventory.order(try Self.uuid(context, "id"), visitor: buyer), orNotFound: "order")
    case .cancelOrder:
      let buyer = try buyer(request)
      return try Self.json(try await cancellation.cancel(order: try Self.uuid(context, "id"), visitor: buyer))
    case .createEvent:
      try admin(request)
      let spec = try await Self.decode(EventSpec.self, request, maxBytes: 1_048_576)
      let event = try await inventory.createEvent(spec)
      return try Self.json(event, status: .created)
    case .ticketQR:
      // The buyer's own order only (another's is "not found", as for the order itself).
      let buyer = try buyer(request)
      guard let order = try await inventory.order(try Self.uuid(context, "id"), visitor: buyer) else {
        throw APIError.notFound("order")
      }
      let ticketID = try Self.uuid(context, "ticket")
      guard let ticket = order.tickets.first(where: { $0.id == ticketID }), let svg = TicketQR.svg(ticket.code)
      else { throw APIError.notFound("ticket") }
      var headers = HTTPFields()
      headers[.contentType] = "image/svg+xml"
      headers[.cacheControl] = "private, max-age=86400"
      return Response(status: .ok, headers: headers, body: .init(byteBuffer: ByteBuffer(string: svg)))
    case .ticketKeys:
      // Public on purpose: a scanner checks tickets with these and nothing else.
      return try Self.json(TicketKeys(keys: checkout.tickets.publishedKeys))
    case .joinWaitlist:
      let visitor = try visitor(request)
      struct Join: Decodable { var seats: Int }
      let join = try await Self.decode(Join.self, request, maxBytes: configuration.maxBodyBytes)
      let entry = try await waitlist.join(event: try Self.uuid(context, "id"), visitor: visitor, seats: join.seats)
      var response = try Self.json(entry, status: .created)
      // The offer comes later, maybe long after the pass: the buyer follows it with this.
      giveBuyerAccess(visitor, &response.headers)
      return response
    case .waitlist:
      return try Self.json(["entries": try await waitlist.entries(visitor: try buyer(request))])
    case .waitlistEntry:
      let buyer = try buyer(request)
      return try Self.json(try await waitlist.entry(try Self.uuid(context, "id"), visitor: buyer), orNotFound: "waitlist entry")
    case .leaveWaitlist:
      let buyer = try buyer(request)
      guard try await waitlist.leave(try Self.uuid(context, "id"), visitor: buyer) else {
        throw APIError(.notFound, "not_found", "no waitlist place of yours with this id is waiting or offered")
      }
      return Response(status: .noContent)
    case .claimOffer:
      let buyer = try buyer(request)
      let id = try Self.uuid(context, "id")
      let hold = try await waitlist.offeredHold(id, visitor: buyer)
      let answer = try await runCheckout(hold: hold, visitor: buyer, request)
      if answer.status == .created { try await waitlist.claimed(id) }
      return answer
    case .checkInPage: return Self.page(CheckInPage.html)
    case .checkIn: return try await checkIn(request)
    case .metrics:
      try admin(request)
      var headers = HTTPFields()
      headers[.contentType] = "text/plain; version=0.0.4; charset=utf-8"
      return Response(
        status: .ok, headers: headers,
        body: .init(byteBuffer: ByteBuffer(bytes: metrics.registry.emitToBuffer())))
    }
  }

  // MARK: Handlers

  func events(_ request: Request) async throws -> Response {
    let query = request.uri.queryParameters
    var filter = Inventory.EventFilter()
    for name in ["q", "city", "category"] { try APIError.checkText(query.get(name), name) }
    filter.text = query.get("q")
    filter.city = query.get("city")
    filter.category = query.get("category")
    filter.from = try query.get("from").map { try Self.date($0, "from") }
    filter.to = try query.get("to").map { try Self.date($0, "to") }
    if let limit = query.get("limit") {
      guard let value = Int(limit), (1...100).contains(value) else {
        throw APIError(.badRequest, "invalid_limit", "limit must be 1-100")
      }
      filter.limit = value
    }
    if let offset = query.get("offset") {
      guard let value = Int(offset), (0...Self.maximumOffset).contains(value) else {
        throw APIError(.badRequest, "invalid_offset", "offset must be 0-\(Self.maximumOffset)")
      }
      filter.offset = value
    }
    let (events, total) = try await inventory.events(filter)
    return try Self.json(EventPage(events: events, total: total, limit: filter.limit, offset: filter.offset))
  }

  /// Deep pages cost the database the rows skipped; a catalogue this deep is searched instead.
  static let maximumOffset = 100_000

  struct EventPage: Codable {
    var events: [Event]
    var total: Int
    var limit: Int
    var offset: Int
  }

  /// The seat map with an `ETag`: a poll with `If-None-Match` costs one aggregate query and
  /// a `304` while nothing changed.
  func seats(_ request: Request, _ context: BasicRequestContext) async throws -> Response {
    let event = try Self.uuid(context, "id")
    let section = request.uri.queryParameters.get("section")
    try APIError.checkText(section, "section")
    guard let tag = try await inventory.seatMapTag(event: event, section: section) else {
      throw APIError.notFound(section == nil ? "event" : "section")
    }
    var headers = HTTPFields()
    headers[.eTag] = tag
    headers[.cacheControl] = "no-cache"
    if let match = request.headers[.ifNoneMatch],
      match.split(separator: ",").contains(where: {
        $0.trimmingCharacters(in: .whitespaces) == tag
      })
    {
      return Response(status: .notModified, headers: headers)
    }
    let seats = try await inventory.seats(event: event, section: section)
    var response = try Self.json(SeatMap(eventId: event, seats: seats))
    response.headers.append(contentsOf: headers)
    return response
  }

  struct SeatMap: Codable {
    var eventId: UUID
    var seats: [SeatView]
  }

  struct HoldRequest: Decodable {
    var seatIds: [Int64]?
    var section: String?
    var quantity: Int?
  }

  func createHold(_ request: Request, _ context: BasicRequestContext) async throws -> Response {
    let visitor = try visitor(request)
    let event = try Self.uuid(context, "id")
    let body = try await Self.decode(HoldRequest.self, request, maxBytes: configuration.maxBodyBytes)
    if let wait = holdAttempts.take("\(visitor)") {
      // Before any database or guard work: a refused attempt costs nothing.
      metrics.holdAttemptsRefused.increment()
      throw APIError(
        .tooManyRequests, "too_many_attempts",
        "at most \(holdAttempts.perMinute) hold attempts a minute; retry in \(wait) s",
        headers: [.retryAfter: String(wait)])
    }
    let maxSeats = configuration.maxSeatsPerHold
    let result: ClaimResult
    switch (body.seatIds, body.section, body.quantity) {
    case (let seatIds?, nil, nil):
      guard !seatIds.isEmpty else {
        throw APIError(.badRequest, "no_seats", "seatIds must list at least one seat")
      }
      guard seatIds.count <= maxSeats else {
        throw APIError(.badRequest, "too_many_seats", "a hold has at most \(maxSeats) seats")
      }
      guard Set(seatIds).count == seatIds.count else {
        throw APIError(.badRequest, "duplicate_seats", "seatIds lists a seat twice")
      }
      result = try await guarded(seatIds) {
        try await inventory.claim(
          event: event, seatIds: seatIds, visitor: visitor, duration: configuration.holdDuration,
          seatCap: configuration.maxSeatsPerVisitor)
      }
    case (nil, let section?, let quantity?):
      try APIError.checkText(section, "section")
      guard (1...maxSeats).contains(quantity) else {
        throw APIError(.badRequest, "invalid_quantity", "quantity must be 1-\(maxSeats)")
      }
      metrics.claimAttempts.increment()
      result = try await inventory.claimBest(
        event: event, section: section, quantity: quantity, visitor: visitor,
        duration: configuration.holdDuration, seatCap: configuration.maxSeatsPerVisitor)
      // Only an empty answer can mean there is no such section: asked then, not before every
      // hold (the seat-map tag is an aggregate over the section).
      if case .unavailable(let seats) = result, seats.isEmpty,
        try await inventory.seatMapTag(event: event, section: section) == nil
      {
        throw APIError.notFound("section")
      }
    default:
      throw APIError(
        .badRequest, "invalid_hold_request",
        "send either {\"seatIds\": [...]} or {\"section\": \"…\", \"quantity\": n}")
    }
    switch result {
    case .held(let hold):
      metrics.holdsCreated.increment()
      expiry?.holdCreated(expiresAt: hold.expiresAt)
      return try Self.json(hold, status: .created)
    case .unavailable(let seats):
      metrics.holdConflicts.increment()
      throw APIError(
        .conflict, "seats_unavailable",
        seats.isEmpty
          ? "not enough seats are available in this section" : "some seats are no longer available",
        details: ["unavailableSeatIds": seats])
    }
  }

  /// Runs a claim behind the hot-seat guard (when configured).
  func guarded(_ seats: [Int64], _ claim: () async throws -> ClaimResult) async throws -> ClaimResult {
    guard let hotSeats else {
      metrics.claimAttempts.increment()
      return try await claim()
    }
    let owner = UUID().uuidString
    let taken = await hotSeats.acquire(seats, owner: owner)
    guard taken.isEmpty else {
      metrics.guardRejections.increment()
      return .unavailable(taken)
    }
    metrics.claimAttempts.increment()
    do {
      let result = try await claim()
      // Held: the guard keys run out by themselves. Unavailable: the seats that were free
      // are given back; the taken ones stay guarded, sparing the database the next clicks.
      if case .unavailable(let unavailable) = result {
        await hotSeats.release(seats.filter { !unavailable.contains($0) }, owner: owner)
      }
      return result
    } catch {
      await hotSeats.release(seats, owner: owner)
      throw error
    }
  }

  func runCheckout(_ request: Request, _ context: BasicRequestContext) async throws -> Response {
    var response = try await runCheckout(hold: try Self.uuid(context, "id"), visitor: try visitor(request), request)
    // The visit is over: the gateway gives the slot to the next in line.
    if response.status == .created { response.headers[.foyerRelease] = "done" }
    return response
  }

  /// A checkout of `hold` for `visitor`; a `201` carries the buyer's credential (the pass is
  /// given back with it, or was never needed: a waitlist offer).
  func runCheckout(hold: UUID, visitor: String, _ request: Request) async throws -> Response {
    guard let key = request.headers[.idempotencyKey] else {
      throw APIError(.badRequest, "missing_idempotency_key", "checkout needs an Idempotency-Key header")
    }
    let body = try await Self.body(request, maxBytes: configuration.maxBodyBytes)
    let answer = try await checkout.checkout(hold: hold, visitor: visitor, idempotencyKey: key, body: body)
    var headers = HTTPFields()
    headers[.contentType] = "application/json"
    headers[.cacheControl] = "no-store"
    if answer.releasesSlot { giveBuyerAccess(visitor, &headers) }
    return Response(
      status: answer.status, headers: headers, body: .init(byteBuffer: ByteBuffer(string: answer.body)))
  }

  struct Scan: Decodable {
    var code: String
    var gate: String
    /// The event this gate admits to; a ticket for another is refused.
    var eventId: UUID?
  }

  /// `POST /checkin`: the signature first (a forged code costs no query), then the one
  /// conditional update that lets exactly one scan in.
  func checkIn(_ request: Request) async throws -> Response {
    try Self.bearer(request, configuration.staffToken)
    let scan = try await Self.decode(Scan.self, request, maxBytes: 4_096)
    guard (1...64).contains(scan.gate.count), !scan.gate.unicodeScalars.contains(where: { $0.properties.generalCategory == .control })
    else {
      throw APIError(.badRequest, "invalid_gate", "gate must be 1-64 characters, no control characters")
    }
    guard let code = checkout.tickets.verify(scan.code.trimmingCharacters(in: .whitespacesAndNewlines)) else {
      metrics.checkIns(outcome: "invalid").increment()
      throw APIError(.badRequest, "invalid_ticket", "not a ticket of ours: forged, damaged or mistyped")
    }
    let outcome = try await inventory.checkIn(ticket: code.ticket, seat: code.seat, gate: scan.gate, event: scan.eventId)
    func seat(_ t: ScannedTicket) -> String { "\(t.section), row \(t.row), seat \(t.number)" }
    switch outcome {
    case .admitted(let ticket):
      metrics.checkIns(outcome: "admitted").increment()
      return try Self.json(CheckedIn(ticket: ticket, gate: scan.gate))
    case .alreadyUsed(let ticket, let at, let gate):
      metrics.checkIns(outcome: "already_used").increment()
      let when = at.formatted(Date.ISO8601FormatStyle(includingFractionalSeconds: true))
      throw APIError(
        .conflict, "already_used", "already used at gate \(gate) at \(when)",
        details: ["checkedInAt": when, "gate": gate, "seat": seat(ticket), "event": ticket.event])
    case .revoked(let ticket):
      metrics.checkIns(outcome: "revoked").increment()
      throw APIError(
        .gone, "revoked", "this ticket's order was cancelled", details: ["seat": seat(ticket), "event": ticket.event])
    case .wrongEvent(let ticket):
      metrics.checkIns(outcome: "wrong_event").increment()
      throw APIError(
        .conflict, "wrong_event", "this ticket is for \(ticket.event)",
        details: ["seat": seat(ticket), "event": ticket.event])
    case .unknown:
      metrics.checkIns(outcome: "unknown").increment()
      throw APIError(.notFound, "unknown_ticket", "a genuine code, but no ticket of this box office")
    }
  }

  struct CheckedIn: Encodable {
    var result = "admitted"
    var ticket: ScannedTicket
    var gate: String
  }

  // MARK: Identity

  /// The visitor making the request, or `401`.
  func visitor(_ request: Request) throws -> String {
    switch configuration.identity {
    case .gateway:
      guard let visitor = request.headers[.foyerVisitor], VisitorID(visitor) != nil else {
        throw APIError(.unauthorized, "no_visitor", "this API is only reachable through the Foyer gateway")
      }
      return visitor
    case .pass:
      let room = configuration.room
      let presented =
        request.headers[.foyerPass] ?? request.cookies["foyer_p_\(room)"]?.value
      guard let presented else {
        throw APIError(
          .unauthorized, "no_pass", "a valid Foyer pass is required: wait your turn in the queue")
      }
      let now = Int64(Date().timeIntervalSince1970)
      let verification = signers.with { $0.verify(presented, kind: .pass, room: room, now: now) }
      guard case .valid(let visitor, _) = verification else {
        let reason = if case .rejected(let reason) = verification { reason.rawValue } else { "invalid" }
        throw APIError(.unauthorized, "invalid_pass", "the Foyer pass is not valid (\(reason))")
      }
      return visitor.description
    }
  }

  /// The buyer asking about what they bought (orders, tickets, the waitlist: paths outside
  /// the room): their buyer credential, or else a pass as for shopping.
  func buyer(_ request: Request) throws -> String {
    guard let token = request.headers[.boxOfficeBuyer] ?? request.cookies[BuyerAccess.cookieName]?.value else {
      do {
        return try visitor(request)
      } catch let error as APIError where error.code == "no_pass" || error.code == "no_visitor" {
        throw APIError(
          .unauthorized, "no_buyer",
          "show your buyer credential (the \(BuyerAccess.cookieName) cookie or BoxOffice-Buyer header a checkout gives) or a valid pass"
        )
      }
    }
    let now = Int64(Date().timeIntervalSince1970)
    guard let visitor = signers.with({ BuyerAccess.visitor(of: token, now: now, signer: $0) }) else {
      throw APIError(
        .unauthorized, "invalid_buyer_credential", "the buyer credential is not valid (forged or expired)")
    }
    return visitor
  }

  /// Adds a fresh buyer credential for `visitor` to an answer: as a cookie for the browser and
  /// a header for apps.
  func giveBuyerAccess(_ visitor: String, _ headers: inout HTTPFields) {
    let now = Int64(Date().timeIntervalSince1970)
    let token = signers.with { configuration.buyers.token(visitor: visitor, now: now, signer: $0) }
    headers.append(HTTPField(name: .setCookie, value: configuration.buyers.cookie(token)))
    headers[.boxOfficeBuyer] = token
  }

  func admin(_ request: Request) throws { try Self.bearer(request, adminToken) }

  /// The request carries `Authorization: Bearer <token>` (compared in constant time); `nil`
  /// turns the endpoint off.
  static func bearer(_ request: Request, _ token: String?) throws {
    guard let token, let header = request.headers[.authorization], header.hasPrefix("Bearer "),
      constantTimeEquals(Array(header.utf8.dropFirst(7)), Array(token.utf8))
    else {
      throw APIError(
        .unauthorized, "unauthorized", "a valid bearer token is required",
        headers: [.wwwAuthenticate: "Bearer"])
    }
  }

  // MARK: Helpers

  static func uuid(_ context: BasicRequestContext, _ name: String) throws -> UUID {
    guard let text = context.parameters.get(name), let id = UUID(uuidString: text) else {
      throw APIError(.badRequest, "invalid_id", "\(name) must be a UUID")
    }
    return id
  }

  static func date(_ text: String, _ name: String) throws -> Date {
    if let date = try? Date(String(text), strategy: .iso8601) { return date }
    if let day = try? Date(String(text) + "T00:00:00Z", strategy: .iso8601) { return day }
    throw APIError(.badRequest, "invalid_\(name)", "\(name) must be an ISO 8601 date or date-time")
  }

  static func body(_ request: Request, maxBytes: Int) async throws -> [UInt8] {
    do {
      let buffer = try await request.body.collect(upTo: maxBytes)
      return Array(buffer.readableBytesView)
    } catch is NIOTooManyBytesError {
      throw APIError(.contentTooLarge, "body_too_large", "the body is over \(maxBytes) bytes")
    }
  }

  static func decode<T: Decodable>(_ type: T.Type, _ request: Request, maxBytes: Int) async throws -> T {
    let bytes = try await body(request, maxBytes: maxBytes)
    let decoder = JSONDecoder()
    decoder.dateDecodingStrategy = .iso8601
    do {
      return try decoder.decode(T.self, from: Data(bytes))
    } catch let DecodingError.dataCorrupted(context) where context.codingPath.isEmpty {
      throw APIError(.badRequest, "invalid_json", "the body is not valid JSON")
    } catch let error as DecodingError {
      throw APIError(.badRequest, "invalid_body", Self.describe(error))
    }
  }

  static func describe(_ error: DecodingError) -> String {
    func path(_ context: DecodingError.Context) -> String {
      let keys = context.codingPath.map { $0.intValue.map { "[\($0)]" } ?? $0.stringValue }
      return keys.isEmpty ? "the body" : keys.joined(separator: ".")
    }
    switch error {
    case .typeMismatch(let type, let context): return "\(path(context)) must be \(type)"
    case .valueNotFound(_, let context): return "\(path(context)) is missing"
    case .keyNotFound(let key, let context):
      return "\(path(context) == "the body" ? "" : path(context) + ".")\(key.stringValue) is required"
    case .dataCorrupted(let context): return "\(path(context)) is not valid: \(context.debugDescription)"
    @unknown default: return "the body is not valid"
    }
  }

  static func json(_ value: some Encodable, status: HTTPResponse.Status = .ok) throws -> Response {
    let encoder = JSONEncoder.api
    var headers = HTTPFields()
    headers[.contentType] = "application/json"
    return Response(
      status: status, headers: headers, body: .init(byteBuffer: ByteBuffer(bytes: try encoder.encode(value))))
  }

  /// A browser navigating (it asks for HTML) gets the shop page; apps get JSON.
  static func wantsPage(_ request: Request) -> Bool {
    request.headers[.accept]?.contains("text/html") ?? false
  }

  static func page(_ html: String) -> Response {
    var headers = HTTPFields()
    headers[.contentType] = "text/html; charset=utf-8"
    headers[.cacheControl] = "no-store"
    headers[.contentSecurityPolicy] =
      "default-src 'none'; script-src 'unsafe-inline'; style-src 'unsafe-inline'; connect-src 'self'; img-src 'self'; frame-ancestors 'none'"
    return Response(status: .ok, headers: headers, body: .init(byteBuffer: ByteBuffer(string: html)))
  }

  /// The value as JSON, or `404` naming `what` (someone else's counts as not found).
  static func json(_ value: (some Encodable)?, orNotFound what: String) throws -> Response {
    guard let value else { throw APIError.notFound(what) }
    return try json(value)
  }

  static func text(_ text: String) -> Response {
    Response(
      status: .ok, headers: [.contentType: "text/plain"], body: .init(byteBuffer: ByteBuffer(string: text)))
  }
}

/// BoxOffice's routes: the router is built from this table, a known path asked with another
/// method is answered `405` from it, and the OpenAPI test checks it against
/// `boxoffice.openapi.json`.
enum BoxOfficeRoute: Sendable, CaseIterable {
  case healthz, readyz, openAPI, events, event, seats, createHold, hold, releaseHold, checkout, orders, order
  case createEvent, metrics, ticketKeys, ticketQR, cancelOrder, checkIn, checkInPage
  case joinWaitlist, waitlist, waitlistEntry, leaveWaitlist, claimOffer

  var route: Route {
    switch self {
    case .healthz: Route("GET", "/healthz")
    case .readyz: Route("GET", "/readyz")
    case .openAPI: Route("GET", "/openapi.json")
    case .events: Route("GET", "/events")
    case .event: Route("GET", "/events/{id}")
    case .seats: Route("GET", "/events/{id}/seats")
    case .createHold: Route("POST", "/events/{id}/holds")
    case .hold: Route("GET", "/holds/{id}")
    case .releaseHold: Route("DELETE", "/holds/{id}")
    case .checkout: Route("POST", "/holds/{id}/checkout")
    case .orders: Route("GET", "/orders")
    case .order: Route("GET", "/orders/{id}")
    case .createEvent: Route("POST", "/admin/events")
    case .metrics: Route("GET", "/metrics")
    case .ticketKeys: Route("GET", "/tickets/keys")
    case .ticketQR: Route("GET", "/orders/{id}/tickets/{ticket}/qr.svg")
    case .cancelOrder: Route("POST", "/orders/{id}/cancel")
    case .checkIn: Route("POST", "/checkin")
    case .checkInPage: Route("GET", "/checkin")
    case .joinWaitlist: Route("POST", "/events/{id}/waitlist")
    case .waitlist: Route("GET", "/waitlist")
    case .waitlistEntry: Route("GET", "/waitlist/{id}")
    case .leaveWaitlist: Route("DELETE", "/waitlist/{id}")
    case .claimOffer: Route("POST", "/waitlist/{id}/checkout")
    }
  }

  static let table = RouteTable(allCases.map { ($0.route, $0) }, headFromGet: false)
}

extension HTTPField.Name {
  static let idempotencyKey = Self("Idempotency-Key")!
  static let foyerPass = Self("Foyer-Pass")!
  static let foyerVisitor = Self("Foyer-Visitor")!
  static let foyerRelease = Self("Foyer-Release")!
  static let boxOfficeBuyer = Self("BoxOffice-Buyer")!
}

extension JSONEncoder {
  /// Sorted keys; dates as ISO 8601 with milliseconds (hold expiries are sub-second).
  static var api: JSONEncoder {
    let encoder = JSONEncoder()
    encoder.outputFormatting = [.sortedKeys]
    encoder.dateEncodingStrategy = .custom { date, encoder in
      var container = encoder.singleValueContainer()
      try container.encode(
        date.formatted(Date.ISO8601FormatStyle(includingFractionalSeconds: true)))
    }
    return encoder
  }
}

/// Maps every error to a JSON answer: `APIError` as it is, Hummingbird's own (unknown route,
/// wrong method) by status, anything else to a logged `500` without internals. Also times
/// every request.
struct ErrorMiddleware<Context: RequestContext>: RouterMiddleware {
  let logger: Logger
  let metrics: BoxOfficeMetrics

  func handle(
    _ request: Request, context: Context, next: (Request, Context) async throws -> Response
  ) async throws -> Response {
    let started = ContinuousClock.now
    defer { metrics.requestDuration.record(ContinuousClock.now - started) }
    do {
      return try await next(request, context)
    } catch let error as APIError {
      throw error
    } catch let error as HTTPError where error.status == .notFound {
      // The router found no handler: a known path asked with another method is a 405.
      if case .methodNotAllowed(let allow) = BoxOfficeRoute.table.match(
        method: request.method.rawValue, path: Substring(request.uri.path))
      {
        throw APIError(
          .methodNotAllowed, "method_not_allowed", "use \(allow) here", headers: [.allow: allow])
      }
      throw APIError(.notFound, "not_found", "no such endpoint")
    } catch let error as HTTPError {
      let code: String =
        switch error.status {
        case .notFound: "not_found"
        case .methodNotAllowed: "method_not_allowed"
        case .contentTooLarge: "body_too_large"
        default: "bad_request"
        }
      throw APIError(error.status, code, error.body ?? error.status.reasonPhrase.lowercased())
    } catch let error as PSQLError where error.code != .server {
      // The database is unreachable or the connection broke: nothing was decided; retry.
      logger.warning(
        "database unavailable", metadata: ["path": "\(request.uri.path)", "error": "\(error.code)"])
      throw APIError(
        .serviceUnavailable, "unavailable", "the booking database is briefly unavailable; please retry",
        headers: [.retryAfter: "2"])
    } catch {
      // PSQLError hides its details from `description`; the log needs them.
      logger.error(
        "request failed",
        metadata: [
          "method": "\(request.method)", "path": "\(request.uri.path)",
          "error": "\(String(reflecting: error))",
        ])
      throw APIError(.internalServerError, "internal_error", "something went wrong on our side; please retry")
    }
  }
}

/// Token signers for pass checks: OpenSSL contexts are not thread-safe, so each request
/// borrows one (handlers run on many threads).
final class SignerPool: Sendable {
  private let keyRing: KeyRing
  private let idle = NIOLockedValueBox<[UncheckedSigner]>([])

  struct UncheckedSigner: @unchecked Sendable {
    let signer: TokenSigner
  }

  init(keyRing: KeyRing) {
    self.keyRing = keyRing
  }

  func with<T>(_ body: (TokenSigner) -> T) -> T {
    let borrowed =
      idle.withLockedValue { $0.popLast() } ?? UncheckedSigner(signer: try! TokenSigner(keyRing: keyRing))
    defer { idle.withLockedValue { if $0.count < 64 { $0.append(borrowed) } } }
    return body(borrowed.signer)
  }
}
