import Foundation
import FoyerTestSupport
import NIOCore
import NIOPosix
import Testing

@testable import RedisNIO

/// The cluster client against a real Redis Cluster (six nodes, three primaries).
@Suite(.timeLimit(.minutes(3))) struct RedisClusterTests {
  let group = MultiThreadedEventLoopGroup.singleton

  func client(_ url: String) throws -> RedisClient {
    var configuration = try RedisConfiguration(url: url)
    configuration.commandTimeout = .seconds(10)
    return RedisClient(configuration: configuration, eventLoopGroup: group)
  }

  func cli(_ port: Int, _ arguments: String...) throws -> String {
    let result = try runToEnd(findExecutable("redis-cli")!, ["-p", String(port)] + arguments)
    guard result.status == 0 else { throw TestServiceError("redis-cli \(arguments): \(result.output)") }
    return result.output.trimmingCharacters(in: .whitespacesAndNewlines)
  }

  @Test func commandsPipelinesAndScriptsReachEveryPrimary() async throws {
    let redis = try client(try await RedisCluster.sharedURL())
    defer { Task { await redis.close() } }
    let run = UUID().uuidString.prefix(8)
    // 300 keys on 300 hash tags: every primary gets some.
    let keys = (0..<300).map { "cluster-test:{\(run)-\($0)}:k" }
    for key in keys { #expect(try await redis.send(RedisCommand("SET", key, key)) == .simpleString("OK")) }
    #expect(Set(keys.map { HashSlot.of($0) / 5_462 }).count == 3)
    for key in keys.prefix(20) { #expect(try await redis.send(RedisCommand("GET", key)).string == key) }
    // One pipeline over every slot: split per node, the replies put back in order.
    let replies = try await redis.send(pipeline: keys.map { RedisCommand("GET", $0) } + [RedisCommand("PING")])
    #expect(replies.dropLast().map(\.string) == keys.map(Optional.some))
    #expect(replies.last == .simpleString("PONG"))
    // A script new to every node: each loads it on NOSCRIPT.
    let script = RedisScript("return {KEYS[1], ARGV[1], '\(run)'}")
    for key in [keys[0], keys[1], keys[2], keys[150], keys[299]] {
      let reply = try await redis.evaluate(script, keys: [key], arguments: ["a"])
      #expect(reply.array?.map(\.string) == [key, "a", String(run)])
    }
    // A wrong command is an error reply, not a retry.
    await #expect(throws: RedisError.self) { try await redis.send(RedisCommand("INCR", keys[0])) }
  }

  @Test func aSlotMovedBetweenPrimariesUnderLoadLosesNothing() async throws {
    let cluster = try await RedisCluster.start()
    defer { Task { await cluster.stop() } }
    let redis = try client(cluster.url)
    defer { Task { await redis.close() } }
    let tag = "mig"
    let slot = HashSlot.of(tag)
    let keys = (0..<40).map { "{\(tag)}:counter:\($0)" }
    _ = try await redis.send(RedisCommand("SET", keys[0], "0"))  // the map is read
    let source = try cluster.primary(forSlot: slot)
    let primaries = try cluster.nodes.filter { node in
      try cli(node.port, "role").hasPrefix("master")
    }
    let target = try #require(primaries.first { $0.port != source.port })
    let (sourceID, targetID) = (try cluster.id(of: source), try cluster.id(of: target))

    // Writers increment the counters throughout; each success is counted.
    let stop = LockedValue(false)
    let writers = (0..<4).map { writer in
      Task { () -> (done: [Int], failures: [String]) in
        var done = [Int](repeating: 0, count: keys.count)
        var failures: [String] = []
        var index = writer
        while !stop.value {
          let key = index % keys.count
          do {
            _ = try await redis.send(RedisCommand("INCR", keys[key]))
            done[key] += 1
          } catch {
            failures.append("\(error)")
          }
          index += 1
        }
        return (done, failures)
      }
    }
    try await Task.sleep(for: .milliseconds(300))
    // The migration, as redis-cli --cluster reshard does it, key by key.
    _ = try cli(target.port, "cluster", "setslot", String(slot), "importing", sourceID)
    _ = try cli(source.port, "cluster", "setslot", String(slot), "migrating", targetID)
    while true {
      let batch = try cli(source.port, "cluster", "getkeysinslot", String(slot), "5")
        .split(separator: "\n").map(String.init).filter { !$0.isEmpty }
      if batch.isEmpty { break }
      _ = try runToEnd(
        findExecutable("redis-cli")!,
        ["-p", String(source.port), "migrate", "127.0.0.1", String(target.port), "", "0", "5000", "keys"] + batch)
      try await Task.sleep(for: .milliseconds(50))
    }
    for node in primaries { _ = try cli(node.port, "cluster", "setslot", String(slot), "node", targetID) }
    try await Task.sleep(for: .milliseconds(500))
    stop.withLock { $0 = true }
    var done = [Int](repeating: 0, count: keys.count)
    var failures: [String] = []
    for writer in writers {
      let result = await writer.value
      for index in done.indices { done[index] += result.done[index] }
      failures += result.failures
    }
    #expect(failures.isEmpty, "\(failures.prefix(5))")
    #expect(done.reduce(0, +) > 20)
    // Every acknowledged increment is there, on the new owner.
    #expect(try cluster.primary(forSlot: slot).port == target.port)
    let values = try await redis.send(pipeline: keys.map { RedisCommand("GET", $0) })
    #expect(values.map { $0.int ?? 0 } == done)
  }
}
