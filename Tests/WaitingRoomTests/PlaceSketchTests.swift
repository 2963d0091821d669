import Foundation
import FoyerCore
import FoyerTestSupport
import NIOCore
import NIOPosix
import RedisNIO
import Testing

@testable import WaitingRoom

/// The queue sketch against a real redis-server and a real Redis Cluster: positions read from
/// it stay within the growth between samples of `ZRANK`'s, also after admissions and places
/// given back since it was taken; the front is left to Redis; one sketch serves every gateway.
@Suite(.serialized, .timeLimit(.minutes(3))) struct PlaceSketchTests {
  let group = MultiThreadedEventLoopGroup.singleton

  func store(_ backend: RedisBackend) async throws -> RoomStore {
    RoomStore(
      redis: RedisClient(
        configuration: try RedisConfiguration(url: try await backend.sharedURL()), eventLoopGroup: group))
  }

  /// `count` visitors joined through the join script, 8 at a time (gently: other suites time
  /// things meanwhile); their ids in no order.
  func fill(_ store: RoomStore, _ room: String, _ count: Int) async throws -> [VisitorID] {
    try await withThrowingTaskGroup(of: [VisitorID].self) { tasks in
      for _ in 0..<8 {
        tasks.addTask {
          var joined: [VisitorID] = []
          for _ in 0..<(count / 8) {
            let visitor = VisitorID.random()
            guard case .queued = try await store.join(room: room, visitor: visitor) else {
              throw RoomStoreError(.unexpectedReply, "a join was not queued")
            }
            joined.append(visitor)
          }
          return joined
        }
      }
      return try await tasks.reduce(into: []) { $0 += $1 }
    }
  }

  /// Every visitor's exact position (`ZRANK` + 1) and queue order, read in one pipeline.
  func exact(_ redis: RedisClient, _ room: String, _ visitors: [VisitorID]) async throws -> [(position: Int, score: Int64, visitor: VisitorID)?] {
    let queue = RoomKeys(room: room).queue
    var commands: [RedisCommand] = []
    for visitor in visitors {
      commands.append(RedisCommand("ZRANK", queue, visitor.description))
      commands.append(RedisCommand("ZSCORE", queue, visitor.description))
    }
    let replies = try await redis.send(pipeline: commands)
    return visitors.indices.map { index in
      guard let rank = replies[2 * index].int, let score = QueueScore.parse(replies[2 * index + 1]) else { return nil }
      return (rank + 1, score, visitors[index])
    }
  }

  func counters(_ redis: RedisClient, _ room: String) async throws -> (popped: Int64, left: Int64) {
    let values = try await redis.send(
      RedisCommand("HMGET", RoomKeys(room: room).stats, "admitted", "abandoned", "left")
    ).array ?? []
    func value(_ index: Int) -> Int64 { values.count > index ? Int64(values[index].string ?? "") ?? 0 : 0 }
    return (value(0) + value(1), value(2))
  }

  /// Checks every visitor's sketched position against the exact one; returns the worst
  /// relative error.
  func check(
    _ sketch: PlaceSketch, _ exact: [(position: Int, score: Int64, visitor: VisitorID)?], popped: Int64, left: Int64,
    exactBelow: Int, bound: Double
  ) -> Double {
    var worst = 0.0
    var estimated = 0
    for case let (position, score, visitor)? in exact {
      // The front is asked of Redis: before the first sample, or estimated there.
      guard let answer = sketch.position(score: score, visitor: visitor, popped: popped, left: left),
        answer > exactBelow
      else {
        #expect(Double(position) <= Double(exactBelow) * (1 + bound) + Double(popped - sketch.popped), "position \(position) not sketched")
        continue
      }
      estimated += 1
      let error = Double(abs(answer - position)) / Double(position)
      worst = max(worst, error)
      #expect(error <= bound, "sketched \(answer) for position \(position)")
    }
    #expect(estimated > exact.compactMap { $0 }.count / 2)
    return worst
  }

  @Test(arguments: RedisBackend.allCases) func positionsStayWithinTheBoundAfterAdmissionsAndLeaves(
    _ backend: RedisBackend
  ) async throws {
    let store = try await store(backend)
    let room = RedisCluster.name("sketch-bound", onThird: backend == .cluster ? 1 : 0)
    try? await store.deleteRoom(room)
    try await store.createRoom(room, settings: RoomSettings(state: .paused, ratePerMinute: 6_000_000, maxActive: 1_000_000))
    let visitors = try await fill(store, room, 6_400)
    let exactBelow = 1_000
    let sketch = try await store.sketch(room: room, exactBelow: exactBelow, maxAge: .seconds(60)).get()
    #expect(sketch.waiting == 6_400)
    #expect(sketch.samples > 300, "geometric samples from position 1,000 to 6,400 at 0.4 %")
    var (popped, left) = try await counters(store.redis, room)
    let before = check(
      sketch, try await exact(store.redis, room, visitors), popped: popped, left: left, exactBelow: exactBelow,
      bound: 0.005)

    // 300 admitted from the head and 50 places given back anywhere (a busy second), the
    // sketch unchanged: the pops are exact, the leaves ahead estimated in proportion (about 9
    // ahead of position 1,200, give or take 3: the 2 % bound is seven of those away). The
    // front grows with the pops, where the sketch's spacing is now too coarse.
    _ = try await store.update(room, changes: ["state": "queue"])
    var admitted = 0
    while admitted < 300 { admitted += try await store.admit(room: room, batch: 300 - admitted).admitted.count }
    for visitor in visitors.shuffled().prefix(50) { _ = try await store.release(room: room, visitor: visitor, reason: .left) }
    (popped, left) = try await counters(store.redis, room)
    #expect(popped >= 300 && left > 0)
    let front = store.sketching.exactBelow(poppedSinceSketch: popped - sketch.popped)
    #expect(front == 1_200)
    let after = check(
      sketch, try await exact(store.redis, room, visitors), popped: popped, left: left, exactBelow: front,
      bound: 0.02)
    print("sketch (\(backend)): \(sketch.samples) samples; worst error \(before * 100) % as taken, \(after * 100) % after 300 admitted and 50 left")

    // Shared: a second ask within the age gets the stored one; an aged one is taken again.
    let again = try await store.sketch(room: room, exactBelow: exactBelow, maxAge: .seconds(60)).get()
    #expect(again == sketch)
    let fresh = try await store.sketch(room: room, exactBelow: exactBelow, maxAge: .milliseconds(1)).get()
    #expect(fresh.popped == popped && fresh.waiting < sketch.waiting)
    try await store.deleteRoom(room)
  }

  /// A poll that brings the visitor's score is answered from the sketch: no `ZRANK` for
  /// visitors behind the front, within the error of the exact position; the front still asks
  /// Redis. Counted on a server of its own (`INFO commandstats`).
  @Test func pollsWithTheirPlaceAreAnsweredFromTheSketch() async throws {
    let server = try await RedisServer.start()
    defer { Task { await server.stop() } }
    let redis = RedisClient(configuration: server.configuration, eventLoopGroup: group)
    let store = RoomStore(redis: redis, snapshotMaxAge: .seconds(5), sketching: .init(maxAge: .seconds(5)))
    let room = "sketched"
    // 6 a minute: however old the snapshot, the exact zone is the first 1,000 places.
    try await store.createRoom(room, settings: RoomSettings(state: .paused, ratePerMinute: 6, maxActive: 1_000))
    let visitors = try await fill(store, room, 4_800)
    var places: [VisitorID: Int64] = [:]
    for case let (_, score, visitor)? in try await exact(redis, room, visitors) { places[visitor] = score }
    // The first poll with a place reads the sketch (and is answered by Redis meanwhile).
    _ = try await store.status(room: room, visitor: visitors[0], place: places[visitors[0]])
    try await Task.sleep(for: .milliseconds(300))

    let ranksBefore = try await redisCalls("zrank", on: redis)
    let scoresBefore = try await redisCalls("zscore", on: redis)
    var front = 0
    var answered: [(VisitorID, Int)] = []
    for visitor in visitors.prefix(2_000) {
      guard case .queued(let place) = try await store.status(room: room, visitor: visitor, place: places[visitor])
      else { Issue.record("not queued"); return }
      // The same order (a heartbeat, if one fell due on a slow machine, changes only the
      // last-seen second), or no score, from an exact poll that skipped it.
      if let score = place.score, let joined = places[visitor] {
        #expect(score / QueueScore.seenModulus == joined / QueueScore.seenModulus)
      }
      if place.position < 1_000 { front += 1 } else { answered.append((visitor, place.position)) }
    }
    let ranks = try await redisCalls("zrank", on: redis) - ranksBefore
    let scores = try await redisCalls("zscore", on: redis) - scoresBefore
    // Without its place the same visitor asks Redis, as before.
    _ = try await store.status(room: room, visitor: visitors[1_999])
    #expect(try await redisCalls("zrank", on: redis) == ranksBefore + ranks + 1)
    // Only the front asked Redis (its exact path: ZRANK, and ZSCORE unless seen recently).
    #expect(ranks == front, "\(ranks) ZRANK for \(front) visitors at the front")
    #expect(scores <= front)
    #expect(answered.count > 1_200)
    for case let (position, _, visitor)? in try await exact(redis, room, answered.map(\.0)) {
      let sketched = answered.first { $0.0 == visitor }!.1
      #expect(Double(abs(sketched - position)) <= 0.005 * Double(position), "sketched \(sketched) for \(position)")
    }
    await redis.close()
  }

  /// Heartbeats owed by sketched polls go out together, one `ZADD` per room per interval; a
  /// visitor a heartbeat finds gone is asked of Redis again, and told so.
  @Test func heartbeatsAreBatchedAndFindWhoIsGone() async throws {
    let server = try await RedisServer.start()
    defer { Task { await server.stop() } }
    let redis = RedisClient(configuration: server.configuration, eventLoopGroup: group)
    let store = RoomStore(
      redis: redis, snapshotMaxAge: .seconds(30),
      sketching: .init(maxAge: .seconds(30), heartbeatInterval: .seconds(1)))
    let room = "heartbeats"
    // Abandonment after 8 s: a last-seen second older than 2 s is rewritten.
    try await store.createRoom(
      room, settings: RoomSettings(state: .paused, ratePerMinute: 6, maxActive: 1_000, abandonSeconds: 8))
    let visitors = try await fill(store, room, 3_200)
    var places: [VisitorID: Int64] = [:]
    for case let (_, score, visitor)? in try await exact(redis, room, visitors) { places[visitor] = score }
    let far = Array(try await exact(redis, room, visitors).compactMap { $0 }.filter { $0.position > 2_000 }.prefix(100))
    try #require(far.count == 100)
    _ = try await store.status(room: room, visitor: far[0].visitor, place: far[0].score)
    try await Task.sleep(for: .seconds(3))

    let addsBefore = try await redisCalls("zadd", on: redis)
    let started = ContinuousClock.now
    var owed: [VisitorID: Int64] = [:]
    for entry in far {
      guard case .queued(let place) = try await store.status(room: room, visitor: entry.visitor, place: entry.score),
        let score = place.score
      else { Issue.record("not queued"); return }
      #expect(score / QueueScore.seenModulus == entry.score / QueueScore.seenModulus, "the order is kept")
      owed[entry.visitor] = score
    }
    // Every answer owed a fresh second (the scores are 3 s old); none was written yet.
    #expect(owed.allSatisfy { $0.value != places[$0.key] })
    let intervals = Int((ContinuousClock.now - started) / .seconds(1)) + 1
    try await Task.sleep(for: .milliseconds(1_300))
    let adds = try await redisCalls("zadd", on: redis) - addsBefore
    // At most one per interval per event loop that answered (the async API takes any of the
    // group's), whatever the load: the intervals the polls spanned, and the one after.
    #expect(
      adds >= 1 && adds <= (intervals + 1) * redis.eventLoops.count,
      "\(adds) ZADD for 100 heartbeats over \(intervals) intervals on \(redis.eventLoops.count) loops")
    for case let (_, score, visitor)? in try await exact(redis, room, Array(owed.keys)) {
      #expect(score == owed[visitor])
    }

    // An operator takes one visitor out; their next heartbeat finds them gone, and the poll
    // after that asks Redis: absent.
    let removed = far[1].visitor
    _ = try await redis.send(RedisCommand("ZREM", RoomKeys(room: room).queue, removed.description))
    try await Task.sleep(for: .seconds(3))
    guard case .queued = try await store.status(room: room, visitor: removed, place: owed[removed]) else {
      Issue.record("the sketch answers until a heartbeat says otherwise"); return
    }
    try await Task.sleep(for: .milliseconds(1_300))
    #expect(try await store.status(room: room, visitor: removed, place: owed[removed]).isAbsent)
    await redis.close()
  }

  /// In a room that drops visitors after 2 s, a heartbeat up to a second late could come
  /// after the admission tick that judged the visitor gone: polls there ask Redis, place or not.
  @Test func aShortAbandonmentKeepsPollsOnRedis() async throws {
    let server = try await RedisServer.start()
    defer { Task { await server.stop() } }
    let redis = RedisClient(configuration: server.configuration, eventLoopGroup: group)
    let store = RoomStore(redis: redis, snapshotMaxAge: .seconds(30), sketching: .init(maxAge: .seconds(30)))
    #expect(!store.sketching.allowsSketch(abandonSeconds: 2) && store.sketching.allowsSketch(abandonSeconds: 3))
    let room = "short"
    try await store.createRoom(room, settings: RoomSettings(state: .paused, ratePerMinute: 6, abandonSeconds: 2))
    let visitors = try await fill(store, room, 2_400)
    let far = try await exact(redis, room, visitors).compactMap { $0 }.filter { $0.position > 1_500 }.prefix(50)
    _ = try await store.status(room: room, visitor: far.first!.visitor, place: far.first!.score)
    try await Task.sleep(for: .milliseconds(300))
    let ranks = try await redisCalls("zrank", on: redis)
    for entry in far { _ = try await store.status(room: room, visitor: entry.visitor, place: entry.score) }
    #expect(try await redisCalls("zrank", on: redis) == ranks + far.count)
    await redis.close()
  }

  @Test func malformedSketchesAreRefusedAndTiesAreSplitByMember() throws {
    #expect(throws: RoomStoreError.self) { try PlaceSketch("") }
    #expect(throws: RoomStoreError.self) { try PlaceSketch("1 2 3") }
    #expect(throws: RoomStoreError.self) { try PlaceSketch("1 0 0 10 5:2:AAAAAAAA 4:3:AAAAAAAA") }
    #expect(throws: RoomStoreError.self) { try PlaceSketch("1 0 0 10 5:2:BAAAAAAA 5:3:AAAAAAAA") }
    #expect(throws: RoomStoreError.self) { try PlaceSketch("1 0 0 10 5:2:AAAAAAAA 6:2:AAAAAAAA") }
    #expect(throws: RoomStoreError.self) { try PlaceSketch("1 0 0 10 5:x:AAAAAAAA") }
    #expect(throws: RoomStoreError.self) { try PlaceSketch("1 0 0 10 5:2") }
    let empty = try PlaceSketch("1 0 0 0")
    #expect(empty.position(score: 7, visitor: .random(), popped: 0, left: 0) == nil)
    // Within a tie the member decides: halfway between two samples of one score by member.
    let tie = try PlaceSketch("1 0 0 3000 80:1000:AAAAAAAA 80:2000:CAAAAAAA 90:2999:AAAAAAAA")
    let middle = try #require(VisitorID("BAAAAAAAAAAAAAAAAAAAAA"))
    #expect(tie.position(score: 80, visitor: middle, popped: 0, left: 0) == 1_501)
    // 200 popped since: 200 ahead fewer.
    #expect(tie.position(score: 80, visitor: middle, popped: 200, left: 0) == 1_301)
    #expect(tie.position(score: 70, visitor: middle, popped: 0, left: 0) == nil)
    #expect(tie.position(score: 95, visitor: middle, popped: 0, left: 0) == nil)
  }
}
