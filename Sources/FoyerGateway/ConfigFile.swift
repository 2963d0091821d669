internal import FoyerConfig
public import FoyerCore
public import FoyerLogging
internal import NIOCore
public import RedisNIO
public import WaitingRoom

/// Everything `foyer gateway` reads from `config/foyer.yaml` (every key is documented there
/// with its default). Secrets are not in the file: the key ring and the admin token come from
/// the environment and are passed in.
public struct GatewayFile: Sendable {
  public var gateway: GatewayConfiguration
  public var redisURL: String
  /// Joins and admissions confirmed by this many replicas (`redis.wait_replicas`); nil: off.
  public var replicaWait: ReplicaWait?
  /// Event-loop threads; 0 means one per core.
  public var threads: Int
  public var adminHost: String
  public var adminPort: Int
  /// Settings for rooms that do not exist yet (existing rooms keep theirs: operators may
  /// have tuned them live).
  public var roomSettings: [String: RoomSettings]
  /// How the process logs (`log:`).
  public var log = LogConfiguration()
  /// How positions are told without asking Redis (`positions:`).
  public var sketching = RoomStore.Sketching()

  /// Parses and validates the file. Unknown keys are errors (a typo must not silently fall
  /// back to a default), and every message names the key and its line.
  public static func parse(
    yaml: String, keyRing: KeyRing, readFile: (String) throws -> String
  ) throws(GatewayConfigurationError) -> GatewayFile {
    var file = GatewayFile(
      gateway: GatewayConfiguration(keyRing: keyRing), redisURL: "redis://127.0.0.1:6379", threads: 0,
      adminHost: "127.0.0.1", adminPort: 8081, roomSettings: [:])
    do {
      var reader = try ConfigSection.parse(yaml: yaml)
      try file.read(&reader, readFile: readFile)
      try reader.finish()
    } catch let error as ConfigurationError {
      throw GatewayConfigurationError(error.description)
    } catch {
      throw GatewayConfigurationError("\(error)")
    }
    return file
  }

  private mutating func read(
    _ top: inout ConfigSection, readFile: (String) throws -> String
  ) throws {
    if var listen = try top.section("listen") {
      gateway.host = try listen.string("host") ?? gateway.host
      gateway.port = try listen.int("port", in: 0...65_535) ?? gateway.port
      gateway.backlog = Int32(try listen.int("backlog", in: 1...65_535) ?? Int(gateway.backlog))
      gateway.maxMessagesPerRead = UInt(
        try listen.int("max_messages_per_read", in: 1...1_024) ?? Int(gateway.maxMessagesPerRead))
      try listen.finish()
    }
    if var admin = try top.section("admin") {
      adminHost = try admin.string("host") ?? adminHost
      adminPort = try admin.int("port", in: 0...65_535) ?? adminPort
      try admin.finish()
    }
    threads = try top.int("threads", in: 0...1_024) ?? threads
    try log.read(from: &top)
    if var redis = try top.section("redis") {
      redisURL = try redis.string("url") ?? redisURL
      gateway.redisTimeout = try redis.milliseconds("timeout_ms", in: 1...60_000) ?? gateway.redisTimeout
      let replicas = try redis.int("wait_replicas", in: 0...16) ?? 0
      let wait = try redis.milliseconds("wait_timeout_ms", in: 1...10_000) ?? .milliseconds(100)
      replicaWait = replicas > 0 ? ReplicaWait(replicas: replicas, timeout: wait) : nil
      try redis.finish()
    }
    if var positions = try top.section("positions") {
      sketching.exactBelow = try positions.int("exact_below", in: 1...10_000_000) ?? sketching.exactBelow
      // Below 0.1 % a ten-million room's sketch grows past ten thousand samples, made each second.
      sketching.error = try positions.double("error_percent", in: 0.1...10).map { $0 / 100 } ?? sketching.error
      sketching.maxAge = try positions.milliseconds("sketch_age_ms", in: 100...60_000) ?? sketching.maxAge
      sketching.heartbeatInterval =
        try positions.milliseconds("heartbeat_interval_ms", in: 100...10_000) ?? sketching.heartbeatInterval
      try positions.finish()
    }
    if var upstream = try top.section("upstream") {
      // Read every key even without a url, so a typo is reported either way.
      let url = try upstream.string("url")
      let connect = try upstream.milliseconds("connect_timeout_ms", in: 1...600_000)
      let response = try upstream.milliseconds("response_timeout_ms", in: 1...3_600_000)
      let idle = try upstream.int("max_idle_per_loop", in: 0...10_000)
      let most = try upstream.int("max_connections_per_loop", in: 1...100_000)
      let queue = try upstream.milliseconds("queue_timeout_ms", in: 1...600_000)
      let idleTimeout = try upstream.milliseconds("idle_timeout_ms", in: 100...3_600_000)
      gateway.expressLane = try upstream.bool("express_lane") ?? gateway.expressLane
      try upstream.finish()
      if let url, !url.isEmpty {
        var configuration = try UpstreamConfiguration(url: url)
        configuration.connectTimeout = connect ?? configuration.connectTimeout
        configuration.responseTimeout = response ?? configuration.responseTimeout
        configuration.maxIdlePerEventLoop = idle ?? configuration.maxIdlePerEventLoop
        configuration.maxConnectionsPerEventLoop = most ?? configuration.maxConnectionsPerEventLoop
        configuration.queueTimeout = queue ?? configuration.queueTimeout
        configuration.idleTimeout = idleTimeout ?? configuration.idleTimeout
        gateway.upstream = configuration
      }
    }
    if var cookies = try top.section("cookies") {
      gateway.secureCookies = try cookies.bool("secure") ?? gateway.secureCookies
      try cookies.finish()
    }
    if var limits = try top.section("limits") {
      var value = gateway.limits
      value.maxHeaderBytes = try limits.int("max_header_bytes", in: 1_024...1_048_576) ?? value.maxHeaderBytes
      value.maxBodyBytes = Int64(try limits.int("max_body_bytes", in: 0...Int.max) ?? Int(value.maxBodyBytes))
      value.headerTimeout =
        try limits.milliseconds("header_timeout_ms", in: 100...600_000) ?? value.headerTimeout
      value.idleTimeout = try limits.milliseconds("idle_timeout_ms", in: 100...3_600_000) ?? value.idleTimeout
      value.maxConnections = try limits.int("max_connections", in: 1...10_000_000) ?? value.maxConnections
      gateway.limits = value
      try limits.finish()
    }
    if var clients = try top.section("clients") {
      var policy = gateway.clients
      if let blocks = try clients.strings("trusted_proxies") {
        policy.trustedProxies = []
        for text in blocks {
          guard let block = AddressBlock(text) else {
            throw clients.error("trusted_proxies", "'\(text.prefix(60))' is not an address or CIDR block")
          }
          policy.trustedProxies.append(block)
        }
      }
      policy.newVisitorsPerMinute =
        try clients.int("new_visitors_per_minute", in: 0...1_000_000) ?? policy.newVisitorsPerMinute
      policy.minPollIntervalPercent =
        try clients.int("min_poll_interval_percent", in: 0...100) ?? policy.minPollIntervalPercent
      gateway.clients = policy
      try clients.finish()
    }
    if var shutdown = try top.section("shutdown") {
      gateway.drainTimeout =
        try shutdown.milliseconds("drain_timeout_ms", in: 0...600_000) ?? gateway.drainTimeout
      try shutdown.finish()
    }
    if var page = try top.section("waiting_page") {
      if let path = try page.string("template"), !path.isEmpty {
        let text: String
        do { text = try readFile(path) } catch {
          throw GatewayConfigurationError("waiting_page.template: cannot read '\(path)': \(error)")
        }
        do { _ = try WaitingPage(template: text) } catch {
          throw GatewayConfigurationError("waiting_page.template '\(path)': \(error)")
        }
        gateway.waitingPageTemplate = text
      }
      gateway.unavailableRetrySeconds =
        try page.int("unavailable_retry_seconds", in: 1...300) ?? gateway.unavailableRetrySeconds
      try page.finish()
    }
    if let rooms = try top.sections("rooms") {
      var routes: [RoomRoute] = []
      for var room in rooms {
        guard let id = try room.string("id"), Identifier.isValid(id[...]) else {
          throw room.error("id", "is required: [A-Za-z0-9_-]{1,64}")
        }
        let prefix = try room.string("path_prefix") ?? "/"
        guard prefix.hasPrefix("/") else { throw room.error("path_prefix", "must start with '/'") }
        let host = try room.string("host")
        // A room may be listed more than once, to protect several prefixes (or hosts).
        if routes.contains(where: { $0.id == id && $0.pathPrefix == prefix && $0.host == host?.lowercased() })
        {
          throw room.error("id", "'\(id)' appears twice with the same path_prefix and host")
        }
        routes.append(RoomRoute(id: id, pathPrefix: prefix, host: host))
        if var settings = try room.section("settings") {
          if roomSettings[id] != nil { throw room.error("settings", "are given twice for room '\(id)'") }
          var value = RoomSettings()
          for (field, text) in try settings.allScalars() {
            do { try value.set(field, to: text) } catch {
              throw settings.error(field, error.message)
            }
          }
          do { try value.validate() } catch { throw settings.error(error.field, error.message) }
          roomSettings[id] = value
        }
        try room.finish()
      }
      gateway.rooms = routes
    }
  }
}
