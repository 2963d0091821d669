import ArgumentParser
import Foundation
import NIOCore
import NIOPosix
import RedisNIO

/// Pipelined `GET` throughput through RedisNIO's cluster client, shaped like
/// `redis-benchmark --cluster -t get -c C -P P`: C drivers, each keeping a batch of P `GET`s of
/// one primary's keys in flight (as redis-benchmark's clients are each bound to a node), the
/// keys' hash tags spread over every primary. Every request goes through the cluster router.
struct ClusterBench: AsyncParsableCommand {
  static let configuration = CommandConfiguration(
    commandName: "redis-cluster", abstract: "GET throughput through RedisNIO's cluster client.")

  @Option(help: "redis-cluster:// URL.") var url: String
  @Option(help: "Drivers (redis-benchmark's connections).") var connections = 50
  @Option(help: "Commands per pipelined batch.") var pipeline = 16
  @Option(help: "Total commands.") var requests = 2_000_000

  func run() async throws {
    let group = MultiThreadedEventLoopGroup(numberOfThreads: 1)  // redis-benchmark uses one thread
    let client = RedisClient(configuration: try RedisConfiguration(url: url), eventLoopGroup: group)
    // One hash tag per third of the slots: one per primary as redis-cli --cluster create splits them.
    var tags: [String] = []
    var third = 0
    var candidate = 0
    while tags.count < 3 {
      let tag = "t\(candidate)"
      if HashSlot.of("{\(tag)}") * 3 / HashSlot.count == third {
        tags.append(tag)
        third += 1
      }
      candidate += 1
    }
    for tag in tags { _ = try await client.send(RedisCommand("SET", "key:{\(tag)}:000000000001", "x")) }
    let loop = group.next()
    let perDriver = requests / connections / pipeline
    let start = ContinuousClock.now
    let total = try await withThrowingTaskGroup(of: Int.self) { tasks in
      // Batches of random keys, encoded once per tag: the driver should not spend its time
      // formatting (redis-benchmark randomises in its buffers).
      let encoded = tags.map { tag in
        (0..<256).map { _ -> ByteBuffer in
          var buffer = ByteBuffer()
          for _ in 0..<pipeline {
            RedisCommand("GET", "key:{\(tag)}:" + String(format: "%012d", Int.random(in: 0..<1_000_000))).encode(into: &buffer)
          }
          return buffer
        }
      }
      for index in 0..<connections {
        let tag = tags[index % tags.count]
        let batches = encoded[index % tags.count]
        let promise = loop.makePromise(of: Int.self)
        loop.execute {
          ClusterDriver(
            client: client, loop: loop, batches: batches, slot: HashSlot.of("{\(tag)}"), pipeline: pipeline,
            rounds: perDriver, offset: index, promise: promise
          ).next()
        }
        tasks.addTask { try await promise.futureResult.get() }
      }
      return try await tasks.reduce(0, +)
    }
    let elapsed = ContinuousClock.now - start
    let seconds = Double(elapsed.components.seconds) + Double(elapsed.components.attoseconds) / 1e18
    print(String(format: "redisnio cluster GET: %.0f requests per second (%d commands, %.2f s)", Double(total) / seconds, total, seconds))
    await client.close()
    try await group.shutdownGracefully()
  }
}

/// One batch in flight through the cluster client, on its event loop.
final class ClusterDriver {
  let client: RedisClient
  let loop: any EventLoop
  let batches: [ByteBuffer]
  let offset: Int
  let slot: Int
  let pipeline: Int
  let rounds: Int
  let promise: EventLoopPromise<Int>
  var round = 0
  var completed = 0

  init(
    client: RedisClient, loop: any EventLoop, batches: [ByteBuffer], slot: Int, pipeline: Int, rounds: Int,
    offset: Int, promise: EventLoopPromise<Int>
  ) {
    self.client = client
    self.loop = loop
    self.batches = batches
    self.offset = offset
    self.slot = slot
    self.pipeline = pipeline
    self.rounds = rounds
    self.promise = promise
  }

  func next() {
    guard round < rounds else { return promise.succeed(completed) }
    let batch = batches[(round + offset) & 255]
    round += 1
    client.send(count: pipeline, slot: slot, on: loop) { buffer in
      buffer.writeImmutableBuffer(batch)
    } completion: { result in
      switch result {
      case .success(let replies):
        // A redirection the router did not follow would be an error reply here.
        for reply in replies {
          if case .error(let message) = reply {
            return self.promise.fail(RedisError(.serverError, message))
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
