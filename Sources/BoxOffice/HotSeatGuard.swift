public import Foundation
public import Logging
public import RedisNIO

/// The optional hot-seat guard (DESIGN §6): before a claim touches the database, each seat
/// is taken in Redis with `SET NX PX`; a request that finds a seat taken is answered `409`
/// at once. A stampede of thousands on one seat costs the database one claim.
///
/// The guard only filters: PostgreSQL still decides. If Redis is unreachable the guard
/// lets requests through (fails open) rather than stop sales.
public final class HotSeatGuard: Sendable {
  let redis: RedisClient
  let lockMilliseconds: Int
  let logger: Logger

  public init(redis: RedisClient, lockMilliseconds: Int, logger: Logger) {
    self.redis = redis
    self.lockMilliseconds = lockMilliseconds
    self.logger = logger
  }

  static func key(_ seat: Int64) -> String { "boxoffice:seat:{\(seat)}" }

  /// Takes every seat for `owner`; returns the seats someone else holds (then nothing was
  /// kept: the seats taken by this call are given back).
  public func acquire(_ seats: [Int64], owner: String) async -> [Int64] {
    do {
      let replies = try await redis.send(
        pipeline: seats.map { RedisCommand("SET", Self.key($0), owner, "NX", "PX", String(lockMilliseconds)) }
      )
      let taken = zip(seats, replies).filter { $0.1.isNull }.map(\.0)
      if !taken.isEmpty {
        await release(zip(seats, replies).filter { !$0.1.isNull }.map(\.0), owner: owner)
      }
      return taken
    } catch {
      logger.warning(
        "hot-seat guard unavailable: letting the request through", metadata: ["error": "\(error)"])
      return []
    }
  }

  /// Gives seats back (only those this owner still holds).
  public func release(_ seats: [Int64], owner: String) async {
    guard !seats.isEmpty else { return }
    _ = try? await redis.send(
      pipeline: seats.map {
        RedisCommand(
          "EVAL",
          "if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end return 0",
          "1", Self.key($0), owner)
      })
  }
}
