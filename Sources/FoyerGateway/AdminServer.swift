import Foundation
internal import FoyerCore
public import Logging
public import NIOCore
public import NIOExtras
internal import NIOHTTP1
internal import NIOPosix
internal import Prometheus
public import RedisNIO
internal import ServiceLifecycle
public import WaitingRoom

/// The operators' listener (DESIGN §5): loopback by default, every request needs
/// `Authorization: Bearer <admin token>`, compared in constant time.
public struct AdminConfiguration: Sendable, CustomStringConvertible {
  /// Listen address; loopback unless an operator decides otherwise.
  public var host: String
  public var port: Int
  /// The bearer token. From the environment only; never printed.
  public var token: String
  /// Largest request body accepted (413 beyond).
  public var maxBodyBytes: Int
  /// On shutdown, how long in-flight admin requests get to finish.
  public var drainTimeout: TimeAmount

  public init(
    host: String = "127.0.0.1", port: Int = 8081, token: String, maxBodyBytes: Int = 65_536,
    drainTimeout: TimeAmount = .seconds(5)
  ) {
    self.drainTimeout = drainTimeout
    self.host = host
    self.port = port
    self.token = token
    self.maxBodyBytes = maxBodyBytes
  }

  public var description: String { "AdminConfiguration(\(host):\(port), token: <redacted>)" }
}

/// The admin API as a service: `GET /rooms`, `GET /rooms/{id}`, `PATCH /rooms/{id}`,
/// `POST /rooms`, `GET /metrics`. Changes go to Redis, so they govern every gateway's next
/// tick.
public final class AdminServer: ListenerService, Sendable {
  public let configuration: AdminConfiguration
  public let eventLoopGroup: any EventLoopGroup
  public let quiescing: ServerQuiescingHelper
  public var drainTimeout: TimeAmount { configuration.drainTimeout }
  private let store: RoomStore
  private let metrics: GatewayMetrics?
  private let trafficRules: TrafficRuleBook?
  private let logger: Logger

  /// `metrics` is what `GET /metrics` renders (the gateway's, in `foyer gateway`); without
  /// it the endpoint answers 404.
  public init(
    configuration: AdminConfiguration, store: RoomStore, eventLoopGroup: any EventLoopGroup,
    metrics: GatewayMetrics? = nil, trafficRules: TrafficRuleBook? = nil, logger: Logger = .disabled
  ) {
    self.configuration = configuration
    self.store = store
    self.eventLoopGroup = eventLoopGroup
    self.quiescing = ServerQuiescingHelper(group: eventLoopGroup)
    self.metrics = metrics
    self.trafficRules = trafficRules
    self.logger = logger
  }

  public func start() async throws -> any Channel {
    let configuration = self.configuration
    let store = self.store
    let metrics = self.metrics
    let trafficRules = self.trafficRules
    let quiescing = self.quiescing
    let channel = try await ServerBootstrap(group: eventLoopGroup)
      .serverChannelInitializer { channel in
        channel.eventLoop.makeCompletedFuture {
          try channel.pipeline.syncOperations.addHandler(quiescing.makeServerChannelHandler(channel: channel))
        }
      }
      .serverChannelOption(ChannelOptions.socketOption(.so_reuseaddr), value: 1)
      .childChannelInitializer { channel in
        channel.eventLoop.makeCompletedFuture {
          try channel.pipeline.syncOperations.configureHTTPServerPipeline(withErrorHandling: true)
          try channel.pipeline.syncOperations.addHandler(
            AdminHandler(configuration: configuration, store: store, metrics: metrics, trafficRules: trafficRules))
        }
      }
      .bind(host: configuration.host, port: configuration.port).get()
    logger.info(
      "admin API listening", metadata: ["address": "\(channel.localAddress.map { "\($0)" } ?? "?")"])
    return channel
  }

}

/// One admin connection: collects the (bounded) body, checks the token, runs the operation.
final class AdminHandler: ChannelInboundHandler {
  typealias InboundIn = HTTPServerRequestPart
  typealias OutboundOut = HTTPServerResponsePart

  private let configuration: AdminConfiguration
  private let store: RoomStore
  private let metrics: GatewayMetrics?
  private let trafficRules: TrafficRuleBook?
  private var head: HTTPRequestHead?
  private var body: ByteBuffer?
  private var tooLarge = false

  init(configuration: AdminConfiguration, store: RoomStore, metrics: GatewayMetrics?, trafficRules: TrafficRuleBook?) {
    self.trafficRules = trafficRules
    self.configuration = configuration
    self.store = store
    self.metrics = metrics
  }

  func channelRead(context: ChannelHandlerContext, data: NIOAny) {
    switch unwrapInboundIn(data) {
    case .head(let head):
      self.head = head
      body = nil
      tooLarge = false
    case .body(var chunk):
      guard !tooLarge else { return }
      if (body?.readableBytes ?? 0) + chunk.readableBytes > configuration.maxBodyBytes {
        tooLarge = true
        body = nil
      } else if body == nil {
        body = chunk
      } else {
        body!.writeBuffer(&chunk)
      }
    case .end:
      guard let head else { return }
      self.head = nil
      handle(head, body: body.map { Data($0.readableBytesView) } ?? Data(), context: context)
    }
  }

  private func handle(_ head: HTTPRequestHead, body: Data, context: ChannelHandlerContext) {
    let path = head.uri.split(separator: "?", maxSplits: 1, omittingEmptySubsequences: false).first ?? ""
    let route: AdminRoute
    let parameters: [String]
    switch AdminRoute.table.match(method: head.method.rawValue, path: path) {
    case .route(let matched, let values) where matched != .metrics || metrics != nil:
      route = matched
      parameters = values.map(String.init)
    case .methodNotAllowed(let allow):
      // The routes are published (`/openapi.json`), so a 405 tells a caller without a token
      // nothing new; an unknown path still asks for the token first.
      return respond(
        context, head, .methodNotAllowed,
        ["error": "method_not_allowed", "message": "\(head.method) is not allowed here"],
        extraHeaders: ["allow": allow])
    default:
      guard authorized(head) else { return unauthorized(context, head) }
      return respond(context, head, .notFound, ["error": "not_found", "message": "no such endpoint"])
    }
    switch route {
    // The dashboard page holds no data (it asks for the token and sends it with every call),
    // and the API's description is no secret: a browser or a tool reads both without one.
    case .dashboard: return servePage(Dashboard.html, head: head, context: context)
    case .openAPI:
      return LocalResponse.write(
        context, to: head, status: .ok, contentType: "application/json",
        body: context.channel.allocator.buffer(bytes: OpenAPIDocuments.admin))
    default: break
    }
    guard authorized(head) else { return unauthorized(context, head) }
    if tooLarge {
      return respond(
        context, head, .payloadTooLarge,
        ["error": "too_large", "message": "the body is over \(configuration.maxBodyBytes) bytes"])
    }
    let store = self.store
    let operation: @Sendable () async throws -> (HTTPResponseStatus, Data)
    switch route {
    case .dashboard, .openAPI:
      preconditionFailure("answered above")
    case .metrics:
      return scrape(metrics!, head: head, context: context)
    case .listRooms:
      operation = {
        var rooms: [Any] = []
        for room in try await store.rooms() {
          // A room deleted between the listing and its description is simply gone.
          do { rooms.append(try await Self.describe(room, store)) } catch let error as RoomStoreError
            where error.code == .noSuchRoom
          {}
        }
        return (.ok, Self.json(["rooms": rooms]))
      }
    case .describeRoom:
      let room = parameters[0]
      operation = { (.ok, Self.json(try await Self.describe(room, store))) }
    case .updateRoom:
      let room = parameters[0]
      guard let values = Self.fields(body) else {
        return respond(
          context, head, .badRequest,
          ["error": "invalid_json", "message": "the body must be a JSON object of settings"])
      }
      let changes = SettingValue.changes(values)
      operation = {
        try await store.update(room, changes: try changes.get())
        return (.ok, Self.json(try await Self.describe(room, store)))
      }
    case .createRoom:
      guard let request = try? JSONDecoder().decode(NewRoom.self, from: body) else {
        return respond(
          context, head, .badRequest,
          [
            "error": "invalid_json",
            "message": "the body must be {\"id\": …, \"settings\": {…}}, settings integers or strings",
          ])
      }
      let id = request.id
      let changes = SettingValue.changes(request.settings ?? [:])
      operation = {
        var settings = RoomSettings()
        for (field, value) in try changes.get().sorted(by: { $0.key < $1.key }) {
          do { try settings.set(field, to: value) } catch {
            throw RoomStoreError(.invalidSettings, "\(error)")
          }
        }
        try await store.createRoom(id, settings: settings)
        return (.created, Self.json(try await Self.describe(id, store)))
      }
    case .releaseVisitor:
      // Takes a visitor's slot back (or place in line): the pass is refused by every gateway
      // within the revocation refresh (RevocationRefresher).
      let room = parameters[0]
      guard let visitor = VisitorID(parameters[1]) else {
        return respond(
          context, head, .badRequest,
          ["error": "invalid_visitor", "message": "the visitor id must be 22 base64url characters"])
      }
      operation = {
        guard try await store.rooms().contains(room) else {
          return (.notFound, Self.json(["error": "noSuchRoom", "message": "no room '\(room)'"]))
        }
        let result = try await store.release(room: room, visitor: visitor, reason: .operator)
        return (.ok, Self.json(["room": room, "visitor": visitor.description, "result": result.rawValue]))
      }
    case .rules:
      let room = parameters[0]
      let book = trafficRules
      operation = { (.ok, try await Self.rules(room, store, book)) }
    case .setRules:
      let room = parameters[0]
      guard let request = try? JSONDecoder().decode(RulesChange.self, from: body) else {
        return respond(
          context, head, .badRequest,
          ["error": "invalid_json", "message": "the body must be {\"rules\": [{\"action\": \"allow\"|\"block\", \"cidr\"?, \"user_agent\"?, \"note\"?}]}"])
      }
      if let problem = request.problem {
        return respond(context, head, .badRequest, ["error": "invalid_rules", "message": problem])
      }
      let book = trafficRules
      operation = {
        try await store.setTrafficRules(room: room, json: TrafficRuleBook.encode(request.rules))
        // This gateway applies them at once; the others within their refresh.
        book?.install(room: room, request.rules)
        return (.ok, try await Self.rules(room, store, book))
      }
    }
    let loop = context.eventLoop
    loop.makeFutureWithTask { try await operation() }.assumeIsolated().whenComplete { result in
      switch result {
      case .success(let (status, data)):
        self.respond(context, head, status, data)
      case .failure(let error as RoomStoreError):
        let status: HTTPResponseStatus =
          switch error.code {
          case .noSuchRoom: .notFound
          case .roomExists, .fixedSetting: .conflict
          case .invalidSettings, .invalidRoomID: .badRequest
          default: .internalServerError
          }
        self.respond(context, head, status, ["error": "\(error.code)", "message": error.message])
      case .failure(let error):
        self.respond(
          context, head, .serviceUnavailable, ["error": "unavailable", "message": "Redis: \(error)"])
      }
    }
  }

  /// Prometheus text: the room numbers are read from Redis first; if Redis is unreachable
  /// the scrape still succeeds with the process's own series and `foyer_redis_up 0`.
  private func scrape(_ metrics: GatewayMetrics, head: HTTPRequestHead, context: ChannelHandlerContext) {
    let store = self.store
    let redisUp = metrics.registry.makeGauge(
      descriptor: .foyer("foyer_redis_up", "1 if the last scrape could read the rooms from Redis."))
    context.eventLoop.makeFutureWithTask {
      do {
        for room in try await store.rooms() {
          if let stats = try? await store.stats(room) { metrics.record(room: room, stats: stats) }
          if let settings = try? await store.settings(room) { metrics.record(room: room, settings: settings) }
        }
        redisUp.set(Int64(1))
      } catch {
        redisUp.set(Int64(0))
      }
      return metrics.registry.emitToBuffer()
    }.assumeIsolated().whenSuccess { (bytes: [UInt8]) in
      var body = context.channel.allocator.buffer(capacity: bytes.count)
      body.writeBytes(bytes)
      LocalResponse.write(
        context, to: head, status: .ok, contentType: "text/plain; version=0.0.4; charset=utf-8", body: body)
    }
  }

  private func servePage(_ html: String, head: HTTPRequestHead, context: ChannelHandlerContext) {
    // Everything the page needs is inline; nothing may load from elsewhere or frame it.
    let policy: HTTPHeaders = [
      "content-security-policy":
        "default-src 'none'; script-src 'unsafe-inline'; style-src 'unsafe-inline'; connect-src 'self'; "
        + "frame-ancestors 'none'"
    ]
    LocalResponse.write(
      context, to: head, status: .ok, contentType: "text/html; charset=utf-8",
      body: context.channel.allocator.buffer(string: html), extraHeaders: policy)
  }

  private func authorized(_ head: HTTPRequestHead) -> Bool {
    guard let header = head.headers.first(name: "authorization"), header.hasPrefix("Bearer ") else {
      return false
    }
    return constantTimeEquals(Array(header.utf8.dropFirst(7)), Array(configuration.token.utf8))
  }

  /// Settings as `{field: value}` with stored names, numbers as numbers.
  private static func describe(_ room: String, _ store: RoomStore) async throws -> [String: Any] {
    let settings = try await store.settings(room)
    let stats = try await store.stats(room)
    var fields: [String: Any] = [:]
    for (name, value) in settings.fields { fields[name] = Int(value) ?? value }
    return [
      "id": room, "settings": fields,
      "live": [
        "waiting": stats.waiting, "active": stats.active, "claimed_active": stats.claimedActive,
        "joined": stats.joined, "admitted": stats.admitted, "admitted_last_minute": stats.admittedLastMinute,
        "claimed": stats.claimed, "no_shows": stats.noShows, "released": stats.released,
        "expired": stats.expired,
        "abandoned": stats.abandoned, "left": stats.left,
      ],
    ]
  }

  /// A room's rules as stored, each with this gateway's hit count, as the API's JSON.
  private static func rules(_ room: String, _ store: RoomStore, _ book: TrafficRuleBook?) async throws -> Data {
    struct Shown: Encodable {
      var room: String
      var rules: [ShownTrafficRule]
    }
    guard try await store.rooms().contains(room) else { throw RoomStoreError(.noSuchRoom, "no room '\(room)'") }
    let rules = TrafficRuleBook.decode(try await store.trafficRules(room: room).get()) ?? []
    let live = book?.rules(room: room)
    let hits = live?.rules == rules ? live?.hitCounts ?? [] : []
    let shown = rules.enumerated().map { ShownTrafficRule(rule: $1, hits: $0 < hits.count ? hits[$0] : 0) }
    let encoder = JSONEncoder()
    encoder.outputFormatting = [.sortedKeys, .withoutEscapingSlashes]
    return try encoder.encode(Shown(room: room, rules: shown))
  }

  private static func fields(_ body: Data) -> [String: SettingValue]? {
    try? JSONDecoder().decode([String: SettingValue].self, from: body)
  }

  private static func json(_ value: Any) -> Data {
    (try? JSONSerialization.data(withJSONObject: value, options: [.sortedKeys])) ?? Data("{}".utf8)
  }

  private func unauthorized(_ context: ChannelHandlerContext, _ request: HTTPRequestHead) {
    respond(
      context, request, .unauthorized, ["error": "unauthorized", "message": "a valid bearer token is required"],
      extraHeaders: ["www-authenticate": "Bearer"])
  }

  private func respond(
    _ context: ChannelHandlerContext, _ request: HTTPRequestHead, _ status: HTTPResponseStatus,
    _ value: [String: String], extraHeaders: HTTPHeaders = [:]
  ) {
    respond(context, request, status, Self.json(value), extraHeaders: extraHeaders)
  }

  private func respond(
    _ context: ChannelHandlerContext, _ request: HTTPRequestHead, _ status: HTTPResponseStatus, _ data: Data,
    extraHeaders: HTTPHeaders = [:]
  ) {
    var body = context.channel.allocator.buffer(capacity: data.count + 1)
    body.writeBytes(data)
    body.writeString("\n")
    LocalResponse.write(
      context, to: request, status: status, contentType: "application/json", body: body,
      extraHeaders: extraHeaders)
  }
}

/// `POST /rooms`'s body.
struct NewRoom: Decodable {
  var id: String
  var settings: [String: SettingValue]?
}

/// A setting as the API takes it: `state` a JSON string, every other one a JSON integer, kept
/// as its text (a `true`, `1.5` or `"5"` is refused, not read as 1 or 5).
struct SettingValue: Decodable {
  var text: String
  var isInteger: Bool

  init(from decoder: any Decoder) throws {
    let container = try decoder.singleValueContainer()
    if let number = try? container.decode(Int.self) {
      (text, isInteger) = (String(number), true)
    } else {
      (text, isInteger) = (try container.decode(String.self), false)
    }
  }

  /// The stored changes, or why one has the wrong JSON type.
  static func changes(_ values: [String: SettingValue]) -> Result<[String: String], RoomStoreError> {
    for (field, value) in values.sorted(by: { $0.key < $1.key }) where value.isInteger == (field == "state") {
      let kind = field == "state" ? "a string" : "an integer"
      return .failure(RoomStoreError(.invalidSettings, "\(field) must be \(kind)"))
    }
    return .success(values.mapValues(\.text))
  }
}

/// The admin API's routes: the handler dispatches on this table, and the OpenAPI test checks
/// it against `admin.openapi.json`.
enum AdminRoute: Sendable, CaseIterable {
  case dashboard, openAPI, metrics, listRooms, createRoom, describeRoom, updateRoom, releaseVisitor, rules, setRules

  var route: Route {
    switch self {
    case .dashboard: Route("GET", "/")
    case .openAPI: Route("GET", "/openapi.json")
    case .metrics: Route("GET", "/metrics")
    case .listRooms: Route("GET", "/rooms")
    case .createRoom: Route("POST", "/rooms")
    case .describeRoom: Route("GET", "/rooms/{id}")
    case .updateRoom: Route("PATCH", "/rooms/{id}")
    case .releaseVisitor: Route("DELETE", "/rooms/{id}/visitors/{visitor}")
    case .rules: Route("GET", "/rooms/{id}/rules")
    case .setRules: Route("PUT", "/rooms/{id}/rules")
    }
  }

  static let table = RouteTable(allCases.map { ($0.route, $0) }, headFromGet: false)
}

/// `PUT /rooms/{id}/rules`'s body: the room's rules, in the order they are tried.
struct RulesChange: Decodable {
  var rules: [TrafficRule]

  enum CodingKeys: String, CodingKey { case rules }

  init(from decoder: any Decoder) throws {
    try StrictKeys.check(decoder, known: CodingKeys.self)
    rules = try decoder.container(keyedBy: CodingKeys.self).decode([TrafficRule].self, forKey: .rules)
  }

  var problem: String? {
    if rules.count > TrafficRule.maximumRules { return "at most \(TrafficRule.maximumRules) rules" }
    for (index, rule) in rules.enumerated() {
      if let problem = rule.problem { return "rule \(index + 1): \(problem)" }
    }
    return nil
  }
}
