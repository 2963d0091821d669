internal import FoyerCore
internal import NIOCore
internal import RedisNIO

/// Where a sharded room's queue lives (`RoomSettings.shards` > 1), and the room's order across
/// its shards: by join order (the score's milliseconds), then by shard, then as the shard
/// ranks its own. Positions count by that order and admission merges the shards by it, so a
/// visitor is never admitted after one who joined later, whichever shards they wait in.
final class ShardLayout: Sendable {
  let queues: [String]
  let counters: [String]
  let sketches: [String]

  init(keys: RoomKeys, count: Int) {
    queues = keys.shardQueues(count)
    counters = keys.shardCounters(count)
    sketches = keys.shardSketches(count)
  }

  var count: Int { queues.count }

  /// What `Scripts.sketch` reads and writes for shard `index`: its queue, counters and sketch.
  func sketchKeys(_ index: Int) -> [String] { [queues[index], counters[index], sketches[index]] }

  /// The visitor's shard: ids are random, so the shards fill evenly.
  func shard(of visitor: VisitorID) -> Int { Int(visitor.low % UInt64(queues.count)) }

  /// Commands counting, in every other shard, the visitors ahead of `score` in shard `index`:
  /// in earlier shards those with an order up to the visitor's, in later ones those before it.
  func aheadCommands(score: Int64, shard index: Int) -> [RedisCommand] {
    let order = score / QueueScore.seenModulus
    return queues.indices.filter { $0 != index }.map { other in
      let bound = (other < index ? order + 1 : order) * QueueScore.seenModulus
      return RedisCommand("ZCOUNT", queues[other], "-inf", "(\(bound)")
    }
  }
}

/// One waiting visitor as a shard's head read gave it.
struct ShardHead: Sendable, Hashable {
  var visitor: String
  var score: Int64
}

/// Merges the heads read from each shard into the room's order.
enum ShardMerge {
  /// `heads[i]`: shard i's first entries in its order; `complete[i]`: whether that was all of
  /// the shard. Returns them in the room's order, cut after the last entry that no unread
  /// entry of a partly read shard could precede.
  static func merge(_ heads: [[ShardHead]], complete: [Bool]) -> [(shard: Int, head: ShardHead)] {
    typealias Key = (order: Int64, shard: Int, index: Int)
    func key(_ shard: Int, _ index: Int) -> Key {
      (heads[shard][index].score / QueueScore.seenModulus, shard, index)
    }
    func before(_ a: Key, _ b: Key) -> Bool { (a.order, a.shard, a.index) < (b.order, b.shard, b.index) }
    var bound: Key?
    for shard in heads.indices where !complete[shard] && !heads[shard].isEmpty {
      let last = key(shard, heads[shard].count - 1)
      if bound.map({ before(last, $0) }) ?? true { bound = last }
    }
    var keys: [Key] = []
    for shard in heads.indices {
      for index in heads[shard].indices {
        let entry = key(shard, index)
        if let bound, before(bound, entry) { break }
        keys.append(entry)
      }
    }
    keys.sort(by: before)
    return keys.map { ($0.shard, heads[$0.shard][$0.index]) }
  }
}

/// A sharded room's reply naming a different number of shards than the caller routed by.
struct ShardsDiffer: Error {
  let count: Int
}

extension RoomStore {
  /// Where a visitor of a sharded room stands: admitted or active per the room's slot, else
  /// queued per its shard, at the position the other shards' counts give.
  func shardedStatus(
    room: String, entry: RoomEntry, layout: ShardLayout, visitor: VisitorID, claim: Bool, loop: any EventLoop
  ) -> EventLoopFuture<VisitorStatus> {
    let index = layout.shard(of: visitor)
    let control = redis.evaluate(
      Scripts.status, keys: entry.keys.scriptKeys,
      arguments: [visitor.description, claim ? "1" : "0", String(layout.count)], on: loop)
    let place = redis.evaluate(
      Scripts.shardPlace, keys: [layout.queues[index]], arguments: [visitor.description], on: loop)
    return control.and(place).and(currentSnapshot(room: room, entry: entry, layout: layout, loop: loop))
      .flatMap {
        replies, snapshot in
        let status: VisitorStatus
        do { status = try Self.status(from: replies.0, room: room) } catch {
          return loop.makeFailedFuture(error)
        }
        guard status.isAbsent, let values = replies.1.array, values.count == 2, let rank = values[0].int,
          let score = QueueScore.parse(values[1])
        else { return loop.makeSucceededFuture(status) }
        self.gone.remove(visitor, room: entry.tag)
        return self.redis.send(pipeline: layout.aheadCommands(score: score, shard: index), on: loop).map {
          counts in
          let position = rank + 1 + counts.reduce(0) { $0 + ($1.int ?? 0) }
          return .queued(
            snapshot.place(
              position: position, now: snapshot.redisNowMilliseconds, visitor: visitor, score: score)
          )
        }
      }
  }

  /// Joins a visitor to a sharded room: a visitor already there (unless its id is new) is
  /// answered where it is; else the room's slot decides and counts the place, and the
  /// visitor's shard takes it with the score the room gave.
  func shardedJoin(
    room: String, entry: RoomEntry, layout: ShardLayout, visitor: VisitorID, client: JoiningClient?,
    arguments: [String], loop: any EventLoop
  ) -> EventLoopFuture<VisitorStatus> {
    let known: EventLoopFuture<VisitorStatus?> =
      client?.newVisitor == true
      ? loop.makeSucceededFuture(nil)
      : shardedStatus(room: room, entry: entry, layout: layout, visitor: visitor, claim: false, loop: loop)
        .map { $0.isAbsent ? nil : $0 }
    let keys = entry.keys.scriptKeys + (client.map { entry.keys.clientKeys($0.key) } ?? [])
    return known.flatMap { known -> EventLoopFuture<VisitorStatus> in
      if let known { return loop.makeSucceededFuture(known) }
      return self.redis.evaluate(
        Scripts.join, keys: keys, arguments: arguments + [String(layout.count)], on: loop,
        replicated: self.replicaWait
      ).flatMap { reply in
        guard let values = reply.array, values.first?.string == "enqueue", values.count == 10,
          let score = QueueScore.parse(values[9])
        else {
          do { return loop.makeSucceededFuture(try Self.status(from: reply, room: room)) } catch {
            return loop.makeFailedFuture(error)
          }
        }
        return self.enqueue(
          room: room, entry: entry, layout: layout, visitor: visitor, score: score, joined: values, loop: loop
        )
      }
    }
  }

  /// Adds a counted place to its shard and answers with its position.
  private func enqueue(
    room: String, entry: RoomEntry, layout: ShardLayout, visitor: VisitorID, score: Int64,
    joined: [RESPValue],
    loop: any EventLoop
  ) -> EventLoopFuture<VisitorStatus> {
    let index = layout.shard(of: visitor)
    let added = redis.evaluate(
      Scripts.shardEnqueue, keys: [layout.queues[index]], arguments: [String(score), visitor.description],
      on: loop,
      replicated: replicaWait)
    // Counted beside the enqueue, by the score given: the other shards' places do not depend on it.
    let ahead = redis.send(pipeline: layout.aheadCommands(score: score, shard: index), on: loop)
    return added.and(ahead).flatMap { reply, counts -> EventLoopFuture<VisitorStatus> in
      guard let values = reply.array, values.count == 3, let new = values[0].int, let rank = values[1].int,
        let held = QueueScore.parse(values[2])
      else { return loop.makeFailedFuture(RoomStoreError(.unexpectedReply, "enqueue answered \(reply)")) }
      if new == 0 {
        // A second tab raced this join and holds the place: this one was counted for nothing.
        _ = self.redis.send(
          pipeline: [
            RedisCommand("HINCRBY", entry.keys.stats, "queued", "-1"),
            RedisCommand("HINCRBY", entry.keys.stats, "joined", "-1"),
          ], on: loop)
      }
      // Only a raced second tab holds another score: count again by that one.
      let recounted =
        held == score
        ? loop.makeSucceededFuture(counts)
        : self.redis.send(pipeline: layout.aheadCommands(score: held, shard: index), on: loop)
      return recounted.flatMapThrowing { counts in
        var values = joined
        values[0] = .bulkString(ByteBuffer(string: "queued"))
        values[1] = .integer(rank + 1 + counts.reduce(0) { $0 + ($1.int ?? 0) })
        values[9] = .integer(Int(held))
        return try Self.status(from: .array(values), room: room)
      }
    }
  }

  /// Gives back a sharded room's slot (in its slot) or place (in its shard).
  func shardedRelease(
    room: String, entry: RoomEntry, layout: ShardLayout, visitor: VisitorID, loop: any EventLoop
  ) -> EventLoopFuture<ReleaseResult> {
    redis.evaluate(
      Scripts.release, keys: entry.keys.scriptKeys, arguments: [visitor.description, String(layout.count)],
      on: loop
    ).flatMap { reply -> EventLoopFuture<ReleaseResult> in
      guard reply.string == "none" else {
        do { return loop.makeSucceededFuture(try Self.releaseResult(reply)) } catch {
          return loop.makeFailedFuture(error)
        }
      }
      let shard = layout.shard(of: visitor)
      return self.redis.evaluate(
        Scripts.shardLeave, keys: [layout.queues[shard], layout.counters[shard]],
        arguments: [visitor.description],
        on: loop
      ).flatMap { removed in
        guard removed.int == 1 else { return loop.makeSucceededFuture(.none) }
        return self.redis.send(
          pipeline: [
            RedisCommand("HINCRBY", entry.keys.stats, "left", "1"),
            RedisCommand("HINCRBY", entry.keys.stats, "queued", "-1"),
          ], on: loop
        ).map { _ in .left }
      }
    }
  }

  /// One admission tick of a sharded room: the room's slot reserves the tick (a lease, so one
  /// gateway ticks a room at a time); then, in rounds, the shards' heads are read and merged,
  /// the room's slot admits from them in order with the cap and the bucket as the one-queue
  /// tick does, and what it went through leaves the shards.
  func shardedAdmit(
    room: String, entry: RoomEntry, layout: ShardLayout, batch: Int, scanLimit: Int
  ) async throws -> AdmissionTick {
    let keys = entry.keys.scriptKeys + [entry.keys.lease, entry.keys.journal]
    let lease = VisitorID.random().description
    var reserved = RESPValue.null
    // At most twice: a tick that stopped half-way is finished first.
    for _ in 0..<2 {
      reserved = try await redis.evaluate(
        Scripts.reserve, keys: keys,
        arguments: [lease, String(Self.leaseMilliseconds), String(batch), String(layout.count)], on: nil
      ).get()
      guard let array = reserved.array, array.first?.string == "unfinished", array.count == 2 else { break }
      try await remove(array[1].string?.split(separator: " ").map(String.init) ?? [], layout: layout)
      _ = try await unlock(entry: entry, lease: lease)
    }
    guard let values = reserved.array, let kind = values.first?.string else {
      throw RoomStoreError(.unexpectedReply, "reserve answered \(reserved)")
    }
    switch kind {
    case "no_room": throw RoomStoreError(.noSuchRoom, "no room '\(room)'")
    case "shards": throw ShardsDiffer(count: values.count > 1 ? values[1].int ?? 1 : 1)
    case "busy":
      // Another gateway is ticking the room.
      guard values.count == 4, let waiting = values[1].int, let active = values[2].int,
        let now = values[3].int
      else {
        throw RoomStoreError(.unexpectedReply, "reserve answered \(reserved)")
      }
      return AdmissionTick(
        admitted: [], abandoned: 0, waiting: waiting, active: active, timeMilliseconds: Int64(now))
    case "reserved": break
    default: throw RoomStoreError(.unexpectedReply, "reserve answered \(reserved)")
    }
    guard values.count == 5, let want = values[1].int, var waiting = values[2].int,
      var active = values[3].int,
      var now = values[4].int
    else { throw RoomStoreError(.unexpectedReply, "reserve answered \(reserved)") }
    guard want > 0 else {
      return AdmissionTick(
        admitted: [], abandoned: 0, waiting: waiting, active: active, timeMilliseconds: Int64(now))
    }
    var admitted: [String] = []
    var abandoned = 0
    var scanned = 0
    // A failure keeps the lease and the journal: once the lease runs out, the next tick
    // removes whoever this one admitted but did not take out of their shards.
    try await admitRounds(
      entry: entry, layout: layout, lease: lease, want: want, batch: batch, scanLimit: scanLimit,
      admitted: &admitted, abandoned: &abandoned, scanned: &scanned, waiting: &waiting, active: &active,
      now: &now)
    // Given back only once the admitted have left their shards: a tick that starts earlier
    // would find them at the head again.
    _ = try await unlock(entry: entry, lease: lease)
    return AdmissionTick(
      admitted: admitted, abandoned: abandoned, waiting: max(waiting, 0), active: active,
      timeMilliseconds: Int64(now))
  }

  /// The rounds of one tick: read the heads, merge, commit, remove what the commit went through.
  private func admitRounds(
    entry: RoomEntry, layout: ShardLayout, lease: String, want: Int, batch: Int, scanLimit: Int,
    admitted: inout [String], abandoned: inout Int, scanned: inout Int, waiting: inout Int, active: inout Int,
    now: inout Int
  ) async throws {
    let keys = entry.keys.scriptKeys + [entry.keys.lease, entry.keys.journal]
    let room = entry.keys.room
    for _ in 0..<Self.roundsPerTick where admitted.count < want && scanned < scanLimit {
      // Ids are spread evenly, so each shard holds about its share of the next admissions; a
      // quarter more and a few spare cover the unevenness, another round any shortfall.
      let remaining = want - admitted.count
      let share = (remaining + layout.count - 1) / layout.count
      let read = min(share + share / 4 + 32, remaining, scanLimit - scanned)
      var commands: [RedisCommand] = []
      for queue in layout.queues {
        commands.append(RedisCommand("ZCARD", queue))
        commands.append(RedisCommand("ZRANGE", queue, "0", String(read - 1), "WITHSCORES"))
      }
      let replies = try await redis.send(pipeline: commands, on: nil).get()
      var heads: [[ShardHead]] = []
      var complete: [Bool] = []
      var observed = 0
      for shard in layout.queues.indices {
        let card = replies[2 * shard].int ?? 0
        guard let flat = replies[2 * shard + 1].array, flat.count % 2 == 0 else {
          throw RoomStoreError(.unexpectedReply, "a shard's head answered \(replies[2 * shard + 1])")
        }
        var shardHeads: [ShardHead] = []
        for at in stride(from: 0, to: flat.count, by: 2) {
          guard let visitor = flat[at].string, let score = QueueScore.parse(flat[at + 1]) else {
            throw RoomStoreError(.unexpectedReply, "a shard's head answered \(flat)")
          }
          shardHeads.append(ShardHead(visitor: visitor, score: score))
        }
        observed += card
        complete.append(shardHeads.count >= card)
        heads.append(shardHeads)
      }
      let merged = ShardMerge.merge(heads, complete: complete)
      var arguments = [lease, String(batch - admitted.count), String(observed)]
      arguments.reserveCapacity(3 + 2 * merged.count)
      for (_, head) in merged {
        arguments.append(head.visitor)
        arguments.append(String(head.score))
      }
      let reply = try await redis.evaluate(
        Scripts.commit, keys: keys, arguments: arguments, on: nil, replicated: replicaWait
      ).get()
      guard let result = reply.array else {
        throw RoomStoreError(.unexpectedReply, "commit answered \(reply)")
      }
      if result.first?.string == "lost" { break }
      if result.first?.string == "no_room" { throw RoomStoreError(.noSuchRoom, "no room '\(room)'") }
      guard result.count == 6, let visitors = result[0].array, let consumed = result[1].int,
        let dropped = result[2].int, let queued = result[3].int, let nowActive = result[4].int,
        let time = result[5].int, consumed <= merged.count
      else { throw RoomStoreError(.unexpectedReply, "commit answered \(reply)") }
      admitted += visitors.compactMap(\.string)
      abandoned += dropped
      waiting = queued
      active = nowActive
      now = time
      scanned += consumed
      try await remove(merged.prefix(consumed).map(\.head.visitor), layout: layout)
      // Stopped by the cap or the bucket, or went through all there was.
      if consumed < merged.count || merged.isEmpty { break }
    }
  }

  /// Removes visitors from their shards (a visitor id names its shard). With replica waits,
  /// confirmed by a replica before the journal that names them is cleared: a failover must not
  /// bring back to a shard someone already admitted.
  private func remove(_ visitors: [String], layout: ShardLayout) async throws {
    var byShard = [[String]](repeating: [], count: layout.count)
    for visitor in visitors {
      guard let id = VisitorID(visitor) else { continue }
      byShard[layout.shard(of: id)].append(visitor)
    }
    let removals = byShard.indices.filter { !byShard[$0].isEmpty }.map { shard in
      redis.evaluate(
        Scripts.shardRemove, keys: [layout.queues[shard], layout.counters[shard]], arguments: byShard[shard],
        on: nil, replicated: replicaWait)
    }
    guard !removals.isEmpty else { return }
    let loop = removals[0].eventLoop
    _ = try await EventLoopFuture.whenAllSucceed(removals, on: loop).get()
  }

  private func unlock(entry: RoomEntry, lease: String) async throws -> RESPValue {
    try await redis.evaluate(
      Scripts.unlock, keys: [entry.keys.lease, entry.keys.journal], arguments: [lease], on: nil
    ).get()
  }

  /// A tick's lease outlives any tick (its rounds take milliseconds) and, should a gateway
  /// die holding it, stops the room's admissions for no longer than this.
  static let leaseMilliseconds = 3_000
  /// Rounds of reading and admitting in one tick (more only when heads were abandoned).
  static let roundsPerTick = 8
}
