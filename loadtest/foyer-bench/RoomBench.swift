import ArgumentParser
import Foundation
import FoyerCore
import NIOCore
import NIOPosix
import RedisNIO
import WaitingRoom

/// Fills a room with waiting visitors through the store and measures memory, joins/s,
/// status polls/s and the duration of admission ticks (loadtest/bench-room prints these
/// beside redis-benchmark).
struct RoomBench: AsyncParsableCommand {
  static let configuration = CommandConfiguration(
    commandName: "room", abstract: "Waiting-room store throughput and memory.")

  @Option(help: "Redis URL (a server of its own: the bench resets its slow log).") var url: String
  @Option(help: "Waiting visitors to fill the room with.") var visitors = 1_000_000
  @Option(help: "Status polls to time.") var polls = 500_000
  @Option(help: "Requests in flight at once.") var concurrency = 512
  @Option(help: "Event-loop threads.") var threads = 1
  @Option(help: "Admission ticks of 1,000 to time.") var ticks = 20
  @Option(help: "Random visitors whose sketched position is checked against ZRANK (0: none).") var sketchChecks = 0
  @Flag(help: "Keep the room (for a baseline on the same queue).") var keep = false
  @Flag(help: "Use the room a previous --keep run filled.") var skipFill = false

  func run() async throws {
    let group = MultiThreadedEventLoopGroup(numberOfThreads: threads)
    let redis = RedisClient(configuration: try RedisConfiguration(url: url), eventLoopGroup: group)
    let store = RoomStore(redis: redis)
    let room = "bench"
    // Ids whose text is "benchmark" + 12 digits + "A" (valid base64url), so redis-benchmark's
    // __rand_int__ can name random existing members for the baseline on the same queue.
    let ids = (0..<visitors).map { VisitorID("benchmark" + String(format: "%012d", $0) + "A")! }
    if !skipFill {
      try? await store.deleteRoom(room)
      let before = try await usedMemory(redis)
      try await store.createRoom(
        room, settings: RoomSettings(state: .paused, ratePerMinute: 6_000_000, maxActive: 10_000_000))
      let joinRate = try await ClosedLoop.run(group: group, total: visitors, concurrency: concurrency) {
        index, loop in
        store.join(room: room, visitor: ids[index], on: loop).map { _ in }
      }
      let after = try await usedMemory(redis)
      let waiting = try await store.stats(room).waiting
      print(String(format: "joins: %.0f per second (%d visitors)", joinRate, waiting))
      print(
        String(
          format: "memory per waiting visitor: %.1f bytes (used_memory %d -> %d)",
          Double(after - before) / Double(waiting), before, after))
    }

    if sketchChecks > 0 { try await checkSketch(store: store, room: room, ids: ids) }

    if polls > 0 {
      let pollRate = try await ClosedLoop.run(group: group, total: polls, concurrency: concurrency) {
        index, loop in
        // A multiplicative hash spreads the polls over the queue without a getrandom call each.
        store.status(
          room: room, visitor: ids[Int((UInt64(index) &* 0x9E37_79B9_7F4A_7C15) >> 11) % ids.count], on: loop
        )
        .map { _ in }
      }
      print(String(format: "status polls: %.0f per second", pollRate))
    }
    guard ticks > 0 else {
      await redis.close()
      try await group.shutdownGracefully()
      return
    }

    // Admission ticks of 1,000, timed inside Redis by its slow log (script time only).
    try await store.update(room, changes: ["state": "queue"])
    _ = try await redis.send(RedisCommand("CONFIG", "SET", "slowlog-log-slower-than", "0"))
    _ = try await redis.send(RedisCommand("CONFIG", "SET", "slowlog-max-len", "1000"))
    _ = try await redis.send(RedisCommand("SLOWLOG", "RESET"))
    var admitted = 0
    for _ in 0..<ticks {
      admitted += try await store.admit(room: room, batch: 1_000).admitted.count
      try await Task.sleep(for: .milliseconds(20))  // refills the bucket (100,000/s)
    }
    let log = try await redis.send(RedisCommand("SLOWLOG", "GET", "1000")).array ?? []
    var durations: [Int] = []
    for entry in log {
      guard let fields = entry.array, fields.count >= 4, let micros = fields[2].int,
        let arguments = fields[3].array, arguments.first?.string?.uppercased() == "EVALSHA",
        arguments.count > 1, arguments[1].string == Scripts.admit.sha1
      else { continue }
      durations.append(micros)
    }
    durations.sort()
    _ = try await redis.send(RedisCommand("CONFIG", "SET", "slowlog-log-slower-than", "10000"))
    if durations.isEmpty {
      print("admission tick: not measured (no slow-log entries)")
    } else {
      print(
        "admission tick of 1,000: median \(durations[durations.count / 2]) us, max \(durations.last!) us "
          + "(\(durations.count) ticks, \(admitted) admitted)")
    }
    if !keep { try? await store.deleteRoom(room) }
    await redis.close()
    try await group.shutdownGracefully()
  }

  /// Takes the room's sketch (timed by Redis' slow log: script time) and compares the
  /// positions it gives `sketchChecks` random visitors with `ZRANK` on the same, still queue.
  func checkSketch(store: RoomStore, room: String, ids: [VisitorID]) async throws {
    let redis = store.redis
    let keys = RoomKeys(room: room)
    // The script's own commands are logged too (thousands of ZRANGE steps each).
    _ = try await redis.send(RedisCommand("CONFIG", "SET", "slowlog-log-slower-than", "0"))
    _ = try await redis.send(RedisCommand("CONFIG", "SET", "slowlog-max-len", "100000"))
    _ = try await redis.send(RedisCommand("SLOWLOG", "RESET"))
    var sketch = try await store.sketch(room: room, maxAge: .milliseconds(1)).get()
    for _ in 0..<4 { sketch = try await store.sketch(room: room, maxAge: .milliseconds(1)).get() }
    let log = try await redis.send(RedisCommand("SLOWLOG", "GET", "100000")).array ?? []
    let micros = log.compactMap { entry -> Int? in
      guard let fields = entry.array, fields.count >= 4, let arguments = fields[3].array,
        arguments.count > 1, arguments[1].string == Scripts.sketch.sha1
      else { return nil }
      return fields[2].int
    }.sorted()
    _ = try await redis.send(RedisCommand("CONFIG", "SET", "slowlog-log-slower-than", "10000"))
    _ = try await redis.send(RedisCommand("CONFIG", "SET", "slowlog-max-len", "128"))
    _ = try await redis.send(RedisCommand("SLOWLOG", "RESET"))
    let stored = try await redis.send(RedisCommand("STRLEN", keys.sketch)).int ?? 0
    print(
      "sketch: \(sketch.samples) samples, \(stored) bytes, taken in Redis in "
        + (micros.isEmpty ? "(not logged)" : "median \(micros[micros.count / 2]) us, max \(micros.last!) us of \(micros.count)"))
    var generator = SystemRandomNumberGenerator()
    let chosen = (0..<sketchChecks).map { _ in ids[Int.random(in: 0..<ids.count, using: &generator)] }
    var errors: [Double] = []
    var exactFront = 0
    var missing = 0
    for start in stride(from: 0, to: chosen.count, by: 1_000) {
      let batch = chosen[start..<min(start + 1_000, chosen.count)]
      var commands: [RedisCommand] = []
      for visitor in batch {
        commands.append(RedisCommand("ZRANK", keys.queue, visitor.description))
        commands.append(RedisCommand("ZSCORE", keys.queue, visitor.description))
      }
      let replies = try await redis.send(pipeline: commands)
      for index in 0..<batch.count {
        guard let rank = replies[2 * index].int, let score = replies[2 * index + 1].string.flatMap({ Double($0) })
        else { missing += 1; continue }
        guard
          let position = sketch.position(
            score: Int64(score), visitor: batch[batch.startIndex + index], popped: sketch.popped, left: sketch.left)
        else { exactFront += 1; continue }
        errors.append(Double(abs(position - (rank + 1))) / Double(rank + 1) * 100)
      }
    }
    errors.sort()
    func at(_ share: Double) -> Double { errors.isEmpty ? .nan : errors[min(errors.count - 1, Int(Double(errors.count) * share))] }
    print(
      String(
        format: "sketched positions vs ZRANK, %d random visitors: %d at the front (asked of Redis), %d sketched: error p50 %.4f %%, p90 %.4f %%, p99 %.4f %%, max %.4f %% (bound 0.4 %%)%@",
        chosen.count, exactFront, errors.count, at(0.5), at(0.9), at(0.99), errors.last ?? .nan,
        missing > 0 ? ", \(missing) not in the queue" as NSString : "" as NSString))
  }

  func usedMemory(_ redis: RedisClient) async throws -> Int {
    let info = try await redis.send(RedisCommand("INFO", "memory")).string ?? ""
    for line in info.split(whereSeparator: \.isNewline) where line.hasPrefix("used_memory:") {
      return Int(line.dropFirst("used_memory:".count).trimmingCharacters(in: .whitespaces)) ?? 0
    }
    throw RedisError(.unexpectedReply, "INFO memory has no used_memory")
  }
}

/// Keeps `concurrency` requests in flight across the group's event loops until `total` are
/// done; returns completions per second. Each chain lives on one loop (no thread hops).
enum ClosedLoop {
  static func run(
    group: MultiThreadedEventLoopGroup, total: Int, concurrency: Int,
    _ body: @escaping @Sendable (Int, any EventLoop) -> EventLoopFuture<Void>
  ) async throws -> Double {
    let loops = Array(group.makeIterator())
    let counter = Counter(total: total)
    let start = ContinuousClock.now
    var chains: [EventLoopFuture<Void>] = []
    for chain in 0..<concurrency {
      let loop = loops[chain % loops.count]
      let promise = loop.makePromise(of: Void.self)
      loop.execute { Chain(loop: loop, counter: counter, body: body, promise: promise).next() }
      chains.append(promise.futureResult)
    }
    for chain in chains { try await chain.get() }
    let elapsed = ContinuousClock.now - start
    return Double(total)
      / (Double(elapsed.components.seconds) + Double(elapsed.components.attoseconds) / 1e18)
  }

  /// Hands out request indices to every chain.
  final class Counter: @unchecked Sendable {
    private let lock = NSLock()
    private var next = 0
    let total: Int
    init(total: Int) { self.total = total }
    func take() -> Int? {
      lock.withLock {
        guard next < total else { return nil }
        defer { next += 1 }
        return next
      }
    }
  }

  final class Chain {
    let loop: any EventLoop
    let counter: Counter
    let body: @Sendable (Int, any EventLoop) -> EventLoopFuture<Void>
    let promise: EventLoopPromise<Void>

    init(
      loop: any EventLoop, counter: Counter,
      body: @escaping @Sendable (Int, any EventLoop) -> EventLoopFuture<Void>, promise: EventLoopPromise<Void>
    ) {
      self.loop = loop
      self.counter = counter
      self.body = body
      self.promise = promise
    }

    func next() {
      guard let index = counter.take() else { return promise.succeed() }
      body(index, loop).hop(to: loop).assumeIsolated().whenComplete { result in
        switch result {
        case .success: self.next()
        case .failure(let error): self.promise.fail(error)
        }
      }
    }
  }
}
