public import FoyerCore
public import NIOCore

/// One protected on-sale: which requests belong to it.
public struct RoomRoute: Sendable, Hashable {
  /// The room id (`[A-Za-z0-9_-]{1,64}`), as in Redis.
  public var id: String
  /// Requests whose path starts with this belong to the room.
  public var pathPrefix: String
  /// If set, only requests for this host (the `Host` header, port ignored, any case).
  public var host: String?

  public init(id: String, pathPrefix: String, host: String? = nil) {
    self.id = id
    self.pathPrefix = pathPrefix
    self.host = host?.lowercased()
  }
}

/// Everything the gateway needs, explicit; `main` fills it from the config file and the
/// environment (secrets come only from the environment).
public struct GatewayConfiguration: Sendable {
  /// Public listener.
  public var host: String
  public var port: Int
  /// Signing keys for visitor tokens and passes (first signs, all verify).
  public var keyRing: KeyRing
  /// `Secure` on cookies (set behind TLS).
  public var secureCookies: Bool
  /// The protected rooms, matched by path prefix, longest first.
  public var rooms: [RoomRoute]
  /// Accept backlog: a flash crowd connects all at once.
  public var backlog: Int32
  /// Reads per event-loop wake-up per connection.
  public var maxMessagesPerRead: UInt
  /// Deadline for a Redis round trip on the request path; past it visitors get a retry hint.
  public var redisTimeout: TimeAmount
  /// Where admitted traffic goes; `nil` answers 502 `no_upstream`.
  public var upstream: UpstreamConfiguration?
  /// Request limits; each has a clear answer.
  public var limits: GatewayLimits
  /// On shutdown, how long in-flight requests get to finish.
  public var drainTimeout: TimeAmount
  /// An operator's waiting page (see `WaitingPage` for the placeholders); `nil`: built in.
  public var waitingPageTemplate: String?
  /// While Redis is unreachable: the `Retry-After` (and page refresh) for visitors without
  /// a pass. Pass holders keep being forwarded; nobody else is.
  public var unavailableRetrySeconds: Int
  /// Forward body-less pass-holder `GET`/`HEAD`s on the byte-level express lane
  /// (`ExpressLane`); off, every request takes the NIOHTTP1 path.
  public var expressLane: Bool
  /// How often the rooms' revocation logs are read from Redis: a pass given back on another
  /// gateway is refused here within this (and a round trip).
  public var revocationRefreshInterval: TimeAmount = .milliseconds(250)
  /// How often the rooms' traffic rules are read from Redis: a change through the admin API
  /// applies here within this.
  public var trafficRulesRefreshInterval: TimeAmount = .seconds(1)
  /// Who a client is, and how many visitor ids one may be given.
  public var clients = ClientPolicy()
  /// Invite-only rooms: a room with a key here gives places only for an `EnqueueToken` its
  /// operator's site signed with that key (`FOYER_ENQUEUE_KEYS`, `room:base64secret,…`).
  public var enqueueKeys: [String: [UInt8]] = [:]

  public init(
    host: String = "0.0.0.0", port: Int = 8080, keyRing: KeyRing, secureCookies: Bool = false,
    rooms: [RoomRoute] = [], backlog: Int32 = 4_096, maxMessagesPerRead: UInt = 16,
    redisTimeout: TimeAmount = .milliseconds(500), upstream: UpstreamConfiguration? = nil,
    limits: GatewayLimits = GatewayLimits(), drainTimeout: TimeAmount = .seconds(30),
    waitingPageTemplate: String? = nil, unavailableRetrySeconds: Int = 2, expressLane: Bool = true
  ) {
    self.expressLane = expressLane
    self.waitingPageTemplate = waitingPageTemplate
    self.unavailableRetrySeconds = unavailableRetrySeconds
    self.drainTimeout = drainTimeout
    self.upstream = upstream
    self.limits = limits
    self.host = host
    self.port = port
    self.keyRing = keyRing
    self.secureCookies = secureCookies
    self.rooms = rooms
    self.backlog = backlog
    self.maxMessagesPerRead = maxMessagesPerRead
    self.redisTimeout = redisTimeout
  }
}

/// Limits that keep a flash crowd (and a slowloris) from exhausting the gateway.
public struct GatewayLimits: Sendable, Hashable {
  /// All request header names and values together; beyond it: 431.
  public var maxHeaderBytes: Int
  /// Request body forwarded upstream; beyond it: 413 (0 = no limit; bodies stream either way).
  public var maxBodyBytes: Int64
  /// Time from connect (or the previous response) to a complete request head: 408.
  public var headerTimeout: TimeAmount
  /// A keep-alive connection with no request for this long is closed.
  public var idleTimeout: TimeAmount
  /// Open client connections at most; further ones are closed at once.
  public var maxConnections: Int

  public init(
    maxHeaderBytes: Int = 32 * 1024, maxBodyBytes: Int64 = 1 << 30, headerTimeout: TimeAmount = .seconds(10),
    idleTimeout: TimeAmount = .seconds(60), maxConnections: Int = 100_000
  ) {
    self.maxHeaderBytes = maxHeaderBytes
    self.maxBodyBytes = maxBodyBytes
    self.headerTimeout = headerTimeout
    self.idleTimeout = idleTimeout
    self.maxConnections = maxConnections
  }
}

/// Who a client is (`ClientIdentity`) and the gateway-wide limit per client; the per-room one,
/// `max_places_per_client`, is a live room setting.
public struct ClientPolicy: Sendable, Hashable {
  /// Peers whose `Forwarded` / `X-Forwarded-For` is believed; empty: the socket's address is
  /// the client, whatever the headers say.
  public var trustedProxies: [AddressBlock]
  /// New visitor ids one client may be given per room per minute, counted in Redis across
  /// every gateway; beyond it `429`. 0 = no limit.
  public var newVisitorsPerMinute: Int
  /// A waiting visitor's next poll must come at least this share (percent) of the
  /// `pollAfterMs` it was told; sooner is `429 poll_too_soon`, from memory. 0 = off.
  public var minPollIntervalPercent: Int

  public init(trustedProxies: [AddressBlock] = [], newVisitorsPerMinute: Int = 60, minPollIntervalPercent: Int = 50) {
    self.trustedProxies = trustedProxies
    self.newVisitorsPerMinute = newVisitorsPerMinute
    self.minPollIntervalPercent = minPollIntervalPercent
  }
}
