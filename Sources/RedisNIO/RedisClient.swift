public import Logging
public import NIOCore

/// Redis for a whole event-loop group: one multiplexed connection per event loop, so code
/// running on a loop (a channel handler) talks to Redis without a thread hop.
///
/// With `clusterSeeds` in the configuration it speaks to a Redis Cluster: every request is
/// routed to the primary serving its slot (the slot of its first key, or the one given), with
/// one connection per primary and event loop, following `MOVED` and `ASK` and retrying
/// through failovers within its deadline (`ClusterRouter`). The methods below are the same
/// for both; `connection(on:)` is one server's alone.
///
/// Writes that wait for replicas (`evaluate(…replicated:)`) have connections of their own:
/// Redis blocks a connection during `WAIT`, and on the shared one every poll behind it would
/// wait for the replica too.
public final class RedisClient: Sendable {
  public let configuration: RedisConfiguration
  private let group: any EventLoopGroup
  /// The group's event loops, each with its own connections.
  public let eventLoops: [any EventLoop]
  private let connections: [RedisConnection]
  /// Per event loop, the connections of replicated writes (connected on first use).
  private let waitingConnections: [RedisConnection]
  private let indexByLoop: [ObjectIdentifier: Int]
  private let cluster: ClusterRouter?

  public init(
    configuration: RedisConfiguration, eventLoopGroup: any EventLoopGroup,
    logger: Logger = .disabled
  ) {
    self.configuration = configuration
    self.group = eventLoopGroup
    var indexByLoop: [ObjectIdentifier: Int] = [:]
    var loops: [any EventLoop] = []
    for loop in eventLoopGroup.makeIterator() {
      indexByLoop[ObjectIdentifier(loop)] = loops.count
      loops.append(loop)
    }
    self.indexByLoop = indexByLoop
    eventLoops = loops
    if configuration.isCluster {
      connections = []
      waitingConnections = []
      cluster = ClusterRouter(
        template: configuration,
        seeds: configuration.clusterSeeds.compactMap {
          if case .tcp(let host, let port) = $0 { ClusterTopology.Node(host: host, port: port) } else { nil }
        },
        group: eventLoopGroup, logger: logger)
    } else {
      connections = loops.map { RedisConnection(configuration: configuration, eventLoop: $0, logger: logger) }
      waitingConnections = loops.map { RedisConnection(configuration: configuration, eventLoop: $0, logger: logger) }
      cluster = nil
    }
  }

  public var isCluster: Bool { cluster != nil }

  /// Whether `loop` is one of the group's (a caller there is answered there, with no hop).
  public func owns(_ loop: any EventLoop) -> Bool { indexByLoop[ObjectIdentifier(loop)] != nil }

  /// The connection of `eventLoop` (or of the group's next loop when `eventLoop` is not one of
  /// the group's). One server only: a cluster has a connection per primary.
  public func connection(on eventLoop: any EventLoop) -> RedisConnection {
    connection(on: eventLoop, lane: .shared)
  }

  func connection(on eventLoop: any EventLoop, lane: Lane) -> RedisConnection {
    precondition(cluster == nil, "a cluster client has no single connection: use send or evaluate")
    if let index = indexByLoop[ObjectIdentifier(eventLoop)] {
      return lane == .shared ? connections[index] : waitingConnections[index]
    }
    return connection(on: group.next(), lane: lane)
  }

  /// Which of a loop's connections a request takes.
  enum Lane: Sendable {
    case shared
    /// Writes followed by `WAIT`, which blocks the connection until replicas confirm.
    case replicated
  }

  /// The connection of the current event loop when called on one, otherwise the next loop's.
  public var connection: RedisConnection {
    connection(on: group.any())
  }

  /// `eventLoop` when it is one of the group's (its caller is answered there, with no hop),
  /// else the current or next loop of the group.
  public func loop(_ eventLoop: (any EventLoop)?) -> any EventLoop {
    if let eventLoop, owns(eventLoop) { return eventLoop }
    return group.any()
  }

  // MARK: Commands

  /// One command, on `eventLoop`'s connection when it is one of the group's. A top-level
  /// error reply fails the future with `.serverError`.
  public func send(
    _ command: RedisCommand, on eventLoop: (any EventLoop)? = nil, timeout: TimeAmount? = nil
  ) -> EventLoopFuture<RESPValue> {
    let loop = loop(eventLoop)
    guard let cluster else { return connection(on: loop).send(command, timeout: timeout) }
    let promise = loop.makePromise(of: RESPValue.self)
    var bytes = ByteBuffer()
    command.encode(into: &bytes)
    cluster.execute(bytes, count: 1, slot: command.slot, on: loop, timeout: timeout ?? configuration.commandTimeout) {
      switch $0 {
      case .success(let replies):
        if case .error(let message) = replies[0] {
          promise.fail(RedisError(.serverError, message))
        } else {
          promise.succeed(replies[0])
        }
      case .failure(let error): promise.fail(error)
      }
    }
    return promise.futureResult
  }

  /// `commands` and their replies in order; error replies stay values. On a cluster, commands
  /// for different slots go to their own nodes (in one round trip each, all at once).
  public func send(
    pipeline commands: [RedisCommand], on eventLoop: (any EventLoop)? = nil, timeout: TimeAmount? = nil
  ) -> EventLoopFuture<[RESPValue]> {
    send(pipeline: commands, on: eventLoop, timeout: timeout, lane: .shared)
  }

  func send(
    pipeline commands: [RedisCommand], on eventLoop: (any EventLoop)?, timeout: TimeAmount?, lane: Lane
  ) -> EventLoopFuture<[RESPValue]> {
    let loop = loop(eventLoop)
    guard let cluster else { return connection(on: loop, lane: lane).send(pipeline: commands, timeout: timeout) }
    guard !commands.isEmpty else { return loop.makeSucceededFuture([]) }
    // Grouped by slot, keyless commands with the first group.
    var groups: [(slot: Int?, indices: [Int])] = []
    for (index, command) in commands.enumerated() {
      let slot = command.slot
      if let at = groups.firstIndex(where: { $0.slot == slot || slot == nil }) {
        groups[at].indices.append(index)
      } else {
        groups.append((slot, [index]))
      }
    }
    let timeout = timeout ?? configuration.commandTimeout
    let futures = groups.map { group -> EventLoopFuture<[(Int, RESPValue)]> in
      let promise = loop.makePromise(of: [(Int, RESPValue)].self)
      var bytes = ByteBuffer()
      for index in group.indices { commands[index].encode(into: &bytes) }
      cluster.execute(bytes, count: group.indices.count, slot: group.slot, on: loop, timeout: timeout, lane: lane) {
        promise.completeWith($0.map { Array(zip(group.indices, $0)) }.mapError { $0 as any Error })
      }
      return promise.futureResult
    }
    return EventLoopFuture.whenAllSucceed(futures, on: loop).map { parts in
      var replies = [RESPValue](repeating: .null, count: commands.count)
      for part in parts { for (index, reply) in part { replies[index] = reply } }
      return replies
    }
  }

  /// Sends the `count` commands that `encode` appends, all about `slot` (ignored on one
  /// server), and calls `completion` on `eventLoop` with their replies in order.
  ///
  /// The gateway's per-request path: `eventLoop` must be the current loop and one of the
  /// group's. On one server no promise, no future and no `RedisCommand` values; on a cluster
  /// the bytes are kept to be resent on a redirection, so they must be safe to send twice.
  public func send(
    count: Int, slot: Int, on eventLoop: any EventLoop, timeout: TimeAmount? = nil,
    encode: (inout ByteBuffer) -> Void, completion: @escaping (Result<[RESPValue], RedisError>) -> Void
  ) {
    guard let cluster else {
      connection(on: eventLoop).send(count: count, timeout: timeout, encode: encode, completion: completion)
      return
    }
    var bytes = ByteBuffer()
    encode(&bytes)
    cluster.execute(
      bytes, count: count, slot: slot, on: eventLoop, timeout: timeout ?? configuration.commandTimeout,
      completion: completion)
  }

  /// Runs `script` with `EVALSHA` on the node of its first key. If that node has not cached it
  /// (`NOSCRIPT`: a fresh or restarted server), `SCRIPT LOAD` and `EVALSHA` go again in one
  /// round trip. With `replicated`, `WAIT` follows in the same round trip and the call fails
  /// with `notReplicated` unless enough replicas confirmed the script's writes.
  public func evaluate(
    _ script: RedisScript, keys: [String], arguments: [String], on eventLoop: (any EventLoop)? = nil,
    timeout: TimeAmount? = nil, replicated: ReplicaWait? = nil
  ) -> EventLoopFuture<RESPValue> {
    let loop = loop(eventLoop)
    let command = script.command(keys: keys, arguments: arguments)
    // Routed with the script's slot: on a cluster, the same node as the script.
    let wait = replicated.map {
      command.withSlotOf(RedisCommand("WAIT", String($0.replicas), String(max($0.timeout.nanoseconds / 1_000_000, 1))))
    }
    let commands = [command] + (wait.map { [$0] } ?? [])
    let lane: Lane = replicated == nil ? .shared : .replicated
    return send(pipeline: commands, on: loop, timeout: timeout, lane: lane).flatMap { replies -> EventLoopFuture<[RESPValue]> in
      guard case .error(let message) = replies[0], message.hasPrefix("NOSCRIPT") else {
        return loop.makeSucceededFuture(replies)
      }
      let load = command.withSlotOf(RedisCommand("SCRIPT", "LOAD", script.source))
      return self.send(pipeline: [load] + commands, on: loop, timeout: timeout, lane: lane).flatMapThrowing {
        replies throws(RedisError) -> [RESPValue] in
        if case .error(let message) = replies[0] { throw RedisError(.serverError, message) }
        return Array(replies.dropFirst())
      }
    }.flatMapThrowing { replies throws(RedisError) -> RESPValue in
      if case .error(let message) = replies[0] { throw RedisError(.serverError, message) }
      if let replicated {
        guard let confirmed = replies[1].int, confirmed >= replicated.replicas else {
          throw RedisError(
            .notReplicated,
            "\(replies[1].int ?? 0) of \(replicated.replicas) replicas confirmed within \(replicated.timeout)")
        }
      }
      return replies[0]
    }
  }

  public func send(_ command: RedisCommand, timeout: TimeAmount? = nil) async throws -> RESPValue {
    try await send(command, on: nil, timeout: timeout).get()
  }

  public func send(pipeline commands: [RedisCommand], timeout: TimeAmount? = nil) async throws -> [RESPValue] {
    try await send(pipeline: commands, on: nil, timeout: timeout).get()
  }

  public func evaluate(
    _ script: RedisScript, keys: [String], arguments: [String], timeout: TimeAmount? = nil
  ) async throws -> RESPValue {
    try await evaluate(script, keys: keys, arguments: arguments, on: nil, timeout: timeout).get()
  }

  /// Closes every connection.
  public func close() async {
    for connection in connections + waitingConnections { await connection.close() }
    await cluster?.close()
  }
}

extension RedisCommand {
  /// `other`, marked to be routed with this command's slot (a keyless command that must go to
  /// the same node, as `SCRIPT LOAD` before the `EVALSHA` it is for).
  func withSlotOf(_ other: RedisCommand) -> RedisCommand {
    var routed = other
    routed.routingSlot = slot
    return routed
  }
}

extension Logger {
  /// The default of every Foyer library type: like other server libraries (AsyncHTTPClient,
  /// postgres-nio), a library logs only through a logger its owner passes in.
  public static let disabled = Logger(label: "foyer.disabled", factory: { _ in SwiftLogNoOpLogHandler() })
}

/// Writes confirmed by replicas before they are acknowledged (`WAIT replicas timeout`): with
/// asynchronous replication a failover loses what the promoted replica had not received.
public struct ReplicaWait: Sendable, Hashable {
  public var replicas: Int
  public var timeout: TimeAmount

  public init(replicas: Int, timeout: TimeAmount) {
    self.replicas = replicas
    self.timeout = timeout
  }
}
