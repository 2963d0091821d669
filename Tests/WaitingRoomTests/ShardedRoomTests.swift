import Foundation
import FoyerCore
import FoyerTestSupport
import NIOCore
import NIOPosix
import RedisNIO
import Testing

@testable import WaitingRoom

/// A room whose queue is split over shards (`RoomSettings.shards`), against a real
/// redis-server and a real Redis Cluster: where the shards live, the room's order across
/// them, and a tick that stops half-way. The rules 1–8 run with three shards in
/// `WaitingRoomTests`.
@Suite(.timeLimit(.minutes(3))) struct ShardedRoomTests {
  let group = MultiThreadedEventLoopGroup.singleton
  typealias Backend = RedisBackend

  func store(_ backend: Backend) async throws -> RoomStore {
    RoomStore(
      redis: RedisClient(
        configuration: try RedisConfiguration(url: try await backend.sharedURL()), eventLoopGroup: group))
  }

  func room(_ name: String = #function) -> String {
    RedisCluster.name(String(name.prefix(while: { $0 != "(" }).prefix(40)), onThird: Int.random(in: 0..<3))
  }

  /// Every shard's entries as `visitor → order (ms)`, read from Redis.
  func orders(_ store: RoomStore, _ room: String, shards: Int) async throws -> [String: Int64] {
    var orders: [String: Int64] = [:]
    for queue in RoomKeys(room: room).shardQueues(shards) {
      let flat =
        try await store.redis.send(RedisCommand("ZRANGE", queue, "0", "-1", "WITHSCORES")).array ?? []
      for index in stride(from: 0, to: flat.count, by: 2) {
        orders[flat[index].string!] = QueueScore.parse(flat[index + 1])! / QueueScore.seenModulus
      }
    }
    return orders
  }

  @Test func shardsLieOnThePrimariesOfTheirOwnThirdOfTheSlots() async throws {
    let store = try await store(.cluster)
    let room = room()
    try await store.createRoom(room, settings: RoomSettings(state: .paused).sharded(3))
    for _ in 0..<30 { _ = try await store.join(room: room, visitor: .random()) }
    let reply = try await store.redis.send(RedisCommand("CLUSTER", "SLOTS"))
    let topology = try ClusterTopology(slots: reply, replyHost: "127.0.0.1")
    let queues = RoomKeys(room: room).shardQueues(3)
    let nodes = Set(queues.map { topology.node(forSlot: HashSlot.of($0))! })
    #expect(nodes.count == 3, "the three shards are on \(nodes)")
    var total = 0
    for queue in queues {
      let count = try await store.redis.send(RedisCommand("ZCARD", queue)).int ?? 0
      #expect(count > 0, "\(queue) holds nobody of 30")
      total += count
    }
    #expect(total == 30)
    #expect(try await store.stats(room).waiting == 30)
    #expect(try await store.redis.send(RedisCommand("ZCARD", RoomKeys(room: room).queue)) == .integer(0))
  }

  /// Visitors join from many tasks at once with a jitter; admission in small ticks must follow
  /// the room's order exactly across the shards (no two admitted out of order of their join
  /// milliseconds), and every position told while waiting is the count of those ahead.
  @Test(arguments: Backend.allCases) func admissionFollowsTheOrderAcrossShards(
    _ backend: Backend
  ) async throws {
    let store = try await store(backend)
    let room = room()
    try await store.createRoom(
      room,
      settings: RoomSettings(
        state: .paused, ratePerMinute: 600_000, maxActive: 100_000, jitterMilliseconds: 40
      )
      .sharded(3))
    let visitors = (0..<600).map { _ in VisitorID.random() }
    try await withThrowingTaskGroup(of: Void.self) { tasks in
      for chunk in stride(from: 0, to: visitors.count, by: 50) {
        tasks.addTask {
          for visitor in visitors[chunk..<chunk + 50] {
            _ = try await store.join(room: room, visitor: visitor)
          }
        }
      }
      try await tasks.waitForAll()
    }
    let orders = try await orders(store, room, shards: 3)
    #expect(orders.count == 600)
    // The room's order: join milliseconds, then shard (as `ShardLayout` ranks them).
    let layout = ShardLayout(keys: RoomKeys(room: room), count: 3)
    func key(_ visitor: VisitorID) -> (Int64, Int) {
      (orders[visitor.description]!, layout.shard(of: visitor))
    }
    let expected = visitors.sorted { key($0) < key($1) }
    for index in stride(from: 0, to: 600, by: 37) {
      guard case .queued(let place) = try await store.status(room: room, visitor: expected[index]) else {
        Issue.record("not queued"); return
      }
      // Within one millisecond of one shard, the shard ranks by the last-seen second as well.
      let ahead = expected.filter { key($0) < key(expected[index]) }.count
      let tied = expected.filter { key($0) == key(expected[index]) }.count - 1
      #expect(
        (ahead + 1...ahead + 1 + tied).contains(place.position),
        "told \(place.position), \(ahead) ahead, \(tied) tied")
    }
    try await store.update(room, changes: ["state": "queue"])
    var admitted: [String] = []
    for _ in 0..<200 where admitted.count < 600 {
      admitted += try await store.admit(room: room, batch: 25).admitted
    }
    #expect(admitted.count == 600)
    let admittedOrders = admitted.map { orders[$0]! }
    let inversions = zip(admittedOrders, admittedOrders.dropFirst()).filter { $0 > $1 }.count
    #expect(inversions == 0, "\(inversions) admissions came before one who joined earlier")
    #expect(try await store.stats(room).waiting == 0)
  }

  /// A gateway that dies after its tick admitted visitors but before they left their shards:
  /// the next tick takes them out first, from the dead tick's journal; nobody is admitted
  /// twice and the room's count stays true.
  @Test(arguments: Backend.allCases) func aTickStoppedHalfWayIsFinishedByTheNext(
    _ backend: Backend
  ) async throws {
    let store = try await store(backend)
    let room = room()
    try await store.createRoom(
      room, settings: RoomSettings(state: .paused, ratePerMinute: 600_000, maxActive: 100_000).sharded(3))
    let visitors = (0..<30).map { _ in VisitorID.random() }
    for visitor in visitors { _ = try await store.join(room: room, visitor: visitor) }
    try await store.update(room, changes: ["state": "queue"])
    // The first half of a tick, by hand: reserve, read, commit — and no removal.
    let keys = RoomKeys(room: room)
    let lease = "crashed-gateway"
    let reserved = try await store.redis.evaluate(
      Scripts.reserve, keys: keys.scriptKeys + [keys.lease, keys.journal],
      arguments: [lease, "1500", "10", "3"])
    #expect(reserved.array?[1].int == 10)
    var heads: [[ShardHead]] = []
    for queue in keys.shardQueues(3) {
      let flat = try await store.redis.send(RedisCommand("ZRANGE", queue, "0", "9", "WITHSCORES")).array ?? []
      heads.append(
        stride(from: 0, to: flat.count, by: 2).map {
          ShardHead(visitor: flat[$0].string!, score: QueueScore.parse(flat[$0 + 1])!)
        })
    }
    let merged = ShardMerge.merge(heads, complete: [false, false, false])
    let committed = try await store.redis.evaluate(
      Scripts.commit, keys: keys.scriptKeys + [keys.lease, keys.journal],
      arguments: [lease, "10", "30"] + merged.flatMap { [$0.head.visitor, String($0.head.score)] })
    let first = (committed.array?[0].array ?? []).compactMap(\.string)
    #expect(first.count == 10)
    // Counted as gone, though still in their shards.
    #expect(try await store.redis.send(RedisCommand("HGET", keys.stats, "queued")).int == 20)
    #expect(try await store.stats(room).waiting == 30)
    // Its lease runs out; another gateway's ticks go on.
    try await Task.sleep(for: .milliseconds(1_600))
    var admitted: [String] = []
    for _ in 0..<10 where admitted.count < 20 { admitted += try await store.admit(room: room).admitted }
    #expect(Set(admitted).count == 20 && Set(admitted).isDisjoint(with: first))
    #expect(Set(admitted + first) == Set(visitors.map(\.description)))
    let stats = try await store.stats(room)
    #expect(stats.waiting == 0 && stats.admitted == 30 && stats.active == 30)
    #expect(try await store.redis.send(RedisCommand("HGET", keys.stats, "queued")).int == 0)
    #expect(try await store.redis.send(RedisCommand("EXISTS", keys.journal)) == .integer(0))
  }

  /// The count of waiting visitors (what `max_queue` and rule 7 go by) set wrong — as a lost
  /// reply could leave it — is set right by the next tick that reads the shards.
  @Test(arguments: Backend.allCases) func aWrongCountIsSetRightByTheNextTick(_ backend: Backend) async throws
  {
    let store = try await store(backend)
    let room = room()
    try await store.createRoom(
      room, settings: RoomSettings(state: .paused, ratePerMinute: 60, maxActive: 10).sharded(3))
    for _ in 0..<10 { _ = try await store.join(room: room, visitor: .random()) }
    let stats = RoomKeys(room: room).stats
    _ = try await store.redis.send(RedisCommand("HSET", stats, "queued", "0"))
    try await store.update(room, changes: ["state": "queue"])
    // Rate 60/min: one admission, and the count is what the shards hold after it.
    #expect(try await store.admit(room: room).admitted.count == 1)
    #expect(try await store.redis.send(RedisCommand("HGET", stats, "queued")).int == 9)
    // With nobody admitted the count would say nothing waits: a newcomer must not pass the nine.
    _ = try await store.redis.send(RedisCommand("HSET", stats, "queued", "0"))
    try await Task.sleep(for: .milliseconds(1_100))
    #expect(try await store.admit(room: room).admitted.count == 1)
    guard case .queued(let place) = try await store.join(room: room, visitor: .random()) else {
      Issue.record("a newcomer was admitted past eight waiting"); return
    }
    #expect(place.waiting == 9)
  }

  @Test func theNumberOfShardsIsFixedAndChecked() async throws {
    let store = try await store(.single)
    let room = room()
    try await store.createRoom(room, settings: RoomSettings().sharded(4))
    await #expect(throws: RoomStoreError.self) { try await store.update(room, changes: ["shards": "2"]) }
    await #expect(throws: RoomStoreError.self) {
      try await store.createRoom(room + "x", settings: RoomSettings().sharded(17))
    }
    #expect(try await store.settings(room).shards == 4)
    // A store that knew the room with one queue learns it has four and answers right.
    let other = try await self.store(.single)
    _ = try await other.stats(room)
    let visitor = VisitorID.random()
    guard case .admitted = try await other.join(room: room, visitor: visitor) else {
      Issue.record("not admitted at once in an empty room"); return
    }
    let told = try await other.status(room: room, visitor: visitor)
    #expect(try await store.status(room: room, visitor: visitor) == told)
    try await store.deleteRoom(room)
    for queue in RoomKeys(room: room).shardQueues(4) {
      #expect(try await store.redis.send(RedisCommand("EXISTS", queue)) == .integer(0))
    }
    // Made again with one queue: stores that knew it with four follow.
    try await store.createRoom(room, settings: RoomSettings(maxActive: 1))
    _ = try await other.join(room: room, visitor: .random())
    let second = VisitorID.random()
    guard case .queued(let place) = try await other.join(room: room, visitor: second) else {
      Issue.record("the cap of one was not kept"); return
    }
    #expect(place.position == 1)
    guard case .queued(let polled) = try await store.status(room: room, visitor: second) else {
      Issue.record("not found where it waits"); return
    }
    #expect(polled.position == 1)
    #expect(try await store.redis.send(RedisCommand("ZCARD", RoomKeys(room: room).queue)) == .integer(1))
  }

  /// Polls that bring their place are answered from the shards' sketches with no command to
  /// Redis once well behind the front (the own shard's place plus, in each other shard, those
  /// ahead of the join millisecond), within 0.5 % of the exact position; after admissions and
  /// places given back since the sketches were made, within 0.7 % (leaves are estimated).
  @Test func pollsWithTheirPlaceAreAnsweredFromTheShardsSketches() async throws {
    let server = try await RedisServer.start()
    defer { Task { await server.stop() } }
    let redis = RedisClient(configuration: server.configuration, eventLoopGroup: group)
    let store = RoomStore(redis: redis, snapshotMaxAge: .seconds(30), sketching: .init(maxAge: .seconds(30)))
    let room = "sharded-sketch"
    try await store.createRoom(
      room, settings: RoomSettings(state: .paused, ratePerMinute: 6, maxActive: 100_000).sharded(3))
    let client = JoiningClient(key: "test", newVisitor: true, newVisitorsPerMinute: 0)
    _ = try await store.update(room, changes: ["max_places_per_client": "0"])
    let visitors = (0..<9_000).map { _ in VisitorID.random() }
    try await withThrowingTaskGroup(of: Void.self) { tasks in
      for part in 0..<8 {
        tasks.addTask {
          for visitor in visitors[(part * 1_125)..<((part + 1) * 1_125)] {
            _ = try await store.join(room: room, visitor: visitor, client: client).get()
          }
        }
      }
      try await tasks.waitForAll()
    }
    /// Exact positions and places, from polls without a place.
    func exact(_ visitors: [VisitorID]) async throws -> [VisitorID: (position: Int, score: Int64)] {
      var exact: [VisitorID: (position: Int, score: Int64)] = [:]
      for visitor in visitors {
        guard case .queued(let place) = try await store.status(room: room, visitor: visitor),
          let score = place.score
        else { throw RoomStoreError(.unexpectedReply, "not queued") }
        exact[visitor] = (place.position, score)
      }
      return exact
    }
    /// Polls a visitor far back until two polls in a row, 100 ms apart, make no script: the
    /// store knows the room's shards and has read their sketches (the first polls are answered
    /// by Redis meanwhile, for as long as a loaded machine takes).
    func settle(_ store: RoomStore, _ visitor: VisitorID, _ score: Int64) async throws {
      var quiet = 0
      for _ in 0..<100 where quiet < 2 {
        let calls = try await redisCalls("evalsha", on: redis)
        _ = try await store.status(room: room, visitor: visitor, place: score)
        try await Task.sleep(for: .milliseconds(100))
        quiet = try await redisCalls("evalsha", on: redis) == calls ? quiet + 1 : 0
      }
      #expect(quiet == 2, "polls with a place still ran scripts after 10 s")
    }
    let sample = Array(visitors.shuffled().prefix(600))
    let before = try await exact(sample)
    /// Polls each of `visitors` with its place and checks the answers against `exact` within
    /// `bound`; none of the polls may run a script or count a shard.
    func checkSketched(
      _ store: RoomStore, _ visitors: [VisitorID], _ exact: [VisitorID: (position: Int, score: Int64)],
      within bound: Double
    ) async throws {
      // A shard's last member is its sketch's last sample. Once its last-seen second is
      // rewritten (the exact polls do) its score lies past that sample, where a poll rightly
      // asks Redis: it reads as one who joined since the sketch.
      var lasts = Set<String>()
      for queue in RoomKeys(room: room).shardQueues(3) {
        if let last = try await redis.send(RedisCommand("ZRANGE", queue, "-1", "-1")).array?.first?.string {
          lasts.insert(last)
        }
      }
      let visitors = visitors.filter { !lasts.contains($0.description) }
      try await settle(store, visitors[0], exact[visitors[0]]!.score)
      let scripts = try await redisCalls("evalsha", on: redis)
      let counts = try await redisCalls("zcount", on: redis)
      // The first poll after which a script had run, to tell which visitor asked Redis.
      var firstScript: String?
      for (index, visitor) in visitors.enumerated() {
        guard
          case .queued(let place) = try await store.status(
            room: room, visitor: visitor, place: exact[visitor]!.score)
        else { Issue.record("not queued"); return }
        let position = exact[visitor]!.position
        #expect(
          Double(abs(place.position - position)) <= bound * Double(position),
          "sketched \(place.position) for \(position)")
        if firstScript == nil, try await redisCalls("evalsha", on: redis) != scripts {
          firstScript = "poll \(index + 1) of \(visitors.count) (position \(position) of \(place.waiting))"
        }
      }
      #expect(
        try await redisCalls("evalsha", on: redis) == scripts,
        "sketched polls ran scripts, first after \(firstScript ?? "none")")
      #expect(try await redisCalls("zcount", on: redis) == counts, "sketched polls counted shards")
    }
    let far = sample.filter { before[$0]!.position >= 3_500 }
    #expect(far.count > 300)
    try await checkSketched(store, far, before, within: 0.005)

    // 300 admitted and 50 places given back; the sketches stay as they were (kept 30 s).
    try await store.update(room, changes: ["state": "queue", "rate_per_minute": "600000"])
    #expect(try await store.admit(room: room, batch: 300).admitted.count == 300)
    try await store.update(room, changes: ["state": "paused"])
    let admitted = try await redis.send(RedisCommand("ZRANGE", RoomKeys(room: room).active, "0", "-1")).array!
      .compactMap { $0.string.flatMap(VisitorID.init) }
    let stayed = sample.filter { !admitted.contains($0) }
    for visitor in stayed.suffix(50) {
      _ = try await store.release(room: room, visitor: visitor, reason: .left)
    }
    let waiting = Array(stayed.dropLast(50))
    let after = try await exact(waiting)
    // A fresh snapshot of the shards' counters, the sketches as they were.
    let later = RoomStore(redis: redis, snapshotMaxAge: .seconds(30), sketching: .init(maxAge: .seconds(30)))
    // Its first poll learns the room's shards, the next reads their sketches.
    let checked = waiting.filter { after[$0]!.position >= 4_500 }
    #expect(checked.count > 200)
    try await checkSketched(later, checked, after, within: 0.007)
    await redis.close()
  }

  @Test func mergeCutsWhereAPartlyReadShardCouldStillGoFirst() {
    func heads(_ orders: [Int64]) -> [ShardHead] {
      orders.enumerated().map { ShardHead(visitor: "v\($0.offset)-\($0.element)", score: $0.element * 8_192) }
    }
    // Shard 0 read in part up to order 30; shard 1 read whole.
    let merged = ShardMerge.merge([heads([10, 20, 30]), heads([5, 25, 35, 40])], complete: [false, true])
    #expect(merged.map { $0.head.score / 8_192 } == [5, 10, 20, 25, 30])
    // The same order in two shards: the lower shard first.
    let tie = ShardMerge.merge([heads([7]), heads([7])], complete: [true, true])
    #expect(tie.map(\.shard) == [0, 1])
  }
}
