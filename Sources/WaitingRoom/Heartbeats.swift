internal import FoyerCore
internal import NIOConcurrencyHelpers
internal import NIOCore
internal import RedisNIO

/// Visitors a heartbeat found gone from their room's queue, for every loop of a store: their
/// polls ask Redis again, which tells them where they stand. Bounded: a forgotten entry only
/// costs one sketched answer more, until the next heartbeat.
final class GoneVisitors: Sendable {
  struct Key: Hashable {
    var room: UInt32
    var visitor: VisitorID
  }

  static let capacity = 65_536
  private let keys = NIOLockedValueBox<Set<Key>>([])

  func contains(_ visitor: VisitorID, room: UInt32) -> Bool {
    keys.withLockedValue { !$0.isEmpty && $0.contains(Key(room: room, visitor: visitor)) }
  }

  func insert(_ visitors: [VisitorID], room: UInt32) {
    keys.withLockedValue { keys in
      if keys.count + visitors.count > Self.capacity { keys.removeAll(keepingCapacity: true) }
      for visitor in visitors { keys.insert(Key(room: room, visitor: visitor)) }
    }
  }

  func remove(_ visitor: VisitorID, room: UInt32) {
    keys.withLockedValue { keys in
      if !keys.isEmpty { keys.remove(Key(room: room, visitor: visitor)) }
    }
  }
}

/// The last-seen seconds that polls answered from the sketch owe Redis, written per event
/// loop in one pipeline per `interval`: per room a `ZADD XX CH` of up to `chunk` visitors, so
/// a poll never waits on a write and Redis sees one command for many visitors.
///
/// `XX` never puts back a visitor who has left the queue (admitted, abandoned, removed by an
/// operator); when a command changed fewer entries than it named, a `ZMSCORE` finds who is
/// gone (`GoneVisitors`). Loop-confined, like a channel handler.
final class Heartbeats {
  private let redis: RedisClient
  private let loop: any EventLoop
  private let interval: TimeAmount
  private let chunk: Int
  /// Per room (`RoomEntry.tag`) and queue shard: the entry, the queue, and the scores to write,
  /// by visitor, with the Redis second each one carries.
  private var pending: [Queue: (entry: RoomEntry, queue: String, scores: [VisitorID: Heartbeat])] = [:]

  struct Queue: Hashable {
    var room: UInt32
    var shard: Int
  }

  struct Heartbeat {
    var score: Int64
    var second: Int64
  }
  private var scheduled = false
  private let gone: GoneVisitors
  /// The loop's memo of last-seen seconds, told of every write that landed.
  private let memo: SeenMemo?

  init(
    redis: RedisClient, loop: any EventLoop, interval: TimeAmount, gone: GoneVisitors, memo: SeenMemo?,
    chunk: Int = 1_000
  ) {
    self.redis = redis
    self.loop = loop
    self.interval = interval
    self.gone = gone
    self.memo = memo
    self.chunk = chunk
  }

  /// Owes Redis `score` (a fresh last-seen second: `second`, unix) for `visitor`, waiting in
  /// `queue` (shard `shard` of the room; the room's queue by default); written with the next batch.
  func add(
    _ visitor: VisitorID, score: Int64, second: Int64, entry: RoomEntry, shard: Int = 0, queue: String? = nil
  ) {
    pending[Queue(room: entry.tag, shard: shard), default: (entry, queue ?? entry.keys.queue, [:])].scores[
      visitor] =
      Heartbeat(score: score, second: second)
    guard !scheduled else { return }
    scheduled = true
    loop.assumeIsolated().scheduleTask(in: interval) { self.flush() }
  }

  /// Writes everything owed now (also called when the interval ends).
  func flush() {
    scheduled = false
    let batches = pending
    pending = [:]
    for (_, batch) in batches {
      var members = Array(batch.scores)
      while !members.isEmpty {
        let part = Array(members.suffix(chunk))
        members.removeLast(part.count)
        write(part, entry: batch.entry, queue: batch.queue)
      }
    }
  }

  private func write(_ part: [(key: VisitorID, value: Heartbeat)], entry: RoomEntry, queue: String) {
    var command = RedisCommand("ZADD", queue, "XX", "CH")
    for (visitor, heartbeat) in part {
      command.append(String(heartbeat.score))
      command.append(visitor.description)
    }
    redis.send(command, on: loop).assumeIsolated().whenSuccess { reply in
      if let memo = self.memo {
        for (visitor, heartbeat) in part { memo.record(visitor, room: entry.tag, seen: heartbeat.second) }
      }
      guard let changed = reply.int, changed < part.count else { return }
      self.findGone(part.map(\.key), entry: entry, queue: queue)
    }
  }

  private func findGone(_ visitors: [VisitorID], entry: RoomEntry, queue: String) {
    var command = RedisCommand("ZMSCORE", queue)
    for visitor in visitors { command.append(visitor.description) }
    redis.send(command, on: loop).assumeIsolated().whenSuccess { reply in
      guard let scores = reply.array, scores.count == visitors.count else { return }
      self.gone.insert(zip(visitors, scores).filter { $0.1 == .null }.map(\.0), room: entry.tag)
    }
  }
}
