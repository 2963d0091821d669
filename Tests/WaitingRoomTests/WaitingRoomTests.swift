import Foundation
import FoyerCore
import FoyerTestSupport
import NIOCore
import NIOPosix
import RedisNIO
import Testing

@testable import WaitingRoom

/// DESIGN §3 rules 1–8 against a real redis-server and a real Redis Cluster (three
/// primaries; the rooms spread over all three). Each test has its own room.
@Suite(.timeLimit(.minutes(3))) struct WaitingRoomTests {
  let group = MultiThreadedEventLoopGroup.singleton

  typealias Backend = RedisBackend
  /// Every rule holds with the queue in one sorted set and split over three shards.
  static let shardCounts = [1, 3]

  func store(_ backend: Backend, snapshotMaxAge: TimeAmount = .milliseconds(250)) async throws -> RoomStore {
    RoomStore(
      redis: RedisClient(
        configuration: try RedisConfiguration(url: try await backend.sharedURL()), eventLoopGroup: group),
      snapshotMaxAge: snapshotMaxAge)
  }

  /// Rooms are named so that, on the cluster, successive ones land on the first, second and
  /// third primary's slots in turn (`redis-cli --cluster create` gives each a third).
  static let rooms = LockedValue(0)

  func room(_ name: String = #function) -> String {
    let third = Self.rooms.withLock { count in
      defer { count += 1 }
      return count % 3
    }
    return RedisCluster.name(String(name.prefix(while: { $0 != "(" }).prefix(40)), onThird: third)
  }

  func nowMilliseconds() -> Int64 { Int64(Date().timeIntervalSince1970 * 1000) }

  /// Admits until the queue is empty, returning visitors in admission order.
  func drain(_ store: RoomStore, _ room: String) async throws -> [String] {
    var order: [String] = []
    for _ in 0..<1_000 {
      let tick = try await store.admit(room: room)
      order += tick.admitted
      if tick.waiting == 0 { break }
    }
    return order
  }

  @Test(arguments: Backend.allCases, shardCounts) func rule1PreQueueIsShuffledAndAheadOfLateArrivals(
    _ backend: Backend, _ shards: Int
  ) async throws {
    let store = try await store(backend)
    let room = room()
    let startsAt = nowMilliseconds() + 60_000
    try await store.createRoom(
      room,
      settings: RoomSettings(ratePerMinute: 6_000_000, maxActive: 1_000_000, startsAtMilliseconds: startsAt)
        .sharded(shards))
    let early = (0..<2_000).map { _ in VisitorID.random() }
    for visitor in early {
      guard case .queued = try await store.join(room: room, visitor: visitor) else {
        Issue.record("not queued"); return
      }
    }
    // The sale starts; later arrivals queue behind everyone who came early.
    try await store.update(room, changes: ["starts_at": String(nowMilliseconds() - 1)])
    let late = (0..<100).map { _ in VisitorID.random() }
    for visitor in late { _ = try await store.join(room: room, visitor: visitor) }

    let order = try await drain(store, room)
    #expect(order.count == 2_100)
    let earlySet = Set(early.map(\.description))
    let earlyAdmittedFirst = order.prefix(2_000).filter(earlySet.contains).count
    #expect(
      earlyAdmittedFirst == 2_000, "only \(earlyAdmittedFirst) early arrivals among the first 2,000 admitted")
    let admittedIndex = Dictionary(uniqueKeysWithValues: order.enumerated().map { ($1, $0) })
    let ranks = early.map { admittedIndex[$0.description]! }
    let tau = kendallTau(ranks)
    #expect(abs(tau) < 0.1, "Kendall tau between join and admission order: \(tau)")
  }

  @Test(arguments: Backend.allCases, shardCounts) func rule2FIFOAfterStartAndRejoinKeepsThePlace(
    _ backend: Backend, _ shards: Int
  ) async throws {
    let store = try await store(backend)
    let room = room()
    try await store.createRoom(
      room,
      settings: RoomSettings(state: .paused, ratePerMinute: 600_000, maxActive: 1_000, jitterMilliseconds: 5)
        .sharded(shards))
    var visitors: [VisitorID] = []
    for _ in 0..<40 {
      let visitor = VisitorID.random()
      visitors.append(visitor)
      _ = try await store.join(room: room, visitor: visitor)
      try await Task.sleep(for: .milliseconds(12))
    }
    // Refreshes and second tabs: joining again never moves anyone.
    for (index, visitor) in visitors.enumerated().reversed() {
      guard case .queued(let place) = try await store.join(room: room, visitor: visitor) else {
        Issue.record("lost place"); return
      }
      #expect(place.position == index + 1)
    }
    try await store.update(room, changes: ["state": "queue"])
    let order = try await drain(store, room)
    #expect(order == visitors.map(\.description))
  }

  @Test(arguments: Backend.allCases, shardCounts) func rules3And4CapAndRateHoldWithThreeLoops(
    _ backend: Backend, _ shards: Int
  ) async throws {
    let room = room()
    let ratePerMinute = 1_200  // 20/s, burst 20
    let cap = 40
    // Its own server: the admission loops tick every room they find, and must not touch
    // the rooms of tests running beside this one.
    let server = backend == .single ? try await RedisServer.start() : nil
    let cluster = backend == .cluster ? try await RedisCluster.start() : nil
    defer {
      Task {
        await server?.stop()
        await cluster?.stop()
      }
    }
    let configuration = server?.configuration ?? cluster!.configuration
    func store() -> RoomStore {
      RoomStore(redis: RedisClient(configuration: configuration, eventLoopGroup: group))
    }
    let setup = store()
    try await setup.createRoom(
      room,
      settings: RoomSettings(
        ratePerMinute: ratePerMinute, maxActive: cap, sessionSeconds: 10, claimSeconds: 5
      ).sharded(shards))
    // Three gateways: three stores on three clients, three admission loops.
    let stores = (0..<3).map { _ in store() }
    let admissions = AdmissionLog()
    // The real service, as every gateway runs it; ticks are recorded through its hook.
    let loops = stores.map { store in
      Task {
        let loop = AdmissionLoop(
          store: store, configuration: AdmissionLoopConfiguration(roomRefreshInterval: .milliseconds(200)),
          onTick: { tickRoom, tick in if tickRoom == room { admissions.add(tick) } })
        try? await loop.run()
      }
    }
    // 5,000 visitors join while admitted shoppers claim and leave at random.
    let visitors = (0..<5_000).map { _ in VisitorID.random() }
    let joiner = Task {
      for chunk in stride(from: 0, to: visitors.count, by: 250) {
        try await withThrowingTaskGroup(of: Void.self) { tasks in
          for visitor in visitors[chunk..<min(chunk + 250, visitors.count)] {
            tasks.addTask { _ = try await setup.join(room: room, visitor: visitor) }
          }
          try await tasks.waitForAll()
        }
      }
    }
    let shopper = Task {
      while !Task.isCancelled {
        for visitor in admissions.drainNew() {
          guard let id = VisitorID(visitor) else { continue }
          _ = try? await setup.claim(room: room, visitor: id)
          if Bool.random() { _ = try? await setup.release(room: room, visitor: id, reason: .done) }
        }
        try? await Task.sleep(for: .milliseconds(50))
      }
    }
    var highest = 0
    let redis = setup.redis
    let deadline = ContinuousClock.now + .seconds(6)
    while ContinuousClock.now < deadline {
      let active = try await redis.send(RedisCommand("ZCARD", RoomKeys(room: room).active)).int ?? 0
      highest = max(highest, active)
      try await Task.sleep(for: .milliseconds(5))
    }
    for loop in loops { loop.cancel() }
    shopper.cancel()
    try await joiner.value
    #expect(highest <= cap, "active peaked at \(highest) with a cap of \(cap)")
    #expect(highest >= cap / 2, "the cap was never approached (\(highest)); the test proved nothing")

    // Rate: in every window of the run, admissions <= burst + rate * window (Redis time).
    let ticks = admissions.ticks.sorted { $0.timeMilliseconds < $1.timeMilliseconds }.filter {
      !$0.admitted.isEmpty
    }
    let burst = Double(ratePerMinute) / 60
    let perMs = Double(ratePerMinute) / 60_000
    for i in ticks.indices {
      var count = 0
      for j in i..<ticks.count {
        count += ticks[j].admitted.count
        let window = Double(ticks[j].timeMilliseconds - ticks[i].timeMilliseconds)
        #expect(Double(count) <= burst + perMs * window + 0.001, "\(count) admissions in \(window) ms")
      }
    }
  }

  @Test(arguments: Backend.allCases, shardCounts) func rule4RateIsReachedWhileTheQueueIsFull(
    _ backend: Backend, _ shards: Int
  ) async throws {
    let store = try await store(backend)
    let room = room()
    let ratePerMinute = 3_000  // 50/s
    try await store.createRoom(
      room,
      settings: RoomSettings(state: .paused, ratePerMinute: ratePerMinute, maxActive: 100_000).sharded(shards)
    )
    for _ in 0..<1_000 { _ = try await store.join(room: room, visitor: .random()) }
    try await store.update(room, changes: ["state": "queue"])
    let others = [try await self.store(backend), try await self.store(backend)]
    let log = AdmissionLog()
    let loops = ([store] + others).map { store in
      Task {
        while !Task.isCancelled {
          if let tick = try? await store.admit(room: room) { log.add(tick) }
          try? await Task.sleep(for: .milliseconds(100))
        }
      }
    }
    try await Task.sleep(for: .seconds(4))
    for loop in loops { loop.cancel() }
    let ticks = log.ticks.filter { !$0.admitted.isEmpty }.sorted { $0.timeMilliseconds < $1.timeMilliseconds }
    guard let first = ticks.first, let last = ticks.last else { Issue.record("nothing admitted"); return }
    let admitted = ticks.reduce(0) { $0 + $1.admitted.count }
    let window = Double(last.timeMilliseconds - first.timeMilliseconds)
    let bound = Double(ratePerMinute) / 60 + Double(ratePerMinute) / 60_000 * window
    #expect(Double(admitted) <= bound)
    #expect(
      Double(admitted) >= 0.9 * bound, "admitted \(admitted) of a possible \(Int(bound)) in \(Int(window)) ms"
    )
  }

  @Test(arguments: Backend.allCases, shardCounts) func rule5NoShowsFreeTheSlotAndClaimsStartASession(
    _ backend: Backend, _ shards: Int
  ) async throws {
    let store = try await store(backend)
    let room = room()
    try await store.createRoom(
      room,
      settings: RoomSettings(ratePerMinute: 60_000, maxActive: 1, sessionSeconds: 30, claimSeconds: 3)
        .sharded(shards))
    let noShow = VisitorID.random()
    guard case .admitted = try await store.join(room: room, visitor: noShow) else {
      Issue.record("not admitted at once"); return
    }
    // The claim time is 3 s, not 1: on a loaded 2-core machine a second passed between these
    // two joins once, and the no-show's slot was already free again.
    let shopper = VisitorID.random()
    let second = try await store.join(room: room, visitor: shopper)
    guard case .queued = second else {
      Issue.record("should wait: cap 1 (got \(second))"); return
    }
    try await Task.sleep(for: .milliseconds(3_200))
    let tick = try await store.admit(room: room)
    #expect(tick.admitted == [shopper.description])
    #expect(try await store.status(room: room, visitor: noShow) == .absent(.queue))
    guard case .active(let sessionEnd) = try await store.status(room: room, visitor: shopper, claim: true)
    else {
      Issue.record("claim failed"); return
    }
    let expected = nowMilliseconds() + 30_000
    #expect(abs(sessionEnd - expected) < 2_000)
    // Claiming again is idempotent.
    #expect(
      try await store.claim(room: room, visitor: shopper) == .active(sessionEndMilliseconds: sessionEnd))
    let stats = try await store.stats(room)
    #expect(stats.noShows == 1 && stats.claimed == 1 && stats.active == 1)
  }

  @Test(arguments: Backend.allCases, shardCounts) func rule6AbandonedVisitorsAreDroppedWithoutSlotOrRate(
    _ backend: Backend, _ shards: Int
  ) async throws {
    let store = try await store(backend)
    let room = room()
    try await store.createRoom(
      room,
      settings: RoomSettings(
        state: .paused, ratePerMinute: 60, maxActive: 10, abandonSeconds: 2, jitterMilliseconds: 0
      ).sharded(shards))
    let gone = (0..<3).map { _ in VisitorID.random() }
    let present = VisitorID.random()
    for visitor in gone + [present] { _ = try await store.join(room: room, visitor: visitor) }
    // The present visitor keeps polling for 3 s; the others never come back. Gone after 2 s:
    // with 1 s, a poll delayed half a second on a loaded machine once lost the present one.
    for _ in 0..<6 {
      try await Task.sleep(for: .milliseconds(500))
      _ = try await store.status(room: room, visitor: present)
    }
    try await store.update(room, changes: ["state": "queue"])
    // Rate 60/min: one token. The three abandoned must not use it.
    let tick = try await store.admit(room: room)
    #expect(tick.admitted == [present.description])
    #expect(tick.abandoned == 3)
    let stats = try await store.stats(room)
    #expect(stats.abandoned == 3 && stats.active == 1 && stats.waiting == 0)
    #expect(try await store.status(room: room, visitor: gone[0]) == .absent(.queue))
  }

  @Test(arguments: Backend.allCases, shardCounts) func rule7JoinAdmitsAtOnceWhenFreeAndReleaseFreesTheSlot(
    _ backend: Backend, _ shards: Int
  ) async throws {
    let store = try await store(backend)
    let room = room()
    try await store.createRoom(room, settings: RoomSettings(ratePerMinute: 600, maxActive: 1).sharded(shards))
    let first = VisitorID.random()
    guard case .admitted = try await store.join(room: room, visitor: first) else {
      Issue.record("not admitted in join"); return
    }
    let second = VisitorID.random()
    guard case .queued(let place) = try await store.join(room: room, visitor: second) else {
      Issue.record("cap ignored"); return
    }
    #expect(place.position == 1 && place.waiting == 1)
    #expect(try await store.release(room: room, visitor: first, reason: .done) == .released)
    #expect(try await store.stats(room).active == 0)
    // The slot is free immediately: the next tick admits the second visitor.
    #expect(try await store.admit(room: room).admitted == [second.description])
    #expect(try await store.release(room: room, visitor: .random(), reason: .left) == ReleaseResult.none)
  }

  @Test(arguments: Backend.allCases, shardCounts) func rule8LiveSettingsGovernTheNextTick(
    _ backend: Backend, _ shards: Int
  ) async throws {
    let store = try await store(backend)
    let other = try await self.store(backend)  // a second gateway
    let room = room()
    try await store.createRoom(
      room,
      settings: RoomSettings(state: .paused, ratePerMinute: 60_000, maxActive: 100, maxQueue: 5).sharded(
        shards))
    for _ in 0..<5 { _ = try await store.join(room: room, visitor: .random()) }
    #expect(try await store.join(room: room, visitor: .random()) == .full(waiting: 5))
    #expect(try await store.admit(room: room).admitted.isEmpty)  // paused
    try await other.update(room, changes: ["state": "queue", "max_active": "2"])
    #expect(try await store.admit(room: room).admitted.count == 2)  // the other gateway's cap
    try await other.update(room, changes: ["max_active": "100", "rate_per_minute": "60"])
    // Rate 60/min: the bucket holds at most one token, whatever it held before.
    #expect(try await store.admit(room: room).admitted.count <= 1)
    try await other.update(room, changes: ["state": "closed"])
    #expect(try await store.join(room: room, visitor: .random()) == .closed)
  }

  @Test(arguments: Backend.allCases) func roomNumbersInPollsAreAtMostSnapshotMaxAgeOld(
    _ backend: Backend
  ) async throws {
    let store = try await store(backend, snapshotMaxAge: .milliseconds(300))
    let room = room()
    try await store.createRoom(room, settings: RoomSettings(state: .paused, jitterMilliseconds: 0))
    let first = VisitorID.random()
    _ = try await store.join(room: room, visitor: first)
    guard case .queued(let before) = try await store.status(room: room, visitor: first) else {
      Issue.record("not queued"); return
    }
    #expect(before.waiting == 1 && before.state == .paused)
    for _ in 0..<4 { _ = try await store.join(room: room, visitor: .random()) }
    try await store.update(room, changes: ["state": "queue", "rate_per_minute": "1"])
    try await Task.sleep(for: .milliseconds(400))
    guard case .queued(let after) = try await store.status(room: room, visitor: first) else {
      Issue.record("not queued"); return
    }
    #expect(after.position == 1 && after.waiting == 5 && after.state == .queue)
  }

  @Test func pollingKeepsTheLastSeenSecondFresh() {
    // Score layout shared with the scripts: order * 8192 + last-seen second.
    let order: Int64 = 123_456_789
    let seen: Int64 = 1_000
    let score = order * 8_192 + seen
    let now = (seen + 1) * 1_000  // one second later, abandonment 120 s: no write yet
    #expect(QueueScore.touched(score, nowMilliseconds: now, abandonSeconds: 120) == nil)
    let later = (seen + 20) * 1_000
    #expect(
      QueueScore.touched(score, nowMilliseconds: later, abandonSeconds: 120) == order * 8_192 + seen + 20)
    // Across the 13-bit wrap.
    let wrapped = order * 8_192 + 8_191
    #expect(
      QueueScore.touched(wrapped, nowMilliseconds: (8_192 + 30) * 1_000, abandonSeconds: 120) == order * 8_192
        + 30)
  }

  /// A visitor polled again before the last-seen second needs rewriting costs Redis one
  /// `ZRANK` (the store's memo knows the second); the memo keeps rooms apart, an aged second
  /// is still read and rewritten, and a visitor who left the queue is answered by the script.
  @Test func repeatedPollsAskRedisOnlyForTheRank() async throws {
    // Its own server: command counts are per server.
    let server = try await RedisServer.start()
    let redis = RedisClient(configuration: server.configuration, eventLoopGroup: group)
    defer { Task { await redis.close() } }
    let store = RoomStore(redis: redis)
    let room = room(), other = room + "-b"
    // Abandonment 16 s: the second is rewritten once it is 4 s old (a window wide enough for a
    // loaded machine's slow polls).
    for id in [room, other] {
      try await store.createRoom(id, settings: RoomSettings(state: .paused, abandonSeconds: 16))
    }
    let visitor = VisitorID.random()
    for id in [room, other] { _ = try await store.join(room: id, visitor: visitor) }
    func calls() async throws -> (zscore: Int, zrank: Int) {
      (try await redisCalls("zscore", on: redis), try await redisCalls("zrank", on: redis))
    }
    // One event loop, as one connection's handler polls (each loop has its own memo).
    let loop = group.next()
    func poll(_ room: String, claim: Bool = false) async throws -> VisitorStatus {
      try await store.status(room: room, visitor: visitor, claim: claim, on: loop).get()
    }
    // The first poll reads the score. Made 4 s after the join, it also rewrites the aged
    // second and the memo learns the new one once Redis confirms: the polls after it are then
    // well within the second's 4 s.
    try await Task.sleep(for: .milliseconds(4_100))
    let first = try await calls()
    _ = try await poll(room)
    #expect(try await calls().zscore - first.zscore == 1)
    // The rewrite goes out in the loop's next heartbeat batch, not with the poll; the memo
    // learns it when Redis confirms. Wait until Redis has it (however slow a loaded machine
    // is): the last-seen second is at most 1 s old. Answers how old it was last read.
    func rewritten() async throws -> (seen: Int64, time: Int64) {
      var last: (seen: Int64, time: Int64) = (0, 0)
      for _ in 0..<100 {
        let score =
          try await redis.send(RedisCommand("ZSCORE", RoomKeys(room: room).queue, visitor.description))
          .string.flatMap { Int64($0) } ?? 0
        let time = Int64(try await redis.send(RedisCommand("TIME")).array?.first?.int ?? 0)
        last = (QueueScore.seenSecond(score, nowSecond: time), time)
        if time - last.seen <= 1 { break }
        try await Task.sleep(for: .milliseconds(50))
      }
      return last
    }
    let firstRewrite = try await rewritten()
    #expect(firstRewrite.time - firstRewrite.seen <= 1, "the first poll did not rewrite the second")
    try await Task.sleep(for: .milliseconds(200))
    let before = try await calls()
    for _ in 0..<5 {
      guard case .queued(let place) = try await poll(room) else {
        Issue.record("not queued"); return
      }
      #expect(place.position == 1)
    }
    var now = try await calls()
    #expect(now.zscore - before.zscore == 0 && now.zrank - before.zrank == 5, "\(before) → \(now)")
    // The same visitor id in another room: that room's second is read, not this one's.
    _ = try await poll(other)
    #expect(try await calls().zscore - now.zscore == 1)

    try await Task.sleep(for: .milliseconds(5_100))
    now = try await calls()
    _ = try await poll(room)
    #expect(try await calls().zscore - now.zscore == 1)
    let (seen, time) = try await rewritten()
    #expect(time - seen <= 1, "the last-seen second was not rewritten: \(seen) at \(time)")

    // Admitted meanwhile: the memo still knows the visitor, but `ZRANK` finds no place.
    try await store.update(room, changes: ["state": "queue"])
    #expect(try await store.admit(room: room).admitted == [visitor.description])
    guard case .active = try await poll(room, claim: true) else {
      Issue.record("the admitted visitor was not given the session"); return
    }
  }

  @Test func theSeenMemoKeepsVisitorsAndRoomsApart() {
    let memo = SeenMemo(capacity: 1 << 10)
    let visitors = (0..<200).map { _ in VisitorID.random() }
    for (index, visitor) in visitors.enumerated() { memo.record(visitor, room: 1, seen: Int64(index)) }
    // Each recorded visitor is found with its own second, or (a collision) not at all.
    var found = 0
    for (index, visitor) in visitors.enumerated() {
      if let seen = memo.seen(visitor, room: 1) {
        #expect(seen == Int64(index))
        found += 1
      }
      #expect(memo.seen(visitor, room: 2) == nil)
    }
    #expect(found > 150, "\(found) of 200 kept in 1,024 slots")
    // Sequential-looking ids (as foyer-bench makes) spread too.
    let similar = (0..<200).map { VisitorID(high: 42, low: UInt64($0) << 40) }
    for visitor in similar { memo.record(visitor, room: 3, seen: 7) }
    #expect(similar.filter { memo.seen($0, room: 3) == 7 }.count > 150)
    memo.forget(similar[0], room: 3)
    #expect(memo.seen(similar[0], room: 3) == nil)
    // One slot: the latest visitor evicts the one before.
    let tiny = SeenMemo(capacity: 1)
    tiny.record(visitors[0], room: 1, seen: 5)
    tiny.record(visitors[1], room: 1, seen: 6)
    #expect(tiny.seen(visitors[0], room: 1) == nil && tiny.seen(visitors[1], room: 1) == 6)
  }

  @Test(arguments: Backend.allCases) func settingsAreValidatedWithClearErrors(_ backend: Backend) async throws
  {
    let store = try await store(backend)
    let room = room()
    try await store.createRoom(room, settings: RoomSettings())
    let bad: [[String: String]] = [
      ["rate_per_minute": "-1"], ["max_active": "-5"], ["session_seconds": "5"], ["state": "open"],
      ["nonsense": "1"], ["claim_seconds": "x"],
    ]
    for change in bad {
      await #expect {
        try await store.update(room, changes: change)
      } throws: { error in
        let error = error as? RoomStoreError
        return error?.code == .invalidSettings && error!.message.contains(change.keys.first!)
      }
    }
    await #expect(throws: RoomStoreError.self) { try await store.createRoom(room, settings: RoomSettings()) }
    await #expect(throws: RoomStoreError.self) {
      try await store.createRoom("bad room!", settings: RoomSettings())
    }
    await #expect(throws: RoomStoreError.self) { _ = try await store.settings("missing-\(UUID())") }
    #expect(try await store.rooms().contains(room))
    try await store.deleteRoom(room)
    #expect(try await !store.rooms().contains(room))
  }

  @Test(arguments: Backend.allCases) func waitEstimateComesFromTheMeasuredRate(
    _ backend: Backend
  ) async throws {
    let store = try await store(backend, snapshotMaxAge: .zero)  // no cached room numbers: each poll reads them
    let room = room()
    try await store.createRoom(
      room,
      settings: RoomSettings(state: .paused, ratePerMinute: 120, maxActive: 1_000, jitterMilliseconds: 0))
    let visitors = (0..<10).map { _ in VisitorID.random() }
    for visitor in visitors { _ = try await store.join(room: room, visitor: visitor) }
    guard case .queued(let paused) = try await store.status(room: room, visitor: visitors[9]) else { return }
    #expect(paused.estimate.etaSeconds == nil)  // nobody is admitted while paused
    try await store.update(room, changes: ["state": "queue"])
    guard case .queued(let before) = try await store.status(room: room, visitor: visitors[9]) else { return }
    #expect(before.estimate.etaSeconds == 5)  // 10 ÷ 120/min, before any admission
    _ = try await store.admit(room: room)  // admits the burst (2) and measures it
    guard case .queued(let after) = try await store.status(room: room, visitor: visitors[9]) else { return }
    #expect(after.position == 8)
    #expect(after.estimate.etaSeconds == 240)  // 8 ÷ 2 measured in the last minute
  }
}

/// Admission ticks seen by the test's loops.
final class AdmissionLog: @unchecked Sendable {
  private let lock = NSLock()
  private var all: [AdmissionTick] = []
  private var fresh: [String] = []

  func add(_ tick: AdmissionTick) {
    lock.withLock {
      all.append(tick)
      fresh += tick.admitted
    }
  }

  var ticks: [AdmissionTick] { lock.withLock { all } }

  func drainNew() -> [String] {
    lock.withLock {
      defer { fresh.removeAll() }
      return fresh
    }
  }
}

/// Kendall rank correlation between index order and `ranks`.
func kendallTau(_ ranks: [Int]) -> Double {
  var concordant = 0
  var discordant = 0
  for i in ranks.indices {
    for j in (i + 1)..<ranks.count {
      if ranks[j] > ranks[i] { concordant += 1 } else if ranks[j] < ranks[i] { discordant += 1 }
    }
  }
  let pairs = Double(ranks.count * (ranks.count - 1) / 2)
  return Double(concordant - discordant) / pairs
}

extension RoomSettings {
  func sharded(_ count: Int) -> RoomSettings {
    var settings = self
    settings.shards = count
    return settings
  }
}
