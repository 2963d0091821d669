public import BoxOffice
public import Foundation
public import FoyerCore
public import FoyerGateway
internal import Logging
public import NIOCore
internal import NIOPosix
public import RedisNIO
public import WaitingRoom

/// A whole on-sale in this process, as operators run it: BoxOffice on a fresh database with
/// one event (checking passes for the room itself), and the gateway in front of it with its
/// admin API and admission loop, on a Redis of its own — the admission loop ticks every room
/// it finds, and must not admit other tests' visitors from the shared server. `startsIn`
/// sets the room's on-sale start that many seconds after the stack is up.
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
  /// BoxOffice's own base URL (behind the gateway, for tests that call it directly).
  public var boxOfficeBase: String { "http://127.0.0.1:\(running.port)" }
  private let running: InProcessBoxOffice
  private let admission: Task<Void, Never>
  private let gateway: any Channel
  private let admin: any Channel
  private let redis: RedisClient
  private let redisServer: RedisServer

  public static func start(
    room: String, keyRing: KeyRing, adminToken: String, sections: [EventSpec.Section],
    holdDuration: Duration = .seconds(600), databaseConnections: Int = 5, settings: RoomSettings,
    startsIn seconds: Double? = nil, boxOfficeAdminToken: String? = nil, clients: ClientPolicy = ClientPolicy(),
    staffToken: String? = nil, waitlistOffer: Duration = .seconds(900)
  ) async throws -> OnSaleStack {
    let databaseURL = try await PostgresDatabase.create()
    var configuration = BoxOfficeConfiguration(
      host: "127.0.0.1", port: 0, databaseURL: databaseURL, databaseConnections: databaseConnections,
      holdDuration: holdDuration, keyRing: keyRing)
    configuration.room = room
    configuration.staffToken = staffToken
    configuration.waitlistOfferDuration = waitlistOffer
    let boxOffice = try await InProcessBoxOffice.start(
      configuration, adminToken: boxOfficeAdminToken,
      event: EventSpec(
        name: "Test Night", category: "concert", city: "Lisbon", venue: "Test Hall",
        startsAt: Date().addingTimeInterval(7 * 86_400), onSaleAt: Date(), sections: sections))

    let group = MultiThreadedEventLoopGroup.singleton
    let redisServer = try await RedisServer.start()
    let redis = RedisClient(configuration: redisServer.configuration, eventLoopGroup: group)
    let store = RoomStore(redis: redis)
    var settings = settings
    // The on-sale start counts from here, when everything else is ready.
    if let seconds { settings.startsAtMilliseconds = Int64((Date().timeIntervalSince1970 + seconds) * 1_000) }
    try await store.createRoom(room, settings: settings)
    var gatewayConfiguration = GatewayConfiguration(
      host: "127.0.0.1", port: 0, keyRing: keyRing,
      // Where seats are taken; orders, tickets and check-in stay outside the room.
      rooms: ["/events", "/holds"].map { RoomRoute(id: room, pathPrefix: $0) },
      upstream: UpstreamConfiguration(host: "127.0.0.1", port: boxOffice.port))
    gatewayConfiguration.drainTimeout = .seconds(1)
    gatewayConfiguration.clients = clients
    let server = GatewayServer(configuration: gatewayConfiguration, store: store, eventLoopGroup: group)
    let gateway = try await server.start()
    let admin = try await AdminServer(
      configuration: AdminConfiguration(host: "127.0.0.1", port: 0, token: adminToken), store: store,
      eventLoopGroup: group, metrics: server.metrics, trafficRules: server.trafficRules
    ).start()
    let admission = Task { _ = try? await AdmissionLoop(store: store).run() }
    return OnSaleStack(
      room: room, boxOffice: boxOffice, databaseURL: databaseURL, store: store,
      base: "http://127.0.0.1:\(gateway.localAddress!.port!)",
      adminBase: "http://127.0.0.1:\(admin.localAddress!.port!)", adminToken: adminToken,
      admission: admission, gateway: gateway, admin: admin, redis: redis,
      redisServer: redisServer)
  }

  private init(
    room: String, boxOffice: InProcessBoxOffice, databaseURL: String, store: RoomStore, base: String,
    adminBase: String, adminToken: String, admission: Task<Void, Never>, gateway: any Channel,
    admin: any Channel, redis: RedisClient,
    redisServer: RedisServer
  ) {
    self.room = room
    self.event = boxOffice.event
    self.boxOffice = boxOffice.server
    self.running = boxOffice
    self.databaseURL = databaseURL
    self.store = store
    self.base = base
    self.adminBase = adminBase
    self.adminToken = adminToken
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
    await running.stop()
    await redis.close()
    await redisServer.stop()
  }
}
