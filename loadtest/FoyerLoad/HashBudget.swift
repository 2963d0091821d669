internal import Foundation
internal import FoyerCore
internal import Synchronization

/// One machine's hashing for a bot: solutions are worked through one after another at
/// `hashesPerSecond`, so a solution standing for `n` hashes is ready `n / hashesPerSecond`
/// after the machine is free. The solving itself is real but cheap (see
/// `Scenario.standsForBits`); this is the time the hard version would have taken.
final class HashBudget: Sendable {
  let hashesPerSecond: Double
  /// Run time at which the machine is free again.
  private let free = Mutex(0.0)

  init(hashesPerSecond: Double) {
    self.hashesPerSecond = hashesPerSecond
  }

  /// Seconds from `now` until a solution of `hashes` is ready.
  func spend(_ hashes: Double, now: Double) -> Double {
    free.withLock { free in
      free = max(free, now) + hashes / hashesPerSecond
      return free - now
    }
  }

  /// SHA-256 challenge hashes per second on one core of this machine, by the reference
  /// solver (`Challenge.solve`), over about half a second.
  static func measureOneCore() -> Double {
    let started = Date()
    var tries: UInt64 = 0
    var round: UInt64 = 0
    while Date().timeIntervalSince(started) < 0.5 {
      tries += Challenge.solve("c1.measure.\(round).16", bits: 16).tries
      round += 1
    }
    return Double(tries) / Date().timeIntervalSince(started)
  }
}
