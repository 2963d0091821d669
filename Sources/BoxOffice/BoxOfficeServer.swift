public import Foundation
public import Hummingbird
public import Logging
internal import NIOCore
internal import NIOPosix
public import PostgresNIO
public import RedisNIO
public import ServiceLifecycle

/// `postgres://user[:password]@host[:port]/database` → postgres-nio's configuration.
public func postgresConfiguration(url: String, maximumConnections: Int) throws -> PostgresClient.Configuration
{
  guard let components = URLComponents(string: url),
    components.scheme == "postgres" || components.scheme == "postgresql",
    let host = components.host, !host.isEmpty
  else {
    throw APIError(
      .internalServerError, "invalid_database_url", "the database URL must be postgres://user@host:port/db")
  }
  let database = String(components.path.drop(while: { $0 == "/" }))
  var configuration = PostgresClient.Configuration(
    host: host, port: components.port ?? 5432, username: components.user ?? "postgres",
    password: components.password, database: database.isEmpty ? nil : database, tls: .disable)
  configuration.options.maximumConnections = maximumConnections
  return configuration
}

/// BoxOffice assembled: the database client, the expiry worker, the optional hot-seat guard
/// and the HTTP application, each a `Service` for one `ServiceGroup`.
public struct BoxOfficeServer: Sendable {
  public let configuration: BoxOfficeConfiguration
  public let postgres: PostgresClient
  public let inventory: Inventory
  public let expiry: ExpiryWorker
  public let metrics: BoxOfficeMetrics
  public let payments: any PaymentProvider
  public let cancellation: Cancellation
  public let waitlist: Waitlist
  public let redis: RedisClient?
  let api: BoxOfficeAPI
  let logger: Logger

  public init(
    configuration: BoxOfficeConfiguration, adminToken: String?, payments: (any PaymentProvider)? = nil,
    logger: Logger = Logger(label: "boxoffice")
  ) throws {
    self.configuration = configuration
    self.logger = logger
    postgres = PostgresClient(
      configuration: try postgresConfiguration(
        url: configuration.databaseURL, maximumConnections: configuration.databaseConnections),
      backgroundLogger: logger)
    inventory = Inventory(client: postgres, logger: logger)
    metrics = BoxOfficeMetrics()
    let payments = payments ?? SimulatedPaymentProvider(settings: configuration.payments)
    self.payments = payments
    let waitlist = Waitlist(
      inventory: inventory, offerDuration: configuration.waitlistOfferDuration,
      maxSeats: configuration.maxSeatsPerHold, metrics: metrics, logger: logger)
    self.waitlist = waitlist
    cancellation = Cancellation(
      inventory: inventory, payments: payments, metrics: metrics, cutoff: configuration.cancelCutoff,
      waitlist: waitlist, logger: logger)
    expiry = ExpiryWorker(
      inventory: inventory, metrics: metrics, refunds: cancellation, waitlist: waitlist, logger: logger)
    var hotSeats: HotSeatGuard?
    if let url = configuration.redisURL {
      let redis = RedisClient(
        configuration: try RedisConfiguration(url: url),
        eventLoopGroup: MultiThreadedEventLoopGroup.singleton,
        logger: logger)
      self.redis = redis
      hotSeats = HotSeatGuard(redis: redis, lockMilliseconds: configuration.guardMilliseconds, logger: logger)
    } else {
      redis = nil
    }
    let checkout = Checkout(
      inventory: inventory, payments: payments, tickets: TicketCodes(keyRing: configuration.keyRing),
      metrics: metrics,
      logger: logger)
    api = BoxOfficeAPI(
      configuration: configuration, inventory: inventory, checkout: checkout, cancellation: cancellation,
      waitlist: waitlist,
      expiry: expiry,
      hotSeats: hotSeats,
      metrics: metrics, adminToken: adminToken, logger: logger)
  }

  /// Runs the database connection pool until cancelled (for one-off commands and tests; a
  /// server runs it among `services()`).
  public func runDatabase() async { await postgres.run() }

  @discardableResult
  public func migrate() async throws -> [Int] { try await Migrations.migrate(postgres, logger: logger) }

  /// The HTTP application (its own `Service`); `onServerRunning` gets the listening channel.
  public func application(
    onServerRunning: @escaping @Sendable (any Channel) async -> Void = { _ in }
  ) -> some ApplicationProtocol {
    Application(
      router: api.router(),
      configuration: .init(address: .hostname(configuration.host, port: configuration.port), serverName: nil),
      onServerRunning: onServerRunning, logger: logger)
  }

  /// Everything to run: the database client first, the HTTP server last (shut down first).
  /// The expiry worker and the server start once the migrations are applied.
  /// `expiryWorker: false` leaves expired holds to the lazy takeover alone (tests).
  public func services(
    expiryWorker: Bool = true, onServerRunning: @escaping @Sendable (any Channel) async -> Void = { _ in }
  ) -> [any Service] {
    let application = application { channel in
      await onServerRunning(channel)
    }
    let schema = StartupGate()
    var services: [any Service] = [
      PostgresService(client: postgres),
      MigrationService(client: postgres, enabled: configuration.migrateOnStart, gate: schema, logger: logger),
    ]
    if expiryWorker { services.append(AfterGate(service: expiry, gate: schema)) }
    services.append(AfterGate(service: application, gate: schema))
    return services
  }
}

/// Runs the postgres-nio client (its connection pool) as a service.
struct PostgresService: Service {
  let client: PostgresClient
  func run() async throws { await client.run() }
}

/// Applies pending migrations once at start-up, opens `gate` for the services that need the
/// schema, then waits for shutdown. A failed migration throws, which stops the group.
struct MigrationService: Service {
  let client: PostgresClient
  let enabled: Bool
  let gate: StartupGate
  let logger: Logger
  func run() async throws {
    if enabled { try await Migrations.migrate(client, logger: logger) }
    gate.open()
    try? await gracefulShutdown()
  }
}
