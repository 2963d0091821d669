/// What a room does with visitors right now.
public enum RoomState: String, Sendable, Hashable, CaseIterable, Codable {
  /// Not protected: everyone is forwarded.
  case passthrough
  /// Visitors queue and are admitted by the admission loop.
  case queue
  /// Visitors keep their places; nobody is admitted.
  case paused
  /// Nobody new may join (sold out, or the sale is over).
  case closed
}

/// A room's live settings, kept in Redis and read by every gateway (DESIGN §3).
public struct RoomSettings: Sendable, Hashable, Codable {
  public var state: RoomState
  /// Admissions per minute (token bucket refill rate; burst is one second's worth, at least 1).
  public var ratePerMinute: Int
  /// Most visitors admitted at once (claimed sessions plus unclaimed admissions).
  public var maxActive: Int
  /// Shopping session length; also the pass lifetime.
  public var sessionSeconds: Int
  /// Time an admitted visitor has to come back and claim the slot.
  public var claimSeconds: Int
  /// A waiting visitor not seen for this long loses the place.
  public var abandonSeconds: Int
  /// On-sale start, unix milliseconds; joins before it are shuffled. 0 = already started.
  public var startsAtMilliseconds: Int64
  /// Random offset added to each join after the start, in milliseconds.
  public var jitterMilliseconds: Int
  /// Joins beyond this many waiting visitors are refused; 0 = no limit.
  public var maxQueue: Int
  /// New places one client (address, or IPv6 /64) may take in this room within a day,
  /// counted across gateways; 0 = no limit. Generous: families, offices and carrier NAT
  /// share addresses.
  public var maxPlacesPerClient: Int
  /// Proof of work before a place: a new visitor solves a challenge of this many bits
  /// (2^bits SHA-256 hashes expected); 0 = off.
  public var challengeBits: Int
  /// Queue shards: the waiting line split over this many sorted sets, each with its own hash
  /// tag so a Redis Cluster puts them on different primaries. Fixed when the room is made.
  public var shards: Int

  public init(
    state: RoomState = .queue,
    ratePerMinute: Int = 600,
    maxActive: Int = 1_000,
    sessionSeconds: Int = 600,
    claimSeconds: Int = 60,
    abandonSeconds: Int = 120,
    startsAtMilliseconds: Int64 = 0,
    jitterMilliseconds: Int = 250,
    maxQueue: Int = 0,
    maxPlacesPerClient: Int = 20,
    challengeBits: Int = 0,
    shards: Int = 1
  ) {
    self.state = state
    self.ratePerMinute = ratePerMinute
    self.maxActive = maxActive
    self.sessionSeconds = sessionSeconds
    self.claimSeconds = claimSeconds
    self.abandonSeconds = abandonSeconds
    self.startsAtMilliseconds = startsAtMilliseconds
    self.jitterMilliseconds = jitterMilliseconds
    self.maxQueue = maxQueue
    self.maxPlacesPerClient = maxPlacesPerClient
    self.challengeBits = challengeBits
    self.shards = shards
  }

  /// Limits that keep the admission script's arithmetic exact and the room usable.
  public static let maximumRatePerMinute = 6_000_000
  public static let maximumActive = 10_000_000
  public static let minimumSessionSeconds = 10
  /// The queue records "last seen" in 13 bits of seconds (2 h 16 min); abandonment must fit.
  public static let maximumAbandonSeconds = 7_200
  public static let maximumShards = 16

  /// Throws the first out-of-range value, with a message an operator can act on.
  public func validate() throws(RoomSettingsError) {
    func check(_ ok: Bool, _ field: String, _ message: String) throws(RoomSettingsError) {
      if !ok { throw RoomSettingsError(field: field, message: message) }
    }
    try check(
      (0...Self.maximumRatePerMinute).contains(ratePerMinute), "rate_per_minute",
      "must be between 0 and \(Self.maximumRatePerMinute) (got \(ratePerMinute))")
    try check(
      (0...Self.maximumActive).contains(maxActive), "max_active",
      "must be between 0 and \(Self.maximumActive) (got \(maxActive))")
    try check(
      (Self.minimumSessionSeconds...86_400).contains(sessionSeconds), "session_seconds",
      "must be between \(Self.minimumSessionSeconds) and 86400 (got \(sessionSeconds))")
    try check(
      (1...3_600).contains(claimSeconds), "claim_seconds", "must be between 1 and 3600 (got \(claimSeconds))")
    try check(
      (1...Self.maximumAbandonSeconds).contains(abandonSeconds), "abandon_seconds",
      "must be between 1 and \(Self.maximumAbandonSeconds) (got \(abandonSeconds))")
    try check(
      startsAtMilliseconds >= 0 && startsAtMilliseconds < 2_500_000_000_000, "starts_at",
      "must be unix milliseconds between 0 and year 2049 (got \(startsAtMilliseconds))")
    try check(
      (0...60_000).contains(jitterMilliseconds), "jitter_ms",
      "must be between 0 and 60000 (got \(jitterMilliseconds))")
    try check(
      maxQueue >= 0 && maxQueue <= 100_000_000, "max_queue",
      "must be between 0 and 100000000 (got \(maxQueue))")
    try check(
      (0...1_000_000).contains(maxPlacesPerClient), "max_places_per_client",
      "must be between 0 and 1000000 (got \(maxPlacesPerClient))")
    try check(
      (0...Challenge.maximumBits).contains(challengeBits), "challenge_bits",
      "must be between 0 and \(Challenge.maximumBits) (got \(challengeBits))")
    try check(
      (1...Self.maximumShards).contains(shards), "shards",
      "must be between 1 and \(Self.maximumShards) (got \(shards))")
  }

  /// The Redis hash fields and values, as stored.
  public var fields: [(String, String)] {
    [
      ("state", state.rawValue), ("rate_per_minute", String(ratePerMinute)),
      ("max_active", String(maxActive)),
      ("session_seconds", String(sessionSeconds)), ("claim_seconds", String(claimSeconds)),
      ("abandon_seconds", String(abandonSeconds)), ("starts_at", String(startsAtMilliseconds)),
      ("jitter_ms", String(jitterMilliseconds)), ("max_queue", String(maxQueue)),
      ("max_places_per_client", String(maxPlacesPerClient)), ("challenge_bits", String(challengeBits)),
      ("shards", String(shards)),
    ]
  }

  /// Applies one field by its stored name; throws for unknown names and unparsable values.
  public mutating func set(_ field: String, to value: String) throws(RoomSettingsError) {
    func int(_ text: String) throws(RoomSettingsError) -> Int {
      guard let number = Int(text) else {
        throw RoomSettingsError(field: field, message: "must be an integer (got '\(text.prefix(40))')")
      }
      return number
    }
    switch field {
    case "state":
      guard let state = RoomState(rawValue: value) else {
        throw RoomSettingsError(
          field: field,
          message:
            "must be one of \(RoomState.allCases.map(\.rawValue).joined(separator: ", ")) (got '\(value.prefix(40))')"
        )
      }
      self.state = state
    case "rate_per_minute": ratePerMinute = try int(value)
    case "max_active": maxActive = try int(value)
    case "session_seconds": sessionSeconds = try int(value)
    case "claim_seconds": claimSeconds = try int(value)
    case "abandon_seconds": abandonSeconds = try int(value)
    case "starts_at": startsAtMilliseconds = Int64(try int(value))
    case "jitter_ms": jitterMilliseconds = try int(value)
    case "max_queue": maxQueue = try int(value)
    case "max_places_per_client": maxPlacesPerClient = try int(value)
    case "challenge_bits": challengeBits = try int(value)
    case "shards": shards = try int(value)
    default: throw RoomSettingsError(field: field, message: "is not a room setting")
    }
  }

  /// Settings from a stored hash, over `defaults` for missing fields.
  public init(fields: [String: String], defaults: RoomSettings = RoomSettings()) throws(RoomSettingsError) {
    self = defaults
    for (field, value) in fields { try set(field, to: value) }
  }
}

/// An out-of-range or unknown setting.
public struct RoomSettingsError: Error, Hashable, Sendable, CustomStringConvertible {
  public let field: String
  public let message: String
  public var description: String { "\(field) \(message)" }
}
