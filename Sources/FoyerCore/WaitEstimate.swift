/// Honest waiting numbers for a visitor at `position` (DESIGN §3).
public struct WaitEstimate: Sendable, Hashable {
  /// Seconds until admission, or `nil` when nobody is being admitted (paused, rate 0).
  public let etaSeconds: Int?
  /// When the visitor should poll again.
  public let pollAfterMilliseconds: Int

  /// - Parameters:
  ///   - position: 1 = next in line.
  ///   - measuredPerMinute: admissions actually made over the last minute.
  ///   - configuredPerMinute: the room's rate setting, used before any admission was measured.
  ///   - admitting: false when the room is paused or closed.
  ///   - secondsUntilStart: positive before the on-sale start.
  ///   - abandonSeconds: polls must come well within it, or the visitor loses the place.
  ///   - random: a number in 0..<1 for jitter.
  public init(
    position: Int, measuredPerMinute: Int, configuredPerMinute: Int, admitting: Bool,
    secondsUntilStart: Int, abandonSeconds: Int, random: Double
  ) {
    let rate = measuredPerMinute > 0 ? measuredPerMinute : configuredPerMinute
    if admitting && rate > 0 {
      // Position ÷ rate, rounded up, plus the time until the start.
      let seconds = (max(position, 1) * 60 + rate - 1) / rate
      etaSeconds = seconds + max(secondsUntilStart, 0)
    } else {
      etaSeconds = nil
    }
    // Near the front: every 2 s; far back: up to 30 s, growing with the square root of the
    // position, so a million waiting visitors make ~tens of thousands of polls per second,
    // not a million. Never longer than a third of the abandonment time.
    let base = min(2_000 + Int(Double(max(position - 1, 0)).squareRoot() * 40), 30_000)
    let ceiling = max(abandonSeconds * 1_000 / 3, 500)
    let jittered = Double(min(base, ceiling)) * (0.8 + 0.4 * min(max(random, 0), 1))
    pollAfterMilliseconds = max(Int(jittered), 250)
  }
}
