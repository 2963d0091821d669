import ArgumentParser
import Foundation
import NIOCore
import NIOPosix
import RedisNIO

/// Pipelined `ZRANK` throughput through RedisNIO, shaped like `redis-benchmark -c C -P P`:
/// C connections, each with batches of P commands in flight, the next batch sent when the
/// previous one is answered.
struct RedisBench: AsyncParsableCommand {
  static let configuration = CommandConfiguration(
    commandName: "redis", abstract: "ZRANK throughput through RedisNIO.")

  @Option(help: "Redis URL.") var url: String
  @Option(help: "Sorted set to query.") var key = "bench:z"
  @Option(help: "Members are 12-digit numbers below this (as redis-benchmark's __rand_int__).") var members =
    1_000_000
  @Option(help: "Connections.") var connections = 50
  @Option(help: "Commands per pipelined batch.") var pipeline = 16
  @Option(help: "Total commands.") var requests = 2_000_000
  @Option(help: "Event-loop threads (redis-benchmark uses 1).") var threads = 1

  func run() async throws {
    let group = MultiThreadedEventLoopGroup(numberOfThreads: threads)
    let configuration = try RedisConfiguration(url: url)
    let links = (0..<connections).map { _ in
      RedisConnection(configuration: configuration, eventLoop: group.next())
    }
    // Batches of random members, built once: like redis-benchmark, the driver should not
    // spend its time formatting numbers.
    let batches: [[RedisCommand]] = (0..<256).map { _ in
      (0..<pipeline).map { _ in
        RedisCommand("ZRANK", key, String(format: "%012d", Int.random(in: 0..<members)))
      }
    }
    for link in links { _ = try await link.send(RedisCommand("PING")) }

    let perConnection = requests / connections / pipeline
    let start = ContinuousClock.now
    try await withThrowingTaskGroup(of: Int.self) { tasks in
      for (index, link) in links.enumerated() {
        tasks.addTask {
          try await Self.drive(link, batches: batches, rounds: perConnection, offset: index).get()
        }
      }
      var total = 0
      for try await done in tasks { total += done }
      let elapsed = ContinuousClock.now - start
      let seconds = Double(elapsed.components.seconds) + Double(elapsed.components.attoseconds) / 1e18
      print(
        String(
          format: "redisnio ZRANK: %.0f requests per second (%d commands, %.2f s)", Double(total) / seconds,
          total, seconds))
    }
    for link in links { await link.close() }
    try await group.shutdownGracefully()
  }

  /// Runs `rounds` batches back to back on the connection's own event loop (no thread hops).
  static func drive(
    _ link: RedisConnection, batches: [[RedisCommand]], rounds: Int, offset: Int
  ) -> EventLoopFuture<Int> {
    let promise = link.eventLoop.makePromise(of: Int.self)
    link.eventLoop.execute {
      BatchDriver(link: link, batches: batches, rounds: rounds, offset: offset, promise: promise).next()
    }
    return promise.futureResult
  }
}

/// Keeps one batch in flight on one connection; lives on that connection's event loop.
final class BatchDriver {
  let link: RedisConnection
  let batches: [[RedisCommand]]
  let rounds: Int
  let offset: Int
  let promise: EventLoopPromise<Int>
  var round = 0
  var completed = 0

  init(
    link: RedisConnection, batches: [[RedisCommand]], rounds: Int, offset: Int, promise: EventLoopPromise<Int>
  ) {
    self.link = link
    self.batches = batches
    self.rounds = rounds
    self.offset = offset
    self.promise = promise
  }

  func next() {
    guard round < rounds else { return promise.succeed(completed) }
    let batch = batches[(round + offset) & 255]
    round += 1
    link.send(pipeline: batch).assumeIsolated().whenComplete { result in
      switch result {
      case .success(let replies):
        // Every reply must be a rank: an error or nil would mean the benchmark measures nothing.
        for reply in replies {
          guard case .integer = reply else {
            return self.promise.fail(RedisError(.unexpectedReply, "ZRANK answered \(reply)"))
          }
        }
        self.completed += replies.count
        self.next()
      case .failure(let error):
        self.promise.fail(error)
      }
    }
  }
}
