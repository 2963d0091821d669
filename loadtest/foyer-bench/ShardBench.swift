import ArgumentParser
import Foundation
import FoyerCore
import NIOCore
import NIOPosix
import RedisNIO
import WaitingRoom

/// One room with its queue in one sorted set and one split over shards, on the same Redis
/// Cluster, alternating rounds: joins/s, memory per waiting visitor over every primary, and
/// admission ticks of 1,000 timed from the caller (a sharded tick is several round trips).
struct ShardBench: AsyncParsableCommand {
  static let configuration = CommandConfiguration(
    commandName: "shards", abstract: "A room over one queue and over K shards, side by side.")

  @Option(help: "Redis Cluster URL (redis-cluster://…).") var url: String
  @Option(help: "Waiting visitors per room.") var visitors = 500_000
  @Option(help: "Shards of the sharded room.") var shards = 3
  @Option(help: "Joins in flight at once.") var concurrency = 256
  @Option(help: "Event-loop threads.") var threads = 2
  @Option(help: "Admission ticks of 1,000 to time per room.") var ticks = 20
  @Option(help: "Rounds (each fills one room of each kind).") var rounds = 2

  struct Figures {
    var joins: [Double] = []
    var bytes: [Double] = []
    var ticks: [Double] = []
    var busiest: [Double] = []
  }

  func run() async throws {
    let group = MultiThreadedEventLoopGroup(numberOfThreads: threads)
    let redis = RedisClient(configuration: try RedisConfiguration(url: url), eventLoopGroup: group)
    let store = RoomStore(redis: redis)
    let topology = try ClusterTopology(
      slots: try await redis.send(RedisCommand("CLUSTER", "SLOTS")), replyHost: "127.0.0.1")
    let nodes = try topology.nodes.map {
      RedisClient(
        configuration: try RedisConfiguration(url: "redis://\($0.host):\($0.port)"), eventLoopGroup: group)
    }
    var figures = [1: Figures(), shards: Figures()]
    for round in 1...rounds {
      for count in [1, shards] {
        let room = "shardbench-\(round)-\(count)"
        // The last room is freed in the background (`UNLINK`): measure from after it is gone.
        while try await pendingFrees(nodes) > 0 { try await Task.sleep(for: .milliseconds(200)) }
        let before = try await usedMemory(nodes)
        // Nobody polls while the room fills for minutes: none may count as abandoned.
        var settings = RoomSettings(
          state: .paused, ratePerMinute: 6_000_000, maxActive: 10_000_000,
          abandonSeconds: RoomSettings.maximumAbandonSeconds, maxPlacesPerClient: 0)
        settings.shards = count
        try? await store.deleteRoom(room)
        try await store.createRoom(room, settings: settings)
        // New visitors, as an on-sale crowd arrives: ids made for this request.
        let client = JoiningClient(key: "bench", newVisitor: true, newVisitorsPerMinute: 0)
        let cpuBefore = try await cpuSeconds(nodes)
        let joinRate = try await ClosedLoop.run(group: group, total: visitors, concurrency: concurrency) {
          _, loop in
          store.join(room: room, visitor: .random(), client: client, on: loop).map { _ in }
        }
        let cpuAfter = try await cpuSeconds(nodes)
        // The busiest primary's CPU per join: what bounds joins once gateways are many.
        let busiest = zip(cpuAfter, cpuBefore).map { $0 - $1 }.max()! / Double(visitors) * 1e6
        let waiting = try await store.stats(room).waiting
        let bytes = Double(try await usedMemory(nodes) - before) / Double(max(waiting, 1))
        try await store.update(room, changes: ["state": "queue"])
        var durations: [Double] = []
        for _ in 0..<ticks {
          try await Task.sleep(for: .milliseconds(20))  // refills the bucket (100,000/s)
          let start = ContinuousClock.now
          let tick = try await store.admit(room: room, batch: 1_000)
          let elapsed = ContinuousClock.now - start
          if tick.admitted.count == 1_000 {
            durations.append(
              Double(elapsed.components.attoseconds) / 1e15 + Double(elapsed.components.seconds) * 1e3)
          }
        }
        durations.sort()
        let median = durations.isEmpty ? .nan : durations[durations.count / 2]
        print(
          String(
            format:
              "round %d, %d shard%@: %.0f joins/s (busiest primary %.2f us CPU a join), %.1f bytes per waiting visitor (%d waiting), tick of 1,000 median %.2f ms (max %.2f, %d ticks)",
            round, count, count == 1 ? "" : "s", joinRate, busiest, bytes, waiting, median,
            durations.last ?? .nan,
            durations.count))
        figures[count]!.busiest.append(busiest)
        figures[count]!.joins.append(joinRate)
        figures[count]!.bytes.append(bytes)
        figures[count]!.ticks.append(median)
        try await store.deleteRoom(room)
      }
    }
    func median(_ values: [Double]) -> Double { values.sorted()[values.count / 2] }
    let one = figures[1]!
    let many = figures[shards]!
    print("\nmedians of \(rounds) rounds, \(visitors) visitors a room, \(topology.nodes.count) primaries:")
    print(
      String(
        format: "  joins/s          1 queue %8.0f   %d shards %8.0f   ratio %.2f", median(one.joins), shards,
        median(many.joins), median(many.joins) / median(one.joins)))
    print(
      String(
        format: "  busiest primary  1 queue %6.2f us   %d shards %6.2f us CPU a join   ratio %.2f",
        median(one.busiest),
        shards, median(many.busiest), median(one.busiest) / median(many.busiest)))
    print(
      String(
        format: "  bytes/visitor    1 queue %8.1f   %d shards %8.1f", median(one.bytes), shards,
        median(many.bytes)))
    print(
      String(
        format: "  tick of 1,000    1 queue %6.2f ms   %d shards %6.2f ms (target <= 10 ms)",
        median(one.ticks), shards, median(many.ticks)))
    for node in nodes { await node.close() }
    await redis.close()
    try await group.shutdownGracefully()
  }

  /// Each node's sum of the `fields` of INFO `section`.
  func info(_ nodes: [RedisClient], _ section: String, _ fields: String...) async throws -> [Double] {
    var values: [Double] = []
    for node in nodes {
      let info = try await node.send(RedisCommand("INFO", section)).string ?? ""
      var total = 0.0
      for line in info.split(whereSeparator: \.isNewline) {
        let parts = line.split(separator: ":", maxSplits: 1)
        guard parts.count == 2, fields.contains(String(parts[0])) else { continue }
        total += Double(parts[1].trimmingCharacters(in: .whitespaces)) ?? 0
      }
      values.append(total)
    }
    return values
  }

  /// Each node's used_cpu_sys + used_cpu_user, seconds.
  func cpuSeconds(_ nodes: [RedisClient]) async throws -> [Double] {
    try await info(nodes, "cpu", "used_cpu_sys", "used_cpu_user")
  }

  func pendingFrees(_ nodes: [RedisClient]) async throws -> Int {
    Int(try await info(nodes, "memory", "lazyfree_pending_objects").reduce(0, +))
  }

  func usedMemory(_ nodes: [RedisClient]) async throws -> Int {
    Int(try await info(nodes, "memory", "used_memory").reduce(0, +))
  }
}
