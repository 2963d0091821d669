internal import Foundation
internal import NIOConcurrencyHelpers

/// Paces one visitor's hold attempts (#16 item 7): a token bucket per visitor holding
/// `perMinute` attempts, refilled at `perMinute` a minute, so a person retrying seats is never
/// slowed but a pass cannot turn seat conflicts into a database load test. Per process: each
/// BoxOffice instance paces what reaches its database.
///
/// Bounded: once more than `pruneAbove` visitors are tracked, those whose bucket has refilled
/// (idle for a minute) are dropped.
final class HoldAttemptLimiter: Sendable {
  private struct Bucket {
    var tokens: Double
    var at: Double
  }

  let perMinute: Int
  private let pruneAbove: Int
  private let buckets = NIOLockedValueBox((map: [String: Bucket](), nextPrune: 0))

  init(perMinute: Int, pruneAbove: Int = 100_000) {
    self.perMinute = perMinute
    self.pruneAbove = pruneAbove
  }

  /// Takes one attempt for `visitor`; `nil` if allowed, else the seconds until the next is.
  func take(_ visitor: String, now: Double = ProcessInfo.processInfo.systemUptime) -> Int? {
    guard perMinute > 0 else { return nil }
    let capacity = Double(perMinute)
    let perSecond = capacity / 60
    return buckets.withLockedValue { state -> Int? in
      var bucket = state.map[visitor] ?? Bucket(tokens: capacity, at: now)
      bucket.tokens = min(capacity, bucket.tokens + (now - bucket.at) * perSecond)
      bucket.at = now
      defer { state.map[visitor] = bucket }
      if bucket.tokens >= 1 {
        bucket.tokens -= 1
        if state.map.count >= max(pruneAbove, state.nextPrune) {
          Self.prune(&state, capacity, perSecond, now)
        }
        return nil
      }
      return max(1, Int(((1 - bucket.tokens) / perSecond).rounded(.up)))
    }
  }

  private static func prune(
    _ state: inout (map: [String: Bucket], nextPrune: Int), _ capacity: Double, _ perSecond: Double,
    _ now: Double
  ) {
    state.map = state.map.filter { $0.value.tokens + (now - $0.value.at) * perSecond < capacity }
    state.nextPrune = state.map.count * 2
  }
}
