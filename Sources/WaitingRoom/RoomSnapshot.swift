internal import FoyerCore
internal import NIOCore
internal import RedisNIO

/// What a store builds once per room: its key names and the encoded poll commands. A class,
/// so that handing it to a poll is one reference, not a copy of eight strings and four arrays.
final class RoomEntry: Sendable {
  let keys: RoomKeys
  /// This store's number for the room (from 1), for the `SeenMemo`.
  let tag: UInt32
  /// `ZSCORE` and `ZRANK` of the queue, encoded once, with the visitor id as the slot.
  let score: RedisCommandTemplate
  let rank: RedisCommandTemplate
  /// The cluster slot of every key of the room (they share the `{room}` hash tag).
  let hashSlot: Int

  init(keys: RoomKeys, tag: UInt32) {
    self.keys = keys
    self.tag = tag
    hashSlot = HashSlot.of(keys.queue)
    score = RedisCommandTemplate(
      "ZSCORE", [keys.queue], slotIndex: 1, slotLength: VisitorID.encodedLength)
    rank = RedisCommandTemplate("ZRANK", [keys.queue], slotIndex: 1, slotLength: VisitorID.encodedLength)
  }
}

/// The room-level numbers a status answer needs, as one gateway last read them.
struct RoomSnapshot: Sendable {
  var state: RoomState
  var ratePerMinute: Int
  var abandonSeconds: Int
  var startsAtMilliseconds: Int64
  /// Queue shards (`RoomSettings.shards`): with more than one, positions are asked of every shard.
  var shards: Int
  var waiting: Int
  var measuredPerMinute: Int
  /// Visitors who left the queue's head (admitted, or found abandoned there) and places given
  /// back, since the room was made: what moves a sketched position.
  var popped: Int64
  var left: Int64
  /// A sharded room's per-shard `popped` and `left` (`RoomKeys.shardCounters`), which move
  /// positions sketched per shard; empty for one queue.
  var shardCounters: [(popped: Int64, left: Int64)] = []
  /// Redis `TIME` when read, and our monotonic clock then: Redis time is estimated from them.
  var redisMilliseconds: Int64
  var readAt: NIODeadline

  static func commands(_ keys: RoomKeys) -> [RedisCommand] {
    [
      RedisCommand(
        "HMGET", keys.settings, "state", "rate_per_minute", "abandon_seconds", "starts_at", "shards"),
      RedisCommand("ZCARD", keys.queue),
      RedisCommand("HMGET", keys.stats, "rate_1m", "admitted", "abandoned", "left", "queued"),
      RedisCommand("TIME"),
    ]
  }

  static func commands(shards layout: ShardLayout) -> [RedisCommand] {
    layout.counters.map { RedisCommand("HMGET", $0, "popped", "left") }
  }

  static func shardCounters(_ replies: ArraySlice<RESPValue>) throws -> [(popped: Int64, left: Int64)] {
    try replies.map { reply in
      guard let values = reply.array, values.count == 2 else {
        throw RoomStoreError(.unexpectedReply, "unexpected shard counters \(reply)")
      }
      return (Int64(values[0].int ?? 0), Int64(values[1].int ?? 0))
    }
  }

  /// Parses the replies of `commands`, in order.
  init(replies: ArraySlice<RESPValue>, room: String) throws {
    let values = Array(replies)
    guard values.count == 4, let settings = values[0].array, settings.count == 5, let stats = values[2].array,
      stats.count == 5, let time = values[3].array, time.count == 2, let seconds = time[0].int,
      let micros = time[1].int
    else { throw RoomStoreError(.unexpectedReply, "unexpected room snapshot \(values)") }
    guard let stateText = settings[0].string else { throw RoomStoreError(.noSuchRoom, "no room '\(room)'") }
    state = RoomState(rawValue: stateText) ?? .paused
    ratePerMinute = settings[1].int ?? 0
    abandonSeconds = settings[2].int ?? 120
    startsAtMilliseconds = Int64(settings[3].int ?? 0)
    shards = max(settings[4].int ?? 1, 1)
    // A sharded room counts its waiting visitors in its stats (`Scripts.commit` keeps it true).
    waiting = shards > 1 ? stats[4].int ?? 0 : values[1].int ?? 0
    measuredPerMinute = stats[0].int ?? 0
    popped = Int64(stats[1].int ?? 0) + Int64(stats[2].int ?? 0)
    left = Int64(stats[3].int ?? 0)
    redisMilliseconds = Int64(seconds) * 1_000 + Int64(micros / 1_000)
    readAt = .now()
  }

  var age: TimeAmount { .now() - readAt }

  var redisNowMilliseconds: Int64 { redisMilliseconds + age.nanoseconds / 1_000_000 }

  func place(position: Int, now: Int64, visitor: VisitorID, score: Int64?) -> QueuePosition {
    let estimate = WaitEstimate(
      position: position, measuredPerMinute: measuredPerMinute, configuredPerMinute: ratePerMinute,
      admitting: state == .queue, secondsUntilStart: Int((startsAtMilliseconds - now + 999) / 1_000),
      abandonSeconds: abandonSeconds, random: PollJitter.fraction(visitor: visitor, now: now))
    return QueuePosition(
      position: position, waiting: max(waiting, position), state: state,
      startsAtMilliseconds: startsAtMilliseconds,
      nowMilliseconds: now, estimate: estimate, score: score)
  }
}

/// The queue score layout shared with the Lua scripts: `order * 8192 + last-seen second % 8192`.
enum QueueScore {
  static let seenModulus: Int64 = 8_192

  /// A `ZSCORE` reply as the exact integer it holds; `nil` for a visitor not in the queue.
  /// Redis writes integral scores as digits, read without a string; any other form is
  /// parsed as a double.
  static func parse(_ reply: RESPValue) -> Int64? {
    if let value = reply.int { return Int64(value) }
    return reply.string.flatMap { Double($0) }.map { Int64($0) }
  }

  /// The score with a fresh last-seen second, or `nil` when the stored one is recent enough.
  /// Rewriting at most every quarter of the abandonment time (1–15 s) keeps polls mostly
  /// read-only while a polling visitor is never judged gone.
  static func touched(_ score: Int64, nowMilliseconds: Int64, abandonSeconds: Int) -> Int64? {
    let nowSecond = nowMilliseconds / 1_000
    let seen = seenSecond(score, nowSecond: nowSecond)
    guard !isRecent(seen: seen, nowSecond: nowSecond, abandonSeconds: abandonSeconds) else { return nil }
    return score - score % seenModulus + nowSecond % seenModulus
  }

  /// The score's last-seen second as unix seconds, given Redis' current second (the score
  /// keeps it modulo `seenModulus`, about 2.3 hours, far longer than any abandonment time).
  static func seenSecond(_ score: Int64, nowSecond: Int64) -> Int64 {
    nowSecond - (nowSecond % seenModulus - score % seenModulus + seenModulus) % seenModulus
  }

  /// Whether a last-seen second needs no rewrite yet.
  static func isRecent(seen: Int64, nowSecond: Int64, abandonSeconds: Int) -> Bool {
    nowSecond - seen < Int64(max(1, min(abandonSeconds / 4, 15)))
  }
}

/// Jitter for poll intervals: a hash of the visitor and the time, not the system random
/// generator — that costs a `getrandom` system call, and this runs on every poll. Polls
/// only need spreading, not unpredictability.
enum PollJitter {
  static func fraction(visitor: VisitorID, now: Int64) -> Double {
    // SplitMix64 finaliser over the visitor's bits and the millisecond.
    var z = visitor.low ^ visitor.high ^ UInt64(bitPattern: now) &* 0x9E37_79B9_7F4A_7C15
    z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
    z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
    z ^= z >> 31
    return Double(z >> 11) / Double(1 << 53)
  }
}

/// What a store keeps of one room: its entry, its last snapshot, and where its queue shards
/// live (nil: one queue, in the room's slot).
struct CachedRoom: Sendable {
  let entry: RoomEntry
  var snapshot: RoomSnapshot?
  var layout: ShardLayout?

  init(entry: RoomEntry) {
    self.entry = entry
  }
}
