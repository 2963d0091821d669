public import Foundation
public import RedisNIO

/// A throwaway Redis Cluster on free loopback ports: six `redis-server --cluster-enabled yes`,
/// joined by `redis-cli --cluster create … --cluster-replicas 1` (three primaries, three
/// replicas). Tests share one (`RedisCluster.sharedURL()`: the one `make test` started,
/// `FOYER_TEST_REDIS_CLUSTER_URL`, or one started here); tests that kill or reshard nodes
/// start their own with `RedisCluster.start()`.
public final class RedisCluster: @unchecked Sendable {
  public let nodes: [RedisServer]

  /// The cluster's URL with every node as a seed.
  public var url: String { "redis-cluster://" + nodes.map { "127.0.0.1:\($0.port)" }.joined(separator: ",") }
  public var configuration: RedisConfiguration { try! RedisConfiguration(url: url) }

  private init(nodes: [RedisServer]) {
    self.nodes = nodes
  }

  public static func sharedURL() async throws -> String {
    if let url = ProcessInfo.processInfo.environment["FOYER_TEST_REDIS_CLUSTER_URL"], !url.isEmpty { return url }
    return try await shared.value.url
  }

  private static let shared = Task {
    let cluster = try await RedisCluster.start()
    sharedNodes.withLock { $0 = cluster.nodes }
    atexit { RedisCluster.sharedNodes.withLock { $0 }.forEach { $0.signalStop() } }
    return cluster
  }
  private static let sharedNodes = LockedValue<[RedisServer]>([])

  /// Starts six nodes and makes them a cluster; returns once every node says `cluster_state:ok`.
  public static func start() async throws -> RedisCluster {
    guard let cli = findExecutable("redis-cli") else {
      throw TestServiceError("redis-cli is not installed: run `make test` (it installs redis-tools)")
    }
    var nodes: [RedisServer] = []
    for _ in 0..<6 {
      nodes.append(
        try await RedisServer.start(extraArguments: [
          "--cluster-enabled", "yes", "--cluster-config-file", "nodes.conf", "--cluster-node-timeout", "1000",
          // The bus port is the port + 10,000 unless given: a free port above 55,535 has none.
          "--cluster-port", String(try freeLoopbackPort()),
        ]))
    }
    let cluster = RedisCluster(nodes: nodes)
    let create = try runToEnd(
      cli,
      ["--cluster", "create"] + nodes.map { "127.0.0.1:\($0.port)" } + ["--cluster-replicas", "1", "--cluster-yes"])
    guard create.status == 0 else {
      throw TestServiceError("redis-cli --cluster create failed: \(create.output.suffix(500))")
    }
    try await cluster.waitUntilHealthy()
    return cluster
  }

  /// Waits until every running node reports `cluster_state:ok` and every replica has synced
  /// with its primary.
  public func waitUntilHealthy(timeout: Duration = .seconds(30)) async throws {
    let deadline = ContinuousClock.now + timeout
    var last = ""
    while ContinuousClock.now < deadline {
      var healthy = true
      for node in nodes where node.isRunning {
        let cli = findExecutable("redis-cli")!
        let info = (try? runToEnd(cli, ["-p", String(node.port), "cluster", "info"]))?.output ?? ""
        // A replica must have synced once, or it could not be promoted.
        let replication = (try? runToEnd(cli, ["-p", String(node.port), "info", "replication"]))?.output ?? ""
        if !info.contains("cluster_state:ok")
          || (replication.contains("role:slave") && !replication.contains("master_link_status:up"))
        {
          healthy = false
          last = "node \(node.port): \(info.prefix(120)) \(replication.prefix(200))"
          break
        }
      }
      if healthy { return }
      try await Task.sleep(for: .milliseconds(200))
    }
    throw TestServiceError("the cluster did not become healthy: \(last)")
  }

  /// The node serving `slot` now, as the nodes report it.
  public func primary(forSlot slot: Int) throws -> RedisServer {
    for node in nodes where node.isRunning {
      let output = try runToEnd(findExecutable("redis-cli")!, ["-p", String(node.port), "cluster", "slots"]).output
      let lines = output.split(separator: "\n").map { $0.trimmingCharacters(in: .whitespaces) }
      // Groups of: start, end, host, port, id, (replica host, port, id)…
      var index = 0
      while index + 3 < lines.count {
        if let start = Int(lines[index]), let end = Int(lines[index + 1]), let port = Int(lines[index + 3]),
          (start...end).contains(slot), let owner = nodes.first(where: { $0.port == port })
        {
          return owner
        }
        index += 1
      }
    }
    throw TestServiceError("no node serves slot \(slot)")
  }

  /// The node's cluster id.
  public func id(of node: RedisServer) throws -> String {
    try runToEnd(findExecutable("redis-cli")!, ["-p", String(node.port), "cluster", "myid"]).output
      .trimmingCharacters(in: .whitespacesAndNewlines)
  }

  public func stop() async {
    for node in nodes { await node.stop() }
  }
}

/// A value behind a lock, shared by tasks running at once (flags, counters, logs).
public final class LockedValue<Value>: @unchecked Sendable {
  private let lock = NSLock()
  private var stored: Value
  public init(_ value: Value) { stored = value }
  public func withLock<T>(_ body: (inout Value) -> T) -> T { lock.withLock { body(&stored) } }
  public var value: Value { lock.withLock { stored } }
}

/// Where a suite's Redis is, for tests run on both: the shared server or the shared cluster.
public enum RedisBackend: String, CaseIterable, Sendable {
  case single, cluster

  public func sharedURL() async throws -> String {
    self == .single ? try RedisServer.sharedURL() : try await RedisCluster.sharedURL()
  }
}

extension RedisCluster {
  /// `prefix-<8 random characters>`, with its `{name}` hash tag in the `third`-th third of the
  /// slots: one primary's, as `redis-cli --cluster create` gives each a third.
  public static func name(_ prefix: String, onThird third: Int) -> String {
    while true {
      let name = prefix + "-" + UUID().uuidString.prefix(8)
      if HashSlot.of("{\(name)}") * 3 / HashSlot.count == third { return name }
    }
  }
}
