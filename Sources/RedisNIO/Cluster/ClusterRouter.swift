internal import Logging
internal import NIOCore
internal import NIOConcurrencyHelpers

/// Runs requests on a Redis Cluster: the slot map (from `CLUSTER SHARDS`, else
/// `CLUSTER SLOTS`), a `RedisClient` per primary (one connection per event loop, as for a
/// single server), and each request's `ClusterRequestState` steps: `MOVED` updates the map
/// and resends, `ASK` resends once after `ASKING`, the rest pause, refresh and retry until the
/// deadline. The map is also refreshed every `refreshInterval`.
///
/// A request is encoded once; a redirected request is resent whole, so what is sent as one
/// request must be safe to send twice (reads, or writes that are idempotent): Foyer's are
/// its status reads, and single commands and scripts, which Redis either ran or redirected.
final class ClusterRouter: Sendable {
  let template: RedisConfiguration
  let seeds: [ClusterTopology.Node]
  let group: any EventLoopGroup
  let logger: Logger
  let refreshInterval: TimeAmount
  private let state = NIOLockedValueBox(State())

  struct State {
    var topology = ClusterTopology()
    var clients: [ClusterTopology.Node: RedisClient] = [:]
    /// The refresh running now, which later callers join.
    var refreshing: EventLoopFuture<Void>?
    var lastRefresh = NIODeadline.uptimeNanoseconds(0)
    var periodic: RepeatedTask?
  }

  init(
    template: RedisConfiguration, seeds: [ClusterTopology.Node], group: any EventLoopGroup, logger: Logger,
    refreshInterval: TimeAmount = .seconds(10)
  ) {
    self.template = template
    self.seeds = seeds
    self.group = group
    self.logger = logger
    self.refreshInterval = refreshInterval
    let task = group.next().scheduleRepeatedTask(initialDelay: refreshInterval, delay: refreshInterval) {
      [weak self] _ in _ = self?.refresh(on: nil, force: true)
    }
    state.withLockedValue { $0.periodic = task }
  }

  var topology: ClusterTopology { state.withLockedValue { $0.topology } }

  /// The client of `node`, made on first use.
  func client(_ node: ClusterTopology.Node) -> RedisClient {
    state.withLockedValue { state in
      if let client = state.clients[node] { return client }
      var configuration = template
      configuration.endpoint = .tcp(host: node.host, port: node.port)
      configuration.clusterSeeds = []
      let client = RedisClient(configuration: configuration, eventLoopGroup: group, logger: logger)
      state.clients[node] = client
      return client
    }
  }

  // MARK: The slot map

  /// Reads the map from the first node that answers (known primaries, then the seeds).
  /// Concurrent callers share one refresh; unless `force`d, one ran in the last 100 ms is enough.
  func refresh(on loop: (any EventLoop)?, force: Bool = false) -> EventLoopFuture<Void> {
    let loop = loop ?? group.next()
    enum Start {
      case join(EventLoopFuture<Void>)
      case run(EventLoopPromise<Void>, [ClusterTopology.Node])
    }
    let start = state.withLockedValue { state -> Start in
      if let running = state.refreshing { return .join(running) }
      if !force, state.topology.isComplete, NIODeadline.now() - state.lastRefresh < .milliseconds(100) {
        return .join(loop.makeSucceededVoidFuture())
      }
      var candidates = state.topology.nodes
      for seed in seeds where !candidates.contains(seed) { candidates.append(seed) }
      let promise = loop.makePromise(of: Void.self)
      state.refreshing = promise.futureResult
      return .run(promise, candidates)
    }
    switch start {
    case .join(let running):
      return running.hop(to: loop)
    case .run(let promise, let candidates):
      // Asked outside the lock: making a node's client takes it.
      ask(candidates[...], on: loop).whenComplete { result in
        self.state.withLockedValue { state in
          if case .success(let topology) = result {
            state.topology = topology
            state.lastRefresh = .now()
          }
          state.refreshing = nil
        }
        promise.completeWith(result.map { _ in () })
      }
      return promise.futureResult
    }
  }

  private func ask(_ candidates: ArraySlice<ClusterTopology.Node>, on loop: any EventLoop) -> EventLoopFuture<ClusterTopology> {
    guard let node = candidates.first else {
      return loop.makeFailedFuture(RedisError(.connectionFailed, "no cluster node answered with a complete slot map"))
    }
    let connection = client(node).connection(on: loop)
    let timeout = template.commandTimeout
    return connection.send(RedisCommand("CLUSTER", "SHARDS"), timeout: timeout)
      .flatMapThrowing { try ClusterTopology(shards: $0, replyHost: node.host) }
      .flatMapError { error in
        // Before Redis 7: CLUSTER SLOTS.
        connection.send(RedisCommand("CLUSTER", "SLOTS"), timeout: timeout)
          .flatMapThrowing { try ClusterTopology(slots: $0, replyHost: node.host) }
      }
      .flatMapThrowing { topology throws(RedisError) -> ClusterTopology in
        guard topology.isComplete else { throw RedisError(.unexpectedReply, "\(node) reports slots nobody serves") }
        return topology
      }
      .flatMapError { error in
        self.logger.debug("cluster map not read", metadata: ["node": "\(node)", "error": "\(error)"])
        return self.ask(candidates.dropFirst(), on: loop)
      }
  }

  // MARK: Requests

  /// Sends the `count` commands encoded in `bytes`, all for `slot` (`nil`: any node), on
  /// `loop`'s connections; `completion` runs on `loop` with their replies.
  func execute(
    _ bytes: ByteBuffer, count: Int, slot: Int?, on loop: any EventLoop, timeout: TimeAmount,
    lane: RedisClient.Lane = .shared, completion: @escaping (Result<[RESPValue], RedisError>) -> Void
  ) {
    let request = ClusterRequestState(slot: slot, deadline: .now() + timeout, lane: lane)
    if loop.inEventLoop {
      step(request, bytes, count, loop, completion)
    } else {
      loop.execute { self.step(request, bytes, count, loop, completion) }
    }
  }

  private func step(
    _ request: ClusterRequestState, _ bytes: ByteBuffer, _ count: Int, _ loop: any EventLoop,
    _ completion: @escaping (Result<[RESPValue], RedisError>) -> Void
  ) {
    let topology = self.topology
    let node =
      request.asking ?? (request.slot.flatMap(topology.node(forSlot:)) ?? (request.slot == nil ? topology.nodes.first : nil))
    guard let node else {
      // No map yet (or the slot is unserved): read it, then go on.
      refresh(on: loop).hop(to: loop).assumeIsolated().whenComplete { result in
        var request = request
        switch result {
        case .success where self.topology.node(forSlot: request.slot ?? 0) != nil:
          self.step(request, bytes, count, loop, completion)
        case .success:
          self.proceed(&request, .retry(RedisError(.connectionFailed, "no node serves the slot")), bytes, count, loop, completion)
        case .failure(let error):
          self.proceed(&request, .retry(error as? RedisError ?? RedisError(.connectionFailed, "\(error)")), bytes, count, loop, completion)
        }
      }
      return
    }
    let connection = client(node).connection(on: loop, lane: request.lane)
    let asking = request.asking != nil
    let remaining = max(request.deadline - .now(), .milliseconds(1))
    let send = {
      connection.send(count: count + (asking ? 1 : 0), timeout: remaining) { buffer in
        if asking { RedisCommand("ASKING").encode(into: &buffer) }
        buffer.writeImmutableBuffer(bytes)
      } completion: { result in
        var request = request
        let decision = ClusterReplyDecision.decide(result, askingSent: asking)
        if case .moved(let slot, let target) = decision {
          let target = target.host.isEmpty ? ClusterTopology.Node(host: node.host, port: target.port) : target
          self.state.withLockedValue { $0.topology.assign(slot: slot, to: target) }
          _ = self.refresh(on: connection.eventLoop)
        }
        self.proceed(&request, decision, bytes, count, connection.eventLoop, completion, from: node)
      }
    }
    if connection.eventLoop.inEventLoop { send() } else { connection.eventLoop.execute(send) }
  }

  private func proceed(
    _ request: inout ClusterRequestState, _ decision: ClusterReplyDecision, _ bytes: ByteBuffer, _ count: Int,
    _ loop: any EventLoop, _ completion: @escaping (Result<[RESPValue], RedisError>) -> Void,
    from node: ClusterTopology.Node? = nil
  ) {
    var decision = decision
    if case .ask(let target) = decision, target.host.isEmpty, let node {
      decision = .ask(node: ClusterTopology.Node(host: node.host, port: target.port))
    }
    switch request.next(decision, now: .now()) {
    case .finish(let replies): completion(.success(replies))
    case .fail(let error): completion(.failure(error))
    case .send: step(request, bytes, count, loop, completion)
    case .pause(let pause):
      _ = refresh(on: loop, force: true)
      let request = request
      loop.scheduleTask(in: pause) { self.step(request, bytes, count, loop, completion) }
    }
  }

  func close() async {
    let clients = state.withLockedValue { state -> [RedisClient] in
      state.periodic?.cancel()
      return Array(state.clients.values)
    }
    for client in clients { await client.close() }
  }
}
