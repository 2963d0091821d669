public import BoxOffice
public import Foundation
public import FoyerCore
internal import FoyerGateway
internal import Logging
public import NIOCore
internal import NIOPosix
public import RedisNIO
internal import ServiceLifecycle
public import WaitingRoom

/// A whole on-sale in this process, as operators run it: BoxOffice on a fresh database with
/// one event (checking passes for the room itself), and the gateway in front of it with its
/// admin API and admission loop, on a Redis of its own — the admission loop ticks every room
/// it finds, and must not admit other tests' visitors from the shared server.
public final class OnSaleStack: @unchecked Sendable {
  public let room: String
  public let event: Event
  public let boxOffice: BoxOfficeServer
  public let databaseURL: String
  public let store: RoomStore
  /// The gateway's public and admin base URLs.
  public let base: String
  public let adminBase: String
  public let adminToken: String
  private let services: ServiceGroup
  private let boxOfficeTask: Task<Void, any Error>
  private let admission: Task<Void, Never>
  private let gateway: any Channel
  private let admin: any Channel
  private let redis: RedisClient
  private let redisServer: RedisServer

  public static func start(
    room: String, keyRing: KeyRing, adminToken: String, sections: [EventSpec.Section],
    holdDuration: Duration = .seconds(600), databaseConnections: Int = 5, settings: RoomSettings
  ) async throws -> OnSaleStack {
    let logger = Logger(label: "on-sale")
    let databaseURL = try await PostgresDatabase.create()
    var configuration = BoxOfficeConfiguration(
      host: "127.0.0.1", port: 0, databaseURL: databaseURL, databaseConnections: databaseConnections,
      holdDuration: holdDuration, keyRing: keyRing)
    configuration.room = room
    let boxOffice = try BoxOfficeServer(configuration: configuration, adminToken: nil, logger: logger)
    let (ports, continuation) = AsyncStream<Int>.makeStream()
    let services = ServiceGroup(
      configuration: .init(
        services: boxOffice.services { continuation.yield($0.localAddress?.port ?? 0) }, logger: logger))
    let boxOfficeTask = Task { try await services.run() }
    var iterator = ports.makeAsyncIterator()
    guard let boxOfficePort = await iterator.next() else { throw TestServiceError("BoxOffice did not start") }
    try await boxOffice.migrate()
    let event = try await boxOffice.inventory.createEvent(
      EventSpec(
        name: "Test Night", category: "concert", city: "Lisbon", venue: "Test Hall",
        startsAt: Date().addingTimeInterval(86_400), onSaleAt: Date(), sections: sections))

    let group = MultiThreadedEventLoopGroup.singleton
    let redisServer = try await RedisServer.start()
    let redis = RedisClient(configuration: redisServer.configuration, eventLoopGroup: group)
    let store = RoomStore(redis: redis)
    try await store.createRoom(room, settings: settings)
    var gatewayConfiguration = GatewayConfiguration(
      host: "127.0.0.1", port: 0, keyRing: keyRing,
      rooms: ["/events", "/holds", "/orders"].map { RoomRoute(id: room, pathPrefix: $0) },
      upstream: UpstreamConfiguration(host: "127.0.0.1", port: boxOfficePort))
    gatewayConfiguration.drainTimeout = .seconds(1)
    let gateway = try await GatewayServer(
      configuration: gatewayConfiguration, store: store, eventLoopGroup: group
    )
    .start()
    let admin = try await AdminServer(
      configuration: AdminConfiguration(host: "127.0.0.1", port: 0, token: adminToken), store: store,
      eventLoopGroup: group
    ).start()
    let admission = Task { _ = try? await AdmissionLoop(store: store).run() }
    return OnSaleStack(
      room: room, event: event, boxOffice: boxOffice, databaseURL: databaseURL, store: store,
      base: "http://127.0.0.1:\(gateway.localAddress!.port!)",
      adminBase: "http://127.0.0.1:\(admin.localAddress!.port!)", adminToken: adminToken, services: services,
      boxOfficeTask: boxOfficeTask, admission: admission, gateway: gateway, admin: admin, redis: redis,
      redisServer: redisServer)
  }

  private init(
    room: String, event: Event, boxOffice: BoxOfficeServer, databaseURL: String, store: RoomStore,
    base: String,
    adminBase: String, adminToken: String, services: ServiceGroup, boxOfficeTask: Task<Void, any Error>,
    admission: Task<Void, Never>, gateway: any Channel, admin: any Channel, redis: RedisClient,
    redisServer: RedisServer
  ) {
    self.room = room
    self.event = event
    self.boxOffice = boxOffice
    self.databaseURL = databaseURL
    self.store = store
    self.base = base
    self.adminBase = adminBase
    self.adminToken = adminToken
    self.services = services
    self.boxOfficeTask = boxOfficeTask
    self.admission = admission
    self.gateway = gateway
    self.admin = admin
    self.redis = redis
    self.redisServer = redisServer
  }

  /// Stops everything: the admission loop and listeners at once, then BoxOffice and Redis.
  public func stop() async {
    admission.cancel()
    gateway.close(promise: nil)
    admin.close(promise: nil)
    await services.triggerGracefulShutdown()
    _ = try? await boxOfficeTask.value
    await redis.close()
    await redisServer.stop()
  }
}
