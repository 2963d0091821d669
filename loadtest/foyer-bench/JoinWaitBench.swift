import ArgumentParser
import Foundation
import FoyerCore
import NIOCore
import NIOPosix
import RedisNIO
import WaitingRoom

/// What replica waits cost a join (loadtest/bench-durability): joins through `RoomStore` with
/// `ReplicaWait` off and on, alternating rounds, each join timed, with visitors polling the
/// same room meanwhile; prints joins per second and the latency percentiles of joins and polls.
struct JoinWaitBench: AsyncParsableCommand {
  static let configuration = CommandConfiguration(
    commandName: "join-waits", abstract: "Join latency with and without replica waits.")

  @Option(help: "Redis URL (a cluster, or a server with replicas).") var url: String
  @Option(help: "Joins per round and setting.") var joins = 20_000
  @Option(help: "Joins in flight at once.") var concurrency = 16
  @Option(help: "Rounds (each runs both settings).") var rounds = 3
  @Option(help: "Replicas to wait for when on.") var replicas = 1
  @Option(help: "The wait's timeout, ms.") var waitMilliseconds = 100
  @Option(help: "Visitors polling their place while the joins run.") var pollers = 4

  func run() async throws {
    let group = MultiThreadedEventLoopGroup(numberOfThreads: 1)
    let redis = RedisClient(configuration: try RedisConfiguration(url: url), eventLoopGroup: group)
    let wait = ReplicaWait(replicas: replicas, timeout: .milliseconds(Int64(waitMilliseconds)))
    var results: [String: [(rate: Double, p50: Double, p99: Double, poll50: Double, poll99: Double)]] = [:]
    for round in 1...rounds {
      for (name, replicaWait) in [("off", nil), ("on", wait)] as [(String, ReplicaWait?)] {
        let store = RoomStore(redis: redis, replicaWait: replicaWait)
        let room = "joinwait-\(round)-\(name)"
        try? await store.deleteRoom(room)
        try await store.createRoom(room, settings: RoomSettings(state: .paused, maxPlacesPerClient: 0))
        let timings = Timings()
        let polls = Timings()
        var polling: [VisitorID] = []
        for _ in 0..<pollers {
          polling.append(.random())
          _ = try await store.join(room: room, visitor: polling[polling.count - 1])
        }
        let joined = Flag()
        let start = ContinuousClock.now
        try await withThrowingTaskGroup(of: Void.self) { tasks in
          for visitor in polling {
            tasks.addTask {
              while !joined.isSet {
                let begin = ContinuousClock.now
                _ = try await store.status(room: room, visitor: visitor)
                polls.add(ContinuousClock.now - begin)
              }
            }
          }
          let perTask = joins / concurrency
          for _ in 0..<concurrency {
            tasks.addTask {
              for _ in 0..<perTask {
                let begin = ContinuousClock.now
                _ = try await store.join(room: room, visitor: .random())
                timings.add(ContinuousClock.now - begin)
              }
            }
          }
          for _ in 0..<concurrency { try await tasks.next() }
          joined.set()
          try await tasks.waitForAll()
        }
        let elapsed = ContinuousClock.now - start
        let seconds = Double(elapsed.components.seconds) + Double(elapsed.components.attoseconds) / 1e18
        let sorted = timings.all.sorted()
        let polled = polls.all.sorted()
        func percentile(_ values: [Double], _ share: Int) -> Double {
          values.isEmpty ? .nan : values[min(values.count - 1, values.count * share / 100)]
        }
        let result = (
          Double(sorted.count) / seconds, percentile(sorted, 50), percentile(sorted, 99), percentile(polled, 50),
          percentile(polled, 99)
        )
        results[name, default: []].append(result)
        print(
          String(
            format: "round %d, replica waits %@: %8.0f joins/s   p50 %6.2f ms   p99 %6.2f ms   polls meanwhile p50 %6.2f ms   p99 %6.2f ms",
            round, name as NSString, result.0, result.1, result.2, result.3, result.4))
        try? await store.deleteRoom(room)
      }
    }
    func median(_ values: [Double]) -> Double { values.sorted()[values.count / 2] }
    print("\nmedians of \(rounds) rounds, \(joins) joins each, \(concurrency) in flight:")
    for name in ["off", "on"] {
      let rows = results[name] ?? []
      print(
        String(
          format: "  replica waits %@  %8.0f joins/s   p50 %6.2f ms   p99 %6.2f ms   polls p50 %6.2f ms   p99 %6.2f ms",
          name.padding(toLength: 3, withPad: " ", startingAt: 0) as NSString,
          median(rows.map(\.rate)), median(rows.map(\.p50)), median(rows.map(\.p99)), median(rows.map(\.poll50)),
          median(rows.map(\.poll99))))
    }
    if let off = results["off"], let on = results["on"] {
      print(
        String(
          format: "  with waits / without: joins/s %.2f, p50 %.2f, p99 %.2f", median(on.map(\.rate)) / median(off.map(\.rate)),
          median(on.map(\.p50)) / median(off.map(\.p50)), median(on.map(\.p99)) / median(off.map(\.p99))))
      print(
        String(
          format: "  polls meanwhile, with waits / without: p50 %.2f, p99 %.2f", median(on.map(\.poll50)) / median(off.map(\.poll50)),
          median(on.map(\.poll99)) / median(off.map(\.poll99))))
    }
    await redis.close()
    try await group.shutdownGracefully()
  }

  final class Flag: @unchecked Sendable {
    private let lock = NSLock()
    private var value = false
    func set() { lock.withLock { value = true } }
    var isSet: Bool { lock.withLock { value } }
  }

  final class Timings: @unchecked Sendable {
    private let lock = NSLock()
    private var values: [Double] = []
    func add(_ duration: Duration) {
      let ms = Double(duration.components.seconds) * 1_000 + Double(duration.components.attoseconds) / 1e15
      lock.withLock { values.append(ms) }
    }
    var all: [Double] { lock.withLock { values } }
  }
}
