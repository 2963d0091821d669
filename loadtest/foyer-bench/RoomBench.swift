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
