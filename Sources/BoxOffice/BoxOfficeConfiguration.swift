public import Foundation
public import FoyerConfig
public import FoyerCore
public import FoyerLogging

/// How BoxOffice knows who is asking (DESIGN §4, §5).
public enum VisitorIdentity: String, Sendable, Hashable {
  /// A valid Foyer pass is required (`Foyer-Pass` header or `foyer_p_<room>` cookie, verified
  /// with the shared key ring); anything else is `401`. Bypassing the gateway is impossible.
  case pass
  /// The gateway is trusted: the visitor is its `Foyer-Visitor` header (only behind a gateway
  /// that strips client copies, on a network nobody else reaches).
  case gateway
}

/// Everything `boxoffice serve` needs, explicit; `main` fills it from `config/boxoffice.yaml`
/// and the environment (the database password and the keys only from the environment).
public struct BoxOfficeConfiguration: Sendable {
  public var host: String
  public var port: Int
  /// postgres://user[:password]@host[:port]/database
  public var databaseURL: String
  /// Connections to PostgreSQL at most (per process).
  public var databaseConnections: Int
  /// Redis for the hot-seat guard; `nil` turns the guard off.
  public var redisURL: String?
  /// How long a hold keeps its seats.
  public var holdDuration: Duration
  /// Seats in one hold at most.
  public var maxSeatsPerHold: Int
  /// Seats one visitor may hold at once and have bought, together, per event (one pass must
  /// not hoard the hall); `nil`: no limit.
  public var maxSeatsPerVisitor: Int? = 8
  /// Hold attempts one visitor may make per minute (a burst of as many); `nil` = no limit.
  public var holdAttemptsPerMinute: Int? = 30
  /// Largest request body accepted (413 beyond).
  public var maxBodyBytes: Int
  public var identity: VisitorIdentity
  /// The Foyer room whose passes admit visitors (the pass cookie is `foyer_p_<room>`).
  public var room: String
  /// Verifies passes and signs ticket codes; from FOYER_KEYS / FOYER_KEYS_FILE.
  public var keyRing: KeyRing
  /// Apply pending migrations at start-up.
  public var migrateOnStart: Bool
  /// The simulated payment provider: how long the "slow" test card takes, and after how
  /// long a charge counts as timed out.
  public var payments: PaymentSettings
  /// The hot-seat guard's lock time per seat (a claim attempt holds it this long at most).
  public var guardMilliseconds: Int
  /// How the process logs (`log:`).
  public var log = LogConfiguration()
  /// The buyer's own credential for orders, tickets and the waitlist (`buyers:`).
  public var buyers = BuyerAccess(lifetime: .seconds(90 * 86_400), secureCookie: false)
  /// Orders may be cancelled until this long before their event starts (`orders:`).
  public var cancelCutoff: Duration = .seconds(24 * 3_600)
  /// A waitlist offer's seats are kept for its visitor this long (`waitlist:`).
  public var waitlistOfferDuration: Duration = .seconds(15 * 60)
  /// Bearer token for check-in at the door (`POST /checkin`); only from
  /// `BOXOFFICE_STAFF_TOKEN`. `nil`: check-in is off.
  public var staffToken: String?

  public init(
    host: String = "127.0.0.1", port: Int = 9090,
    databaseURL: String = "postgres://boxoffice@127.0.0.1:5432/boxoffice", databaseConnections: Int = 20,
    redisURL: String? = nil, holdDuration: Duration = .seconds(600), maxSeatsPerHold: Int = 6,
    maxBodyBytes: Int = 65_536, identity: VisitorIdentity = .pass, room: String = "onsale", keyRing: KeyRing,
    migrateOnStart: Bool = true, payments: PaymentSettings = PaymentSettings(), guardMilliseconds: Int = 2_000
  ) {
    self.host = host
    self.port = port
    self.databaseURL = databaseURL
    self.databaseConnections = databaseConnections
    self.redisURL = redisURL
    self.holdDuration = holdDuration
    self.maxSeatsPerHold = maxSeatsPerHold
    self.maxBodyBytes = maxBodyBytes
    self.identity = identity
    self.room = room
    self.keyRing = keyRing
    self.migrateOnStart = migrateOnStart
    self.payments = payments
    self.guardMilliseconds = guardMilliseconds
  }

  /// Reads `config/boxoffice.yaml` (every key documented there with its default). Unknown
  /// keys are errors.
  public static func parse(
    yaml: String, keyRing: KeyRing
  ) throws(ConfigurationError) -> BoxOfficeConfiguration {
    var configuration = BoxOfficeConfiguration(keyRing: keyRing)
    var top = try ConfigSection.parse(yaml: yaml)
    if var listen = try top.section("listen") {
      configuration.host = try listen.string("host") ?? configuration.host
      configuration.port = try listen.int("port", in: 0...65_535) ?? configuration.port
      try listen.finish()
    }
    if var database = try top.section("database") {
      configuration.databaseURL = try database.string("url") ?? configuration.databaseURL
      configuration.databaseConnections =
        try database.int("max_connections", in: 1...1_000) ?? configuration.databaseConnections
      configuration.migrateOnStart = try database.bool("migrate_on_start") ?? configuration.migrateOnStart
      try database.finish()
    }
    if var redis = try top.section("redis") {
      if let url = try redis.string("url"), !url.isEmpty { configuration.redisURL = url }
      configuration.guardMilliseconds =
        try redis.int("guard_ms", in: 1...60_000) ?? configuration.guardMilliseconds
      try redis.finish()
    }
    if var holds = try top.section("holds") {
      if let seconds = try holds.int("duration_seconds", in: 1...86_400) {
        configuration.holdDuration = .seconds(seconds)
      }
      configuration.maxSeatsPerHold = try holds.int("max_seats", in: 1...100) ?? configuration.maxSeatsPerHold
      if let attempts = try holds.int("attempts_per_minute", in: 0...100_000) {
        configuration.holdAttemptsPerMinute = attempts == 0 ? nil : attempts
      }
      if let cap = try holds.int("max_seats_per_visitor", in: 0...10_000) {
        configuration.maxSeatsPerVisitor = cap == 0 ? nil : cap
      }
      try holds.finish()
    }
    if var visitors = try top.section("visitors") {
      if let identity = try visitors.string("identity") {
        guard let value = VisitorIdentity(rawValue: identity) else {
          throw visitors.error("identity", "must be pass or gateway (got '\(identity.prefix(40))')")
        }
        configuration.identity = value
      }
      if let room = try visitors.string("room") {
        guard Identifier.isValid(room[...]) else {
          throw visitors.error("room", "must match [A-Za-z0-9_-]{1,64}")
        }
        configuration.room = room
      }
      try visitors.finish()
    }
    if var payments = try top.section("payments") {
      if let slow = try payments.int("slow_ms", in: 0...600_000) {
        configuration.payments.slow = .milliseconds(slow)
      }
      if let timeout = try payments.int("timeout_ms", in: 1...600_000) {
        configuration.payments.timeout = .milliseconds(timeout)
      }
      try payments.finish()
    }
    if var buyers = try top.section("buyers") {
      let days = try buyers.int("access_days", in: 1...3_650) ?? 90
      let secure = try buyers.bool("secure_cookie") ?? configuration.buyers.secureCookie
      configuration.buyers = BuyerAccess(lifetime: .seconds(days * 86_400), secureCookie: secure)
      try buyers.finish()
    }
    if var orders = try top.section("orders") {
      if let hours = try orders.int("cancel_until_hours_before", in: 0...8_760) {
        configuration.cancelCutoff = .seconds(hours * 3_600)
      }
      try orders.finish()
    }
    if var waitlist = try top.section("waitlist") {
      if let seconds = try waitlist.int("offer_seconds", in: 5...86_400) {
        configuration.waitlistOfferDuration = .seconds(seconds)
      }
      try waitlist.finish()
    }
    configuration.maxBodyBytes =
      try top.int("max_body_bytes", in: 1_024...10_485_760) ?? configuration.maxBodyBytes
    try configuration.log.read(from: &top)
    try top.finish()
    return configuration
  }
}

/// The simulated provider's timing.
public struct PaymentSettings: Sendable, Hashable {
  /// The slow test card answers after this long.
  public var slow: Duration
  /// A charge not answered within this counts as failed (and is voided).
  public var timeout: Duration

  public init(slow: Duration = .seconds(3), timeout: Duration = .seconds(10)) {
    self.slow = slow
    self.timeout = timeout
  }
}
