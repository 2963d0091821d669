public import NIOCore

/// How to reach Redis and how patient to be.
public struct RedisConfiguration: Sendable {
  public enum Endpoint: Sendable, Hashable {
    case tcp(host: String, port: Int)
    case unixSocket(path: String)
  }

  /// Where Redis listens.
  public var endpoint: Endpoint
  /// `AUTH` on connect; user name for Redis 6 ACLs.
  public var username: String?
  /// `AUTH` on connect. Never logged.
  public var password: String?
  /// `SELECT` on connect (0 = the default database, no command sent).
  public var database: Int
  /// Default deadline of a command, from when it is sent to when its reply arrives.
  public var commandTimeout: TimeAmount
  /// Deadline of the TCP connect. Generous: a refused connect fails at once anyway, and a
  /// gateway whose event loops are saturated by a flash crowd must not give up on Redis.
  public var connectTimeout: TimeAmount
  /// First reconnect delay after a failed connect; doubles per failure up to `maximumBackoff`.
  public var initialBackoff: TimeAmount
  /// The longest wait between reconnect attempts.
  public var maximumBackoff: TimeAmount
  /// A Redis Cluster's seed nodes (`redis-cluster://a:p,b:p`); empty for one server. The
  /// other settings apply to every node's connections.
  public var clusterSeeds: [Endpoint] = []

  public var isCluster: Bool { !clusterSeeds.isEmpty }

  public init(
    endpoint: Endpoint,
    username: String? = nil,
    password: String? = nil,
    database: Int = 0,
    commandTimeout: TimeAmount = .seconds(2),
    connectTimeout: TimeAmount = .seconds(3),
    initialBackoff: TimeAmount = .milliseconds(20),
    maximumBackoff: TimeAmount = .seconds(1)
  ) {
    self.endpoint = endpoint
    self.username = username
    self.password = password
    self.database = database
    self.commandTimeout = commandTimeout
    self.connectTimeout = connectTimeout
    self.initialBackoff = initialBackoff
    self.maximumBackoff = maximumBackoff
  }

  /// Parses `redis://[[user]:password@]host[:port][/db]`, `unix:///path/to/socket[?db=N]`
  /// or `redis-cluster://[[user]:password@]host:port[,host:port…]` (seed nodes of a cluster,
  /// which has only database 0). Percent-escapes in the user and password are decoded.
  public init(url: String) throws(RedisError) {
    func invalid(_ why: String) -> RedisError {
      // The URL may hold a password: say what is wrong, never echo it.
      RedisError(.invalidConfiguration, "invalid Redis URL: \(why)")
    }
    if url.hasPrefix("redis-cluster://") {
      var rest = url.dropFirst("redis-cluster://".count)
      var credentials = ""
      if let at = rest.lastIndex(of: "@") {
        credentials = String(rest[..<at]) + "@"
        rest = rest[rest.index(after: at)...]
      }
      guard !rest.contains("/") else { throw invalid("a cluster has only database 0: no /db") }
      var nodes: [RedisConfiguration] = []
      for seed in rest.split(separator: ",", omittingEmptySubsequences: false) {
        guard !seed.isEmpty else { throw invalid("empty seed node") }
        nodes.append(try RedisConfiguration(url: "redis://" + credentials + seed))
      }
      guard let first = nodes.first else { throw invalid("missing seed nodes") }
      self = first
      clusterSeeds = nodes.map(\.endpoint)
      return
    }
    if url.hasPrefix("unix://") {
      var rest = url.dropFirst("unix://".count)
      var database = 0
      if let question = rest.firstIndex(of: "?") {
        let query = rest[rest.index(after: question)...]
        rest = rest[..<question]
        guard query.hasPrefix("db="), let db = Int(query.dropFirst(3)), db >= 0 else {
          throw invalid("the only query parameter is db=N")
        }
        database = db
      }
      guard rest.hasPrefix("/") else { throw invalid("unix socket path must be absolute") }
      self.init(endpoint: .unixSocket(path: String(rest)), database: database)
      return
    }
    guard url.hasPrefix("redis://") else {
      throw invalid("scheme must be redis://, redis-cluster:// or unix://")
    }
    var rest = url.dropFirst("redis://".count)
    var username: String?
    var password: String?
    if let at = rest.lastIndex(of: "@") {
      let credentials = rest[..<at]
      rest = rest[rest.index(after: at)...]
      if let colon = credentials.firstIndex(of: ":") {
        let user = credentials[..<colon]
        username = user.isEmpty ? nil : try Self.percentDecoded(user, invalid)
        password = try Self.percentDecoded(credentials[credentials.index(after: colon)...], invalid)
      } else {
        password = try Self.percentDecoded(credentials, invalid)
      }
    }
    var database = 0
    if let slash = rest.firstIndex(of: "/") {
      let path = rest[rest.index(after: slash)...]
      rest = rest[..<slash]
      if !path.isEmpty {
        guard let db = Int(path), db >= 0 else { throw invalid("database must be a non-negative integer") }
        database = db
      }
    }
    var host = rest
    var port = 6379
    if host.hasPrefix("[") {  // [::1]:6379
      guard let close = host.firstIndex(of: "]") else { throw invalid("unclosed IPv6 bracket") }
      let after = host[host.index(after: close)...]
      host = host[host.index(after: host.startIndex)..<close]
      if !after.isEmpty {
        guard after.hasPrefix(":"), let p = Int(after.dropFirst()) else { throw invalid("bad port") }
        port = p
      }
    } else if let colon = host.lastIndex(of: ":") {
      guard let p = Int(host[host.index(after: colon)...]) else { throw invalid("bad port") }
      port = p
      host = host[..<colon]
    }
    guard !host.isEmpty else { throw invalid("missing host") }
    guard (1...65535).contains(port) else { throw invalid("port must be 1-65535") }
    self.init(
      endpoint: .tcp(host: String(host), port: port), username: username, password: password,
      database: database)
  }

  private static func percentDecoded(
    _ text: Substring, _ invalid: (String) -> RedisError
  ) throws(RedisError)
    -> String
  {
    var bytes: [UInt8] = []
    var iterator = text.utf8.makeIterator()
    while let byte = iterator.next() {
      if byte == UInt8(ascii: "%") {
        guard let high = iterator.next(), let low = iterator.next(),
          let value = UInt8(String(decoding: [high, low], as: UTF8.self), radix: 16)
        else { throw invalid("bad percent-escape in credentials") }
        bytes.append(value)
      } else {
        bytes.append(byte)
      }
    }
    return String(decoding: bytes, as: UTF8.self)
  }
}
