public import FoyerCore
internal import NIOConcurrencyHelpers
public import NIOCore
public import RedisNIO

/// The Redis keys of one room. Every key carries the room in a hash tag (`{room}`), so a
/// room's keys share a Redis Cluster slot and its scripts may touch them all.
public struct RoomKeys: Sendable, Hashable {
  public let room: String
  public let queue, active, claimed, settings, bucket, stats, minute: String
  /// Passes given back before they ran out: `visitor:expirySeconds` scored by Redis time in
  /// milliseconds, kept a day (the longest a session may be).
  public let revoked: String
  /// Nonces of challenges whose solutions bought a place, scored by their expiry (ms).
  public let solved: String
  /// The room's traffic rules: a JSON array the admin API writes and gateways read.
  public let rules: String
  /// The queue's last `PlaceSketch`, shared by every gateway (`Scripts.sketch`).
  public let sketch: String
  /// Held by the gateway running a sharded room's admission tick (`Scripts.reserve`).
  public let lease: String
  /// The visitors a sharded tick admitted or dropped and has still to remove from their shards.
  public let journal: String

  /// The set of room ids (outside any room's slot; never touched by a room script).
  public static let rooms = "foyer:rooms"

  public init(room: String) {
    self.room = room
    let prefix = "foyer:{\(room)}:"
    queue = prefix + "queue"
    active = prefix + "active"
    claimed = prefix + "claimed"
    settings = prefix + "settings"
    bucket = prefix + "bucket"
    stats = prefix + "stats"
    minute = prefix + "minute"
    revoked = prefix + "revoked"
    solved = prefix + "solved"
    rules = prefix + "rules"
    sketch = prefix + "sketch"
    lease = prefix + "ticking"
    journal = prefix + "removing"
  }

  /// The queues of a room with `count` shards: with one, `queue`; with more, one per shard,
  /// each under a hash tag of its own (`room:q<index>.<n>`, with the first n that puts it in
  /// the index-th of `count` equal ranges of slots), so a cluster whose primaries split the
  /// slots evenly keeps each shard on a different one.
  public func shardQueues(_ count: Int) -> [String] {
    count > 1 ? shardPrefixes(count).map { $0 + "queue" } : [queue]
  }

  /// Per shard, the counters of visitors who left it (`popped`: admitted or dropped at the
  /// head; `left`) and its sketch; with one queue, the room's own stats and sketch.
  public func shardCounters(_ count: Int) -> [String] {
    count > 1 ? shardPrefixes(count).map { $0 + "counts" } : [stats]
  }

  public func shardSketches(_ count: Int) -> [String] {
    count > 1 ? shardPrefixes(count).map { $0 + "sketch" } : [sketch]
  }

  private func shardPrefixes(_ count: Int) -> [String] {
    (0..<count).map { index in
      var chosen = 0
      for n in 0..<1_000 where HashSlot.of("\(room):q\(index).\(n)") * count / HashSlot.count == index {
        chosen = n
        break
      }
      return "foyer:{\(room):q\(index).\(chosen)}:"
    }
  }

  /// The order every script expects its keys in.
  public var scriptKeys: [String] {
    [queue, active, claimed, settings, bucket, stats, minute, revoked, solved]
  }

  /// A client's counters in this room (in the room's slot): places taken in a day, and new
  /// visitor ids given in a minute.
  public func clientKeys(_ client: String) -> [String] {
    let prefix = "foyer:{\(room)}:"
    return [prefix + "places:" + client, prefix + "minted:" + client]
  }
}

/// Who joins, for the per-client limits: the client's key (`ClientIdentity`), whether the
/// visitor id was made for this request, and how many new ids a client may get per minute.
public struct JoiningClient: Sendable, Hashable {
  public var key: String
  public var newVisitor: Bool
  public var newVisitorsPerMinute: Int

  public init(key: String, newVisitor: Bool, newVisitorsPerMinute: Int) {
    self.key = key
    self.newVisitor = newVisitor
    self.newVisitorsPerMinute = newVisitorsPerMinute
  }
}

/// Where a waiting visitor stands.
public struct QueuePosition: Sendable, Hashable {
  /// 1 = next in line.
  public let position: Int
  public let waiting: Int
  public let state: RoomState
  /// Unix milliseconds of the on-sale start (0 = started).
  public let startsAtMilliseconds: Int64
  /// Redis time of the answer, unix milliseconds.
  public let nowMilliseconds: Int64
  public let estimate: WaitEstimate
  /// The visitor's queue score as Redis holds it (order and last-seen second), when this
  /// answer knows it: the gateway signs it into the place cookie, with which later polls are
  /// answered from the room's sketch (`RoomStore.status(…place:…)`).
  public let score: Int64?
}

/// The answer to a join or a status poll.
public enum VisitorStatus: Sendable, Hashable {
  case queued(QueuePosition)
  /// Admitted but not yet claimed: must claim before `claimDeadline` (unix ms).
  case admitted(claimDeadlineMilliseconds: Int64)
  /// Claimed: shopping until `sessionEnd` (unix ms), which is also the pass expiry.
  case active(sessionEndMilliseconds: Int64)
  /// Not waiting and not admitted (never joined, abandoned, left, or session over).
  case absent(RoomState)
  /// The room refuses joins.
  case closed
  /// The room is not protected; forward the visitor.
  case passthrough
  /// `max_queue` reached.
  case full(waiting: Int)
  /// The client is over a limit: no place taken.
  case refused(ClientLimit, retryAfterSeconds: Int)
  /// The room asks for proof of work of this many bits before a place is given; the sale
  /// starts at `startsAtMilliseconds` (unix ms, 0 = started), for the page's countdown.
  case challenge(bits: Int, startsAtMilliseconds: Int64)

  /// Not in the queue: a poll that finds this joins.
  public var isAbsent: Bool {
    if case .absent = self { true } else { false }
  }
}

/// Which per-client limit refused a join; the raw values are the API's error codes. (A
/// trivial payload keeps `VisitorStatus`, on every poll's path, free of reference counting.)
public enum ClientLimit: String, Sendable, Hashable {
  case tooManyPlaces = "too_many_places"
  case tooManyVisitors = "too_many_visitors"
}

/// One admission tick's outcome.
public struct AdmissionTick: Sendable, Hashable {
  public let admitted: [String]
  public let abandoned: Int
  public let waiting: Int
  public let active: Int
  /// Redis time of the tick, unix milliseconds.
  public let timeMilliseconds: Int64
}

/// Why a visitor's slot or place was given up.
public enum ReleaseReason: String, Sendable {
  /// Checkout complete (`Foyer-Release: done`).
  case done
  /// The visitor left (`POST /_foyer/leave`).
  case left
  /// An operator took the slot back (`DELETE /rooms/{room}/visitors/{visitor}`).
  case `operator`
}

/// A pass given back before it ran out: refused by every gateway until `passExpiry`.
public struct Revocation: Sendable, Hashable {
  public var visitor: VisitorID
  /// The revoked pass's expiry, Unix seconds (a later pass of the same visitor is valid).
  public var passExpiry: Int64
  /// Redis time of the release.
  public var atMilliseconds: Int64

  public init(visitor: VisitorID, passExpiry: Int64, atMilliseconds: Int64) {
    self.visitor = visitor
    self.passExpiry = passExpiry
    self.atMilliseconds = atMilliseconds
  }
}

public enum ReleaseResult: String, Sendable {
  case released, left, none
}

/// Counters and live numbers of a room.
public struct RoomStats: Sendable, Hashable, Codable {
  public var waiting = 0
  public var active = 0
  public var claimedActive = 0
  public var joined = 0
  public var admitted = 0
  public var claimed = 0
  public var noShows = 0
  public var released = 0
  public var expired = 0
  public var abandoned = 0
  public var left = 0
  /// Admissions over the last minute, as measured in Redis.
  public var admittedLastMinute = 0
}

/// Failures of the room store, mapped to clear answers at the HTTP edges.
public struct RoomStoreError: Error, Hashable, Sendable, CustomStringConvertible {
  public struct Code: Hashable, Sendable, CustomStringConvertible {
    private enum Base: String {
      case noSuchRoom, roomExists, invalidRoomID, invalidSettings, fixedSetting, unexpectedReply
    }
    private let base: Base
    private init(_ base: Base) { self.base = base }
    public static let noSuchRoom = Code(.noSuchRoom)
    public static let roomExists = Code(.roomExists)
    public static let invalidRoomID = Code(.invalidRoomID)
    public static let invalidSettings = Code(.invalidSettings)
    /// A valid value for a setting that cannot change once the room is made.
    public static let fixedSetting = Code(.fixedSetting)
    public static let unexpectedReply = Code(.unexpectedReply)
    public var description: String { base.rawValue }
  }

  public let code: Code
  public let message: String

  public init(_ code: Code, _ message: String) {
    self.code = code
    self.message = message
  }

  public var description: String { message }
}

/// The waiting rooms, kept in Redis: the API the gateway, the admission loop and
/// `foyer ctl` use. Stateless itself; any number of stores on any number of gateways agree.
public final class RoomStore: Sendable {
  public let redis: RedisClient
  /// How old the room-level numbers in a status answer (waiting count, state, measured
  /// rate) may be. Each gateway refreshes them inside the poll that finds them older, so
  /// the hot path is two reads of one visitor.
  public let snapshotMaxAge: TimeAmount
  /// Joins and admissions wait for this many replicas to confirm them (a failover then loses
  /// no acknowledged place); `nil`: acknowledged once the primary has them.
  public let replicaWait: ReplicaWait?
  /// Per room: its key names and poll commands (built once), the last snapshot, and where its
  /// queue shards live (nil: one queue, in the room's slot).
  private let rooms = NIOLockedValueBox<[String: CachedRoom]>([:])
  /// Per event loop of `redis`: the last-seen seconds its polls learned, made by the first
  /// poll there (a store that never polls, as in `foyer ctl`, makes none).
  private let seenMemos: [ObjectIdentifier: NIOLoopBoundBox<SeenMemo?>]
  /// How polls that bring the visitor's queue score are answered from the room's sketch.
  public let sketching: Sketching
  /// Per room, the last sketch read (one per queue shard) and whether a read is under way.
  private let sketches = NIOLockedValueBox<
    [String: (sketches: [PlaceSketch], readAt: NIODeadline, reading: Bool)]
  >([:])
  /// Per event loop: the heartbeats that sketched polls owe Redis.
  private let heartbeats: [ObjectIdentifier: NIOLoopBoundBox<Heartbeats?>]
  let gone = GoneVisitors()

  /// Positions from the sketch: exact (from Redis) below `exactBelow`, and below wherever the
  /// admissions since the counters were read could move a position by more than `error` of
  /// it; the sketch read again once older than `maxAge`, heartbeats written every
  /// `heartbeatInterval`.
  public struct Sketching: Sendable, Equatable {
    public var exactBelow: Int
    public var error: Double
    public var maxAge: TimeAmount
    public var heartbeatInterval: TimeAmount

    public init(
      exactBelow: Int = 1_000, error: Double = 0.005, maxAge: TimeAmount = .seconds(1),
      heartbeatInterval: TimeAmount = .seconds(1)
    ) {
      self.exactBelow = exactBelow
      self.error = error
      self.maxAge = maxAge
      self.heartbeatInterval = heartbeatInterval
    }

    /// Sample spacing: each sample at most this share of its rank after the one before, so
    /// interpolation stays within `error` with room for the counters' own.
    var growth: Double { error * 0.8 }

    /// Whether heartbeats written up to `heartbeatInterval` late still beat abandonment: a poll
    /// comes at most a third of `abandon_seconds` after the last one (`WaitEstimate`) and a
    /// second falls due after a quarter, so an admission tick may see a second as old as
    /// 7/12 of `abandon_seconds` plus the batch's delay.
    func allowsSketch(abandonSeconds: Int) -> Bool {
      Double(abandonSeconds) * 5 / 12 >= Double(heartbeatInterval.nanoseconds) / 1e9
    }

    /// Below this position a sketch that `popped` visitors have left the head of since it was
    /// made is too coarse: its spacing was `growth` of the ranks those positions then had.
    public func exactBelow(poppedSinceSketch popped: Int64) -> Int {
      max(exactBelow, Int((Double(max(popped, 0)) * growth / (error - growth)).rounded(.up)))
    }
  }

  public init(
    redis: RedisClient, snapshotMaxAge: TimeAmount = .milliseconds(250), replicaWait: ReplicaWait? = nil,
    sketching: Sketching = Sketching()
  ) {
    self.redis = redis
    self.snapshotMaxAge = snapshotMaxAge
    self.replicaWait = replicaWait
    self.sketching = sketching
    var memos: [ObjectIdentifier: NIOLoopBoundBox<SeenMemo?>] = [:]
    var heartbeats: [ObjectIdentifier: NIOLoopBoundBox<Heartbeats?>] = [:]
    for loop in redis.eventLoops {
      memos[ObjectIdentifier(loop)] = .makeEmptyBox(valueType: SeenMemo.self, eventLoop: loop)
      heartbeats[ObjectIdentifier(loop)] = .makeEmptyBox(valueType: Heartbeats.self, eventLoop: loop)
    }
    seenMemos = memos
    self.heartbeats = heartbeats
  }

  /// Below this position a poll asks Redis: the front, and as far back as the admissions
  /// since the snapshot's counters were read (its age and one admission tick, at the
  /// configured rate; none while paused) are more than `error` of the position.
  func exactBelow(_ snapshot: RoomSnapshot) -> Int {
    guard snapshot.state == .queue else { return sketching.exactBelow }
    let stale = Double(snapshot.age.nanoseconds + AdmissionLoopConfiguration.busyTick.nanoseconds) / 1e9
    let moved = Double(snapshot.ratePerMinute) / 60 * stale
    return max(sketching.exactBelow, Int((moved / sketching.error).rounded(.up)))
  }

  // MARK: Visitors (futures: called from channel handlers on their event loop)

  /// Joins `visitor` to `room`, or reports where the visitor already is (never moves them).
  /// `solved` is a challenge whose work the caller has verified (`Challenge.verify`).
  public func join(
    room: String, visitor: VisitorID, client: JoiningClient? = nil, solved: Challenge? = nil,
    on eventLoop: (any EventLoop)? = nil
  ) -> EventLoopFuture<VisitorStatus> {
    let random = String(Int.random(in: 0..<(1 << 31)))
    let arguments = [
      visitor.description, random, client?.newVisitor == true ? "1" : "0",
      String(client?.newVisitorsPerMinute ?? 0),
      solved?.nonce ?? "", String(solved?.expiry ?? 0), String(solved?.bits ?? 0),
    ]
    let loop = redis.loop(eventLoop)
    return routedByShards(room, on: loop) { cached in
      if let layout = cached.layout {
        return self.shardedJoin(
          room: room, entry: cached.entry, layout: layout, visitor: visitor, client: client,
          arguments: arguments,
          loop: loop)
      }
      let keys = cached.entry.keys
      return self.redis.evaluate(
        Scripts.join, keys: keys.scriptKeys + (client.map { keys.clientKeys($0.key) } ?? []),
        arguments: arguments + ["1"], on: loop, replicated: self.replicaWait
      ).flatMapThrowing { reply in try Self.status(from: reply, room: room) }
    }
  }

  /// Runs `operation` with the room as this store knows it; when a script answers that the
  /// room has another number of shards (made again, or not yet known here), learns it and
  /// runs `operation` once more.
  private func routedByShards<Value: Sendable>(
    _ room: String, on loop: any EventLoop,
    _ operation: @escaping @Sendable (CachedRoom) -> EventLoopFuture<Value>
  ) -> EventLoopFuture<Value> {
    operation(entry(room)).flatMapError { error in
      guard let differ = error as? ShardsDiffer else { return loop.makeFailedFuture(error) }
      return operation(self.learnShards(room, count: differ.count))
    }
  }

  /// Records how many shards the room has; returns the room as now known.
  @discardableResult
  func learnShards(_ room: String, count: Int) -> CachedRoom {
    rooms.withLockedValue { rooms in
      var cached =
        rooms[room] ?? CachedRoom(entry: RoomEntry(keys: RoomKeys(room: room), tag: UInt32(rooms.count + 1)))
      if (cached.layout?.count ?? 1) != count {
        cached.layout = count > 1 ? ShardLayout(keys: cached.entry.keys, count: count) : nil
      }
      rooms[room] = cached
      return cached
    }
  }

  /// The room's snapshot, read again when older than `snapshotMaxAge`.
  /// The room's snapshot, read again when older than `snapshotMaxAge`; with `layout`, one that
  /// also has the shards' counters.
  func currentSnapshot(
    room: String, entry: RoomEntry, layout: ShardLayout?, loop: any EventLoop
  ) -> EventLoopFuture<RoomSnapshot> {
    if let snapshot = self.entry(room).snapshot, snapshot.age < snapshotMaxAge,
      snapshot.shardCounters.count == (layout?.count ?? 0)
    {
      return loop.makeSucceededFuture(snapshot)
    }
    let commands = RoomSnapshot.commands(entry.keys)
    let shardCommands = layout.map(RoomSnapshot.commands(shards:)) ?? []
    return redis.send(pipeline: commands + shardCommands, on: loop).flatMapThrowing { replies in
      var snapshot = try RoomSnapshot(replies: replies[..<commands.count], room: room)
      if layout != nil { snapshot.shardCounters = try RoomSnapshot.shardCounters(replies[commands.count...]) }
      self.store(snapshot, room: room)
      return snapshot
    }
  }

  /// Keeps a snapshot just read, and the number of shards it tells.
  private func store(_ snapshot: RoomSnapshot, room: String) {
    rooms.withLockedValue { $0[room]?.snapshot = snapshot }
    if (entry(room).layout?.count ?? 1) != snapshot.shards { learnShards(room, count: snapshot.shards) }
  }

  /// Where `visitor` stands; with `claim`, an unclaimed admission becomes a session.
  ///
  /// The hot path — a waiting visitor polling — is `ZRANK`, with `ZSCORE` pipelined before
  /// it unless this event loop saw the visitor's last-seen second recently (`SeenMemo`):
  /// position is exact, the room-level numbers come from this gateway's snapshot (refreshed
  /// in the same round trip when older than `snapshotMaxAge`), and the last-seen second is
  /// rewritten only when it has aged (a conditional `ZADD XX`, fire and forget). Anyone not
  /// in the queue goes through the `status` script, which also claims.
  ///
  /// With `place`, the visitor's queue score as the gateway signed it (`QueuePosition.score`),
  /// a visitor well behind the front is answered from the room's sketch with no Redis round
  /// trip; the last-seen second, when due, goes out with the loop's next heartbeat batch.
  public func status(
    room: String, visitor: VisitorID, place: Int64? = nil, claim: Bool = false,
    on eventLoop: (any EventLoop)? = nil
  )
    -> EventLoopFuture<VisitorStatus>
  {
    let loop = redis.loop(eventLoop)
    let promise = loop.makePromise(of: VisitorStatus.self)
    if loop.inEventLoop {
      poll(
        room: room, visitor: visitor, place: place, claim: claim, loop: loop, completion: promise.completeWith
      )
    } else {
      loop.execute {
        self.poll(
          room: room, visitor: visitor, place: place, claim: claim, loop: loop,
          completion: promise.completeWith)
      }
    }
    return promise.futureResult
  }

  /// `status` for a caller running on `eventLoop` (a channel handler), answered through
  /// `completion` on that loop: the gateway's most frequent request, without a future chain.
  public func status(
    room: String, visitor: VisitorID, place: Int64? = nil, claim: Bool, on eventLoop: any EventLoop,
    completion: @escaping (Result<VisitorStatus, any Error>) -> Void
  ) {
    eventLoop.preconditionInEventLoop()
    guard redis.owns(eventLoop) else {
      // Not one of the client's loops: its connections live elsewhere; come back here.
      status(room: room, visitor: visitor, place: place, claim: claim, on: eventLoop).hop(to: eventLoop)
        .assumeIsolated().whenComplete(completion)
      return
    }
    poll(room: room, visitor: visitor, place: place, claim: claim, loop: eventLoop, completion: completion)
  }

  /// Both `status` calls, on `loop`, one of the client's.
  private func poll(
    room: String, visitor: VisitorID, place: Int64?, claim: Bool, loop: any EventLoop,
    completion: @escaping (Result<VisitorStatus, any Error>) -> Void
  ) {
    let known = self.entry(room)
    let (entry, snapshot) = (known.entry, known.snapshot)
    let cached = snapshot.flatMap { $0.age < snapshotMaxAge ? $0 : nil }
    if let place,
      let answer = sketched(
        room, entry: entry, layout: known.layout, snapshot: cached, visitor: visitor, score: place, loop: loop
      )
    {
      completion(.success(answer))
      return
    }
    if let layout = known.layout {
      shardedStatus(room: room, entry: entry, layout: layout, visitor: visitor, claim: claim, loop: loop)
        .flatMapError { error in
          // The room was made again with another number of shards.
          guard let differ = error as? ShardsDiffer else { return loop.makeFailedFuture(error) }
          self.learnShards(room, count: differ.count)
          return self.status(room: room, visitor: visitor, claim: claim, on: loop)
        }
        .assumeIsolated().whenComplete(completion)
      return
    }
    let refresh = cached == nil ? RoomSnapshot.commands(entry.keys) : []
    let memo = seenMemo(on: loop)
    // Any snapshot tells Redis' time; an aged one is refreshed by these very commands.
    let seenRecently =
      if let snapshot, let seen = memo?.seen(visitor, room: entry.tag) {
        QueueScore.isRecent(
          seen: seen, nowSecond: snapshot.redisNowMilliseconds / 1_000,
          abandonSeconds: snapshot.abandonSeconds)
      } else {
        false
      }
    let visitorCommands = seenRecently ? 1 : 2
    redis.send(count: visitorCommands + refresh.count, slot: entry.hashSlot, on: loop) { buffer in
      // Closure literals, not `visitor.encode(into:)`: a method reference would be a heap context.
      if !seenRecently { entry.score.encode(into: &buffer) { visitor.encode(into: $0) } }
      entry.rank.encode(into: &buffer) { visitor.encode(into: $0) }
      for command in refresh { command.encode(into: &buffer) }
    } completion: { result in
      let snapshot: RoomSnapshot
      let replies: [RESPValue]
      do {
        replies = try result.get()
        if let cached {
          snapshot = cached
        } else {
          snapshot = try RoomSnapshot(replies: replies[visitorCommands...], room: room)
          self.store(snapshot, room: room)
        }
      } catch {
        completion(.failure(error))
        return
      }
      if snapshot.shards > 1 {
        // The room is sharded after all: its queue is not where these commands looked.
        self.poll(room: room, visitor: visitor, place: nil, claim: claim, loop: loop, completion: completion)
        return
      }
      let score = seenRecently ? nil : QueueScore.parse(replies[0])
      guard seenRecently || score != nil, let rank = replies[visitorCommands - 1].int else {
        memo?.forget(visitor, room: entry.tag)
        self.routedByShards(room, on: loop) { cached in
          if let layout = cached.layout {
            return self.shardedStatus(
              room: room, entry: cached.entry, layout: layout, visitor: visitor, claim: claim, loop: loop)
          }
          return self.visitorScript(
            Scripts.status, room: room, arguments: [visitor.description, claim ? "1" : "0", "1"], on: loop)
        }.assumeIsolated().whenComplete(completion)
        return
      }
      let now = snapshot.redisNowMilliseconds
      var answered = score
      if let score {
        answered = self.touchIfAged(
          score, visitor: visitor, entry: entry, snapshot: snapshot, memo: memo, loop: loop)
        self.gone.remove(visitor, room: entry.tag)
      }
      completion(
        .success(.queued(snapshot.place(position: rank + 1, now: now, visitor: visitor, score: answered))))
    }
  }

  /// The answer from the room's sketch, or `nil` when Redis must be asked: the visitor is
  /// near the front, the room has not started (pre-queue places still move), the snapshot
  /// has aged or no sketch has been read yet, or a heartbeat found the visitor gone. Reads
  /// the sketch again when aged.
  private func sketched(
    _ room: String, entry: RoomEntry, layout: ShardLayout?, snapshot: RoomSnapshot?, visitor: VisitorID,
    score: Int64, loop: any EventLoop
  ) -> VisitorStatus? {
    let (sketches, read) = self.sketches.withLockedValue { sketches -> ([PlaceSketch], Bool) in
      let state = sketches[room]
      // Sketches of another layout (read before this store knew the room's shards) are stale too.
      let aged =
        state.map {
          .now() - $0.readAt >= sketching.maxAge
            || (!$0.sketches.isEmpty && $0.sketches.count != (layout?.count ?? 1))
        } ?? true
      guard aged, state?.reading != true else { return (state?.sketches ?? [], false) }
      sketches[room] = (state?.sketches ?? [], state?.readAt ?? .uptimeNanoseconds(0), true)
      return (state?.sketches ?? [], true)
    }
    if read { readSketch(room, layout: layout ?? ShardLayout(keys: entry.keys, count: 1), loop: loop) }
    guard let snapshot, snapshot.shards == (layout?.count ?? 1),
      snapshot.state == .queue || snapshot.state == .paused,
      snapshot.redisNowMilliseconds >= snapshot.startsAtMilliseconds,
      sketching.allowsSketch(abandonSeconds: snapshot.abandonSeconds)
    else { return nil }
    let now = snapshot.redisNowMilliseconds
    let shard = layout?.shard(of: visitor) ?? 0
    guard let heartbeats = heartbeats(on: loop), !gone.contains(visitor, room: entry.tag),
      let (position, poppedSince) = Self.sketchedPosition(
        sketches, layout: layout, snapshot: snapshot, visitor: visitor, score: score),
      position >= exactBelow(snapshot),
      position >= sketching.exactBelow(poppedSinceSketch: poppedSince)
    else { return nil }
    var answered = score
    // Due by the place's own second, unless this loop wrote a later one (a client that does
    // not keep the newest place cookie would otherwise owe one on every poll).
    let seenHere = seenMemo(on: loop)?.seen(visitor, room: entry.tag)
    let writtenHere =
      seenHere.map {
        QueueScore.isRecent(seen: $0, nowSecond: now / 1_000, abandonSeconds: snapshot.abandonSeconds)
      } ?? false
    if !writtenHere,
      let touched = QueueScore.touched(score, nowMilliseconds: now, abandonSeconds: snapshot.abandonSeconds)
    {
      heartbeats.add(
        visitor, score: touched, second: now / 1_000, entry: entry, shard: shard, queue: layout?.queues[shard]
      )
      answered = touched
    }
    return .queued(snapshot.place(position: position, now: now, visitor: visitor, score: answered))
  }

  /// The position the sketches give a visitor whose queue score is `score`, and how many left
  /// the heads since they were made; `nil` where they cannot tell (Redis is asked). With
  /// shards: the visitor's place in its own shard plus, in each other shard, those ahead of
  /// its join millisecond (in the room's order, `ShardLayout`).
  static func sketchedPosition(
    _ sketches: [PlaceSketch], layout: ShardLayout?, snapshot: RoomSnapshot, visitor: VisitorID, score: Int64
  ) -> (position: Int, poppedSince: Int64)? {
    guard let layout else {
      guard let sketch = sketches.first,
        let position = sketch.position(
          score: score, visitor: visitor, popped: snapshot.popped, left: snapshot.left)
      else { return nil }
      return (position, snapshot.popped - sketch.popped)
    }
    guard sketches.count == layout.count, snapshot.shardCounters.count == layout.count else { return nil }
    let own = layout.shard(of: visitor)
    let order = score / QueueScore.seenModulus
    var ahead = 0
    var poppedSince: Int64 = 0
    for shard in 0..<layout.count {
      let sketch = sketches[shard]
      let counters = snapshot.shardCounters[shard]
      poppedSince += max(counters.popped - sketch.popped, 0)
      if shard == own {
        guard
          let position = sketch.position(
            score: score, visitor: visitor, popped: counters.popped, left: counters.left)
        else { return nil }
        ahead += position - 1
      } else {
        let bound = (shard < own ? order + 1 : order) * QueueScore.seenModulus
        guard let count = sketch.ahead(ofScore: bound, popped: counters.popped, left: counters.left) else {
          return nil
        }
        ahead += count
      }
    }
    return (ahead + 1, poppedSince)
  }

  /// Reads the room's sketches (made now by whichever gateway asks first once they have aged);
  /// one queue is a layout of one: the room's queue, stats and sketch.
  private func readSketch(_ room: String, layout: ShardLayout, loop: any EventLoop) {
    let read = EventLoopFuture.whenAllSucceed(
      layout.queues.indices.map { shard in
        sketch(
          keys: layout.sketchKeys(shard), exactBelow: sketching.exactBelow, growth: sketching.growth,
          maxAge: sketching.maxAge, on: loop)
      }, on: loop)
    read.whenComplete { result in
      self.sketches.withLockedValue { sketches in
        let previous = sketches[room]
        switch result {
        case .success(let read): sketches[room] = (read, .now(), false)
        case .failure:
          // Tried again after another `maxAge`; polls meanwhile use the last one, or Redis.
          sketches[room] = (previous?.sketches ?? [], .now(), false)
        }
      }
    }
  }

  private func heartbeats(on eventLoop: any EventLoop) -> Heartbeats? {
    guard let box = heartbeats[ObjectIdentifier(eventLoop)] else { return nil }
    if let batch = box.value { return batch }
    let batch = Heartbeats(
      redis: redis, loop: eventLoop, interval: sketching.heartbeatInterval, gone: gone,
      memo: seenMemo(on: eventLoop))
    box.value = batch
    return batch
  }

  private func seenMemo(on eventLoop: any EventLoop) -> SeenMemo? {
    guard let box = seenMemos[ObjectIdentifier(eventLoop)] else { return nil }
    if let memo = box.value { return memo }
    let memo = SeenMemo()
    box.value = memo
    return memo
  }

  /// Rewrites the last-seen second of a score that has aged, and records in `memo` what Redis
  /// holds (a rewrite only once it succeeded). Returns the score Redis will hold.
  private func touchIfAged(
    _ score: Int64, visitor: VisitorID, entry: RoomEntry, snapshot: RoomSnapshot, memo: SeenMemo?,
    loop: any EventLoop
  ) -> Int64 {
    let now = snapshot.redisNowMilliseconds
    guard
      let touched = QueueScore.touched(score, nowMilliseconds: now, abandonSeconds: snapshot.abandonSeconds)
    else {
      memo?.record(visitor, room: entry.tag, seen: QueueScore.seenSecond(score, nowSecond: now / 1_000))
      return score
    }
    redis.send(RedisCommand("ZADD", entry.keys.queue, "XX", String(touched), visitor.description), on: loop)
      .assumeIsolated().whenSuccess { _ in memo?.record(visitor, room: entry.tag, seen: now / 1_000) }
    return touched
  }

  /// Claims an admission: `.active` with the session end, or `.absent` if not admitted (any more).
  public func claim(
    room: String, visitor: VisitorID, on eventLoop: (any EventLoop)? = nil
  ) -> EventLoopFuture<VisitorStatus> {
    visitorScript(Scripts.claim, room: room, arguments: [visitor.description], on: eventLoop)
  }

  public func release(
    room: String, visitor: VisitorID, reason: ReleaseReason, on eventLoop: (any EventLoop)? = nil
  )
    -> EventLoopFuture<ReleaseResult>
  {
    let loop = redis.loop(eventLoop)
    return routedByShards(room, on: loop) { cached in
      if let layout = cached.layout {
        return self.shardedRelease(
          room: room, entry: cached.entry, layout: layout, visitor: visitor, loop: loop)
      }
      return self.redis.evaluate(
        Scripts.release, keys: cached.entry.keys.scriptKeys, arguments: [visitor.description, "1"], on: loop
      ).flatMapThrowing { reply in try Self.releaseResult(reply) }
    }
  }

  static func releaseResult(_ reply: RESPValue) throws -> ReleaseResult {
    if let values = reply.array, values.count == 2, values[0].string == "shards" {
      throw ShardsDiffer(count: values[1].int ?? 1)
    }
    guard let text = reply.string, let result = ReleaseResult(rawValue: text) else {
      throw RoomStoreError(.unexpectedReply, "release answered \(reply)")
    }
    return result
  }

  /// The passes of `room` given back since Redis time `sinceMilliseconds` (inclusive: a
  /// release in the same millisecond as the last one read is not missed), oldest first.
  public func revocations(
    room: String, sinceMilliseconds: Int64, limit: Int = 1_000, on eventLoop: (any EventLoop)? = nil
  ) -> EventLoopFuture<[Revocation]> {
    let command = RedisCommand(
      "ZRANGEBYSCORE", entry(room).entry.keys.revoked, String(sinceMilliseconds), "+inf", "WITHSCORES",
      "LIMIT",
      "0", String(limit))
    return redis.send(command, on: eventLoop).flatMapThrowing { reply in
      guard let values = reply.array, values.count % 2 == 0 else {
        throw RoomStoreError(.unexpectedReply, "revocations answered \(reply)")
      }
      var revocations: [Revocation] = []
      revocations.reserveCapacity(values.count / 2)
      for index in stride(from: 0, to: values.count, by: 2) {
        guard let member = values[index].string, let score = values[index + 1].string.flatMap({ Double($0) }),
          let colon = member.firstIndex(of: ":"), let visitor = VisitorID(member[..<colon]),
          let expiry = Int64(member[member.index(after: colon)...])
        else { throw RoomStoreError(.unexpectedReply, "revocations answered \(reply)") }
        revocations.append(Revocation(visitor: visitor, passExpiry: expiry, atMilliseconds: Int64(score)))
      }
      return revocations
    }
  }

  /// One admission tick for `room`: at most `batch` admissions, looking at most at `scanLimit` queue entries.
  public func admit(
    room: String, batch: Int = 1_000, scanLimit: Int = 5_000
  ) -> EventLoopFuture<AdmissionTick> {
    let loop = redis.loop(nil)
    return routedByShards(room, on: loop) { cached in
      guard let layout = cached.layout else {
        return self.admitOneQueue(
          room: room, entry: cached.entry, batch: batch, scanLimit: scanLimit, loop: loop)
      }
      let promise = loop.makePromise(of: AdmissionTick.self)
      promise.completeWithTask {
        try await self.shardedAdmit(
          room: room, entry: cached.entry, layout: layout, batch: batch, scanLimit: scanLimit)
      }
      return promise.futureResult
    }
  }

  private func admitOneQueue(
    room: String, entry: RoomEntry, batch: Int, scanLimit: Int, loop: any EventLoop
  ) -> EventLoopFuture<AdmissionTick> {
    redis.evaluate(
      Scripts.admit, keys: entry.keys.scriptKeys, arguments: [String(batch), String(scanLimit), "1"],
      on: loop,
      replicated: replicaWait
    ).flatMapThrowing { reply in
      guard let values = reply.array else {
        throw RoomStoreError(.unexpectedReply, "admit answered \(reply)")
      }
      if values.first?.string == "no_room" { throw RoomStoreError(.noSuchRoom, "no room '\(room)'") }
      if values.first?.string == "shards" {
        throw ShardsDiffer(count: values.count > 1 ? values[1].int ?? 1 : 1)
      }
      guard values.count == 6, let admitted = values[0].int, let abandoned = values[1].int,
        let waiting = values[2].int,
        let active = values[3].int, let time = values[4].int, let visitors = values[5].array
      else { throw RoomStoreError(.unexpectedReply, "admit answered \(reply)") }
      precondition(visitors.count == admitted)
      return AdmissionTick(
        admitted: visitors.compactMap(\.string), abandoned: abandoned, waiting: max(waiting, 0),
        active: active,
        timeMilliseconds: Int64(time))
    }
  }

  /// The room's queue sketch: the one stored in Redis if younger than `maxAge`, else one
  /// computed now and stored for every gateway. Samples start at position `exactBelow` (the
  /// front is asked of Redis) and grow by `growth` of their rank, which bounds the error.
  public func sketch(
    room: String, exactBelow: Int = 1_000, growth: Double = 0.004, maxAge: TimeAmount = .seconds(1),
    on eventLoop: (any EventLoop)? = nil
  ) -> EventLoopFuture<PlaceSketch> {
    sketch(
      keys: ShardLayout(keys: entry(room).entry.keys, count: 1).sketchKeys(0), exactBelow: exactBelow,
      growth: growth, maxAge: maxAge, on: eventLoop)
  }

  /// `Scripts.sketch` of one queue: its key, its counters' and its sketch's.
  func sketch(
    keys: [String], exactBelow: Int, growth: Double, maxAge: TimeAmount, on eventLoop: (any EventLoop)?
  ) -> EventLoopFuture<PlaceSketch> {
    redis.evaluate(
      Scripts.sketch, keys: keys,
      arguments: [String(max(exactBelow - 1, 0)), String(growth), String(maxAge.nanoseconds / 1_000_000)],
      on: eventLoop
    ).flatMapThrowing { reply in
      guard let text = reply.string else {
        throw RoomStoreError(.unexpectedReply, "sketch answered \(reply)")
      }
      return try PlaceSketch(text)
    }
  }

  public func join(room: String, visitor: VisitorID) async throws -> VisitorStatus {
    try await join(room: room, visitor: visitor, on: nil).get()
  }

  public func status(
    room: String, visitor: VisitorID, place: Int64? = nil, claim: Bool = false
  ) async throws -> VisitorStatus {
    try await status(room: room, visitor: visitor, place: place, claim: claim, on: nil).get()
  }

  public func claim(room: String, visitor: VisitorID) async throws -> VisitorStatus {
    try await claim(room: room, visitor: visitor, on: nil).get()
  }

  public func release(room: String, visitor: VisitorID, reason: ReleaseReason) async throws -> ReleaseResult {
    try await release(room: room, visitor: visitor, reason: reason, on: nil).get()
  }

  public func admit(room: String, batch: Int = 1_000, scanLimit: Int = 5_000) async throws -> AdmissionTick {
    try await admit(room: room, batch: batch, scanLimit: scanLimit).get()
  }

  // MARK: Rooms and settings (async: operators and the admission loop)

  /// Creates `room` with `settings`; throws `roomExists` if it is there already.
  public func createRoom(_ room: String, settings: RoomSettings) async throws {
    guard Identifier.isValid(room) else {
      throw RoomStoreError(.invalidRoomID, "room id '\(room.prefix(80))' must match [A-Za-z0-9_-]{1,64}")
    }
    do { try settings.validate() } catch { throw RoomStoreError(.invalidSettings, error.description) }
    let keys = RoomKeys(room: room)
    var command = RedisCommand("HSETNX", keys.settings, "state", settings.state.rawValue)
    guard try await redis.send(command) == .integer(1) else {
      throw RoomStoreError(.roomExists, "room '\(room)' exists already")
    }
    command = RedisCommand("HSET", keys.settings)
    for (field, value) in settings.fields {
      command.append(field)
      command.append(value)
    }
    _ = try await redis.send(pipeline: [command, RedisCommand("SADD", RoomKeys.rooms, room)])
  }

  /// Creates `room` unless it exists; an existing room keeps its live settings.
  public func ensureRoom(_ room: String, settings: RoomSettings) async throws {
    do {
      try await createRoom(room, settings: settings)
    } catch let error as RoomStoreError where error.code == .roomExists {
      _ = try await redis.send(RedisCommand("SADD", RoomKeys.rooms, room))
    }
  }

  /// Removes the room and everyone in it. `UNLINK`: Redis frees a queue of millions in the
  /// background instead of stalling every room on the server while it does.
  public func deleteRoom(_ room: String) async throws {
    var command = RedisCommand("UNLINK")
    let keys = RoomKeys(room: room)
    let shards = try await shardCount(room)
    for key in keys.scriptKeys + [keys.rules, keys.sketch, keys.lease, keys.journal] { command.append(key) }
    // Each shard in a slot of its own: one command each.
    let queues =
      shards > 1
      ? zip(zip(keys.shardQueues(shards), keys.shardCounters(shards)), keys.shardSketches(shards)).map {
        RedisCommand("UNLINK", $0.0, $0.1, $1)
      } : []
    let replies = try await redis.send(
      pipeline: [command, RedisCommand("SREM", RoomKeys.rooms, room)] + queues)
    if replies[0] == .integer(0) { throw RoomStoreError(.noSuchRoom, "no room '\(room)'") }
  }

  /// The room's queue shards as its settings say (1 for a room that does not exist).
  private func shardCount(_ room: String) async throws -> Int {
    max(try await redis.send(RedisCommand("HGET", RoomKeys(room: room).settings, "shards")).int ?? 1, 1)
  }

  /// The room's traffic rules as stored (a JSON array), or nil for none.
  public func trafficRules(room: String, on eventLoop: (any EventLoop)? = nil) -> EventLoopFuture<String?> {
    redis.send(RedisCommand("GET", entry(room).entry.keys.rules), on: eventLoop).map(\.string)
  }

  /// Replaces the room's traffic rules (nil or empty: none); gateways follow within a second.
  public func setTrafficRules(room: String, json: String?) async throws {
    guard try await redis.send(RedisCommand("EXISTS", RoomKeys(room: room).settings)) == .integer(1) else {
      throw RoomStoreError(.noSuchRoom, "no room '\(room)'")
    }
    let key = RoomKeys(room: room).rules
    _ = try await redis.send(json.map { RedisCommand("SET", key, $0) } ?? RedisCommand("DEL", key))
  }

  public func rooms() async throws -> [String] {
    (try await redis.send(RedisCommand("SMEMBERS", RoomKeys.rooms))).array?.compactMap(\.string).sorted()
      ?? []
  }

  public func settings(_ room: String) async throws -> RoomSettings {
    let reply = try await redis.send(RedisCommand("HGETALL", RoomKeys(room: room).settings))
    let fields = try Self.hash(reply)
    guard !fields.isEmpty else { throw RoomStoreError(.noSuchRoom, "no room '\(room)'") }
    do { return try RoomSettings(fields: fields) } catch {
      throw RoomStoreError(.invalidSettings, error.description)
    }
  }

  /// Applies `changes` (stored field names → values), validated against the current settings
  /// as a whole. Takes effect on every gateway's next tick.
  @discardableResult
  public func update(_ room: String, changes: [String: String]) async throws -> RoomSettings {
    var settings = try await self.settings(room)
    let shards = settings.shards
    do {
      for (field, value) in changes.sorted(by: { $0.key < $1.key }) { try settings.set(field, to: value) }
      try settings.validate()
    } catch { throw RoomStoreError(.invalidSettings, error.description) }
    guard settings.shards == shards else {
      throw RoomStoreError(
        .fixedSetting, "shards is fixed when the room is made (it has \(shards)); make a new room for another")
    }
    guard !changes.isEmpty else { return settings }
    var command = RedisCommand("HSET", RoomKeys(room: room).settings)
    let stored = Dictionary(uniqueKeysWithValues: settings.fields)
    for field in changes.keys.sorted() {
      command.append(field)
      command.append(stored[field]!)
    }
    _ = try await redis.send(command)
    return settings
  }

  public func stats(_ room: String) async throws -> RoomStats {
    let keys = RoomKeys(room: room)
    let shards = try await shardCount(room)
    let queues = keys.shardQueues(shards).map { RedisCommand("ZCARD", $0) }
    let replies = try await redis.send(
      pipeline: [
        RedisCommand("HGETALL", keys.stats), RedisCommand("ZCARD", keys.active),
        RedisCommand("SCARD", keys.claimed), RedisCommand("EXISTS", keys.settings),
      ] + queues)
    guard replies[3] == .integer(1) else { throw RoomStoreError(.noSuchRoom, "no room '\(room)'") }
    let counters = try Self.hash(replies[0]).compactMapValues { Int($0) }
    var stats = RoomStats()
    stats.waiting = replies[4...].reduce(0) { $0 + ($1.int ?? 0) }
    stats.active = replies[1].int ?? 0
    stats.claimedActive = replies[2].int ?? 0
    stats.joined = counters["joined"] ?? 0
    stats.admitted = counters["admitted"] ?? 0
    stats.claimed = counters["claimed"] ?? 0
    stats.noShows = counters["no_shows"] ?? 0
    stats.released = counters["released"] ?? 0
    stats.expired = counters["expired"] ?? 0
    stats.abandoned = counters["abandoned"] ?? 0
    stats.left = counters["left"] ?? 0
    stats.admittedLastMinute = counters["rate_1m"] ?? 0
    return stats
  }

  // MARK: Shared by the visitor calls

  /// The room's key names and poll commands, built once per room, and its last snapshot.
  func entry(_ room: String) -> CachedRoom {
    rooms.withLockedValue { rooms in
      if let known = rooms[room] { return known }
      // Entries are never removed, so the count gives each room a tag of its own.
      let cached = CachedRoom(entry: RoomEntry(keys: RoomKeys(room: room), tag: UInt32(rooms.count + 1)))
      rooms[room] = cached
      return cached
    }
  }

  /// Runs a script that answers where a visitor stands (join, status, claim).
  private func visitorScript(
    _ script: RedisScript, room: String, arguments: [String], on eventLoop: (any EventLoop)?
  ) -> EventLoopFuture<VisitorStatus> {
    redis.evaluate(script, keys: entry(room).entry.keys.scriptKeys, arguments: arguments, on: eventLoop)
      .flatMapThrowing { reply in try Self.status(from: reply, room: room) }
  }

  // MARK: Decoding

  static func hash(_ reply: RESPValue) throws -> [String: String] {
    guard let values = reply.array, values.count % 2 == 0 else {
      throw RoomStoreError(.unexpectedReply, "expected a hash, got \(reply)")
    }
    var result: [String: String] = [:]
    for index in stride(from: 0, to: values.count, by: 2) {
      if let field = values[index].string, let value = values[index + 1].string { result[field] = value }
    }
    return result
  }

  static func status(from reply: RESPValue, room: String) throws -> VisitorStatus {
    guard let values = reply.array, let kind = values.first?.string else {
      throw RoomStoreError(.unexpectedReply, "unexpected reply \(reply)")
    }
    if kind == "shards" { throw ShardsDiffer(count: values.count > 1 ? values[1].int ?? 1 : 1) }
    func int(_ index: Int) throws -> Int {
      guard index < values.count, let value = values[index].int else {
        throw RoomStoreError(.unexpectedReply, "unexpected reply \(reply)")
      }
      return value
    }
    switch kind {
    case "queued":
      guard values.count == 10, let stateText = values[5].string, let state = RoomState(rawValue: stateText)
      else {
        throw RoomStoreError(.unexpectedReply, "unexpected reply \(reply)")
      }
      let position = try int(1)
      let startsAt = Int64(try int(6))
      let now = Int64(try int(7))
      let estimate = WaitEstimate(
        position: position, measuredPerMinute: try int(4), configuredPerMinute: try int(3),
        admitting: state == .queue, secondsUntilStart: Int((startsAt - now + 999) / 1000),
        abandonSeconds: try int(8), random: Double.random(in: 0..<1))
      return .queued(
        QueuePosition(
          position: position, waiting: try int(2), state: state, startsAtMilliseconds: startsAt,
          nowMilliseconds: now,
          estimate: estimate, score: QueueScore.parse(values[9])))
    case "admitted": return .admitted(claimDeadlineMilliseconds: Int64(try int(1)))
    case "active": return .active(sessionEndMilliseconds: Int64(try int(1)))
    case "absent":
      return .absent(values.count > 1 ? RoomState(rawValue: values[1].string ?? "") ?? .queue : .queue)
    case "closed": return .closed
    case "passthrough": return .passthrough
    case "full": return .full(waiting: try int(1))
    case "refused":
      guard values.count == 3, let limit = values[1].string.flatMap(ClientLimit.init(rawValue:)) else {
        throw RoomStoreError(.unexpectedReply, "unexpected reply \(reply)")
      }
      return .refused(limit, retryAfterSeconds: try int(2))
    case "challenge": return .challenge(bits: try int(1), startsAtMilliseconds: Int64(try int(2)))
    case "no_room": throw RoomStoreError(.noSuchRoom, "no room '\(room)'")
    default: throw RoomStoreError(.unexpectedReply, "unexpected reply \(reply)")
    }
  }
}
