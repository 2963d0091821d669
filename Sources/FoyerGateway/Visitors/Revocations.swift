internal import FoyerCore
internal import Logging
internal import NIOCore
internal import Prometheus
internal import WaitingRoom

/// The passes one event loop refuses although they verify: given back by leave, by
/// `Foyer-Release: done` or by an operator. Read on every forwarded request without a lock
/// or a Redis round trip; `RevocationRefresher` fills it from Redis, and a release on this
/// gateway adds to it at once.
final class RevocationList {
  /// room → visitor → the latest expiry among the visitor's revoked passes.
  private var entries: [String: [VisitorID: Int64]] = [:]
  private var count = 0

  /// A pass expiring at or before a revoked one of the same visitor is refused: passes of one
  /// visitor are issued in order of expiry, so only a pass issued after the release (a new
  /// admission) expires later.
  func isRevoked(room: String, visitor: VisitorID, passExpiry: Int64) -> Bool {
    guard count > 0, let revoked = entries[room]?[visitor] else { return false }
    return passExpiry <= revoked
  }

  func add(room: String, visitor: VisitorID, passExpiry: Int64) {
    if entries[room] == nil { entries[room] = [:] }
    let previous = entries[room]![visitor]
    if previous == nil { count += 1 }
    entries[room]![visitor] = max(previous ?? passExpiry, passExpiry)
  }

  /// Forgets revoked passes that have run out anyway.
  func prune(now: Int64) {
    guard count > 0 else { return }
    for room in entries.keys {
      let before = entries[room]!.count
      entries[room] = entries[room]!.filter { $0.value >= now }
      count -= before - entries[room]!.count
    }
  }
}

/// Reads every room's revocation log from Redis on one event loop and hands what is new to
/// each loop's `RevocationList`: a pass given back on any gateway is refused by this one
/// within `interval` and a Redis round trip.
final class RevocationRefresher: Sendable {
  private let store: RoomStore
  private let rooms: [String]
  private let lists: [ObjectIdentifier: NIOLoopBound<RevocationList>]
  private let interval: TimeAmount
  private let metrics: GatewayMetrics
  private let logger: Logger
  /// Per room, the Redis time of the newest revocation read; confined to the refresher's loop.
  private let since: NIOLoopBound<Box>

  private final class Box { var since: [String: Int64] = [:] }

  init(
    store: RoomStore, rooms: [String], lists: [ObjectIdentifier: NIOLoopBound<RevocationList>],
    interval: TimeAmount, metrics: GatewayMetrics, logger: Logger, on loop: any EventLoop
  ) {
    self.store = store
    self.rooms = rooms
    self.lists = lists
    self.interval = interval
    self.metrics = metrics
    self.logger = logger
    since = NIOLoopBound(Box(), eventLoop: loop)
  }

  /// Refreshes until the returned task is cancelled (when the listener closes).
  func start() -> RepeatedTask {
    let loop = since.eventLoop
    return loop.scheduleRepeatedAsyncTask(initialDelay: .zero, delay: interval) { _ in
      self.refresh()
    }
  }

  private func refresh() -> EventLoopFuture<Void> {
    let loop = since.eventLoop
    let now = GatewayHandler.unixSeconds()
    let reads = rooms.map { room in
      store.revocations(room: room, sinceMilliseconds: since.value.since[room] ?? 0, on: loop)
        .hop(to: loop)
        .map { revocations -> Void in
          if let last = revocations.last { self.since.value.since[room] = last.atMilliseconds }
          self.distribute(room: room, revocations.filter { $0.passExpiry >= now }, now: now)
        }
        .recover { error in
          self.metrics.redisErrors.increment()
          self.logger.debug("revocations unavailable", metadata: ["room": "\(room)", "error": "\(error)"])
        }
    }
    return EventLoopFuture.andAllComplete(reads, on: loop)
  }

  private func distribute(room: String, _ revocations: [Revocation], now: Int64) {
    guard !revocations.isEmpty else { return }
    for list in lists.values {
      list.eventLoop.execute {
        for revocation in revocations {
          list.value.add(room: room, visitor: revocation.visitor, passExpiry: revocation.passExpiry)
        }
        list.value.prune(now: now)
      }
    }
  }
}
