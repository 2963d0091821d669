internal import Foundation

/// The sums behind the report, as plain functions over what was recorded (times are seconds
/// since the run began), so each one can be checked on its own.
public enum Analysis {
  /// One admin API reading of the room's live numbers.
  struct Sample: Sendable {
    /// The reading happened somewhere between these two times.
    var sent: Double
    var received: Double
    var admitted: Int
    var active: Int
    var waiting: Int
  }

  /// The room's rate and cap as set over the run (each from the moment its change was sent).
  struct Settings: Sendable {
    var entries: [(at: Double, ratePerMinute: Int, maxActive: Int)]

    func entry(at time: Double) -> (at: Double, ratePerMinute: Int, maxActive: Int) {
      entries.last { $0.at <= time } ?? entries[0]
    }

    /// The rate that may be in force at `time`: a change takes effect somewhere between its
    /// sending and a moment later, so around a change the higher of the two counts.
    func generousRate(at time: Double) -> Int {
      max(entry(at: time).ratePerMinute, entry(at: time - 1).ratePerMinute)
    }

    /// The highest cap set so far: a lowered cap does not end sessions already running.
    func cap(at time: Double) -> Int {
      entries.filter { $0.at <= time }.map(\.maxActive).max() ?? entries[0].maxActive
    }

    /// The bucket's capacity: one second's worth of the highest rate, at least one (the
    /// admission script's `math.max(1, rate / 60)`).
    var burst: Double { max(1, Double(entries.map(\.ratePerMinute).max() ?? 0) / 60) }
  }

  // MARK: Rate

  public struct RateCheck: Sendable, Codable {
    /// Largest (admissions − allowance) over every pair of samples; ≤ 0 keeps the promise.
    public var worstExcess: Double
    /// Where it was: the window's start and end (seconds since the start of the run).
    public var worstFrom: Double
    public var worstTo: Double
    public var burst: Double
  }

  /// Admissions between any two samples must not exceed the bucket (full at the first) plus
  /// the refill the rate allows over the longest interval the two readings can span.
  static func rateCheck(_ samples: [Sample], _ settings: Settings) -> RateCheck {
    var check = RateCheck(worstExcess: -.infinity, worstFrom: 0, worstTo: 0, burst: settings.burst)
    guard samples.count > 1 else { return check }
    // The allowance integrated once, in 10 ms steps, then read at each sample's edges.
    let step = 0.01
    let end = samples.map(\.received).max()! + 1
    var cumulative: [Double] = [0]
    cumulative.reserveCapacity(Int(end / step) + 2)
    var time = 0.0
    while time < end {
      cumulative.append(cumulative.last! + Double(settings.generousRate(at: time)) / 60 * step)
      time += step
    }
    func allowance(upTo time: Double) -> Double {
      cumulative[min(max(Int((time / step).rounded(.up)), 0), cumulative.count - 1)]
    }
    for i in samples.indices {
      for j in samples.indices where j > i {
        let admitted = Double(samples[j].admitted - samples[i].admitted)
        let allowed = allowance(upTo: samples[j].received) - allowance(upTo: samples[i].sent) + settings.burst
        if admitted - allowed > check.worstExcess {
          check.worstExcess = admitted - allowed
          check.worstFrom = samples[i].sent
          check.worstTo = samples[j].received
        }
      }
    }
    // Sums of thousands of 10 ms steps carry rounding noise: a millionth is not an admission.
    check.worstExcess = (check.worstExcess * 1e6).rounded() / 1e6
    return check
  }

  public struct Window: Sendable, Codable {
    /// Seconds after the on-sale start.
    public var from: Double
    public var to: Double
    public var admitted: Int
    public var perMinute: Double
    public var configuredPerMinute: Int
    public var maxActive: Int
    public var cap: Int
  }

  /// Admissions per window from the samples, beside the rate and cap configured then.
  static func windows(_ samples: [Sample], _ settings: Settings, startsAt: Double, length: Double) -> [Window]
  {
    guard let last = samples.last, last.received > startsAt else { return [] }
    func reading(at time: Double) -> Sample {
      samples.min { abs($0.received - time) < abs($1.received - time) }!
    }
    var windows: [Window] = []
    var from = startsAt
    while from < last.received - 0.001 {
      let to = min(from + length, last.received)
      let first = reading(at: from)
      let second = reading(at: to)
      let span = max(second.received - first.received, 0.001)
      let inside = samples.filter { $0.received >= from && $0.received <= to }
      windows.append(
        Window(
          from: from - startsAt, to: to - startsAt, admitted: second.admitted - first.admitted,
          perMinute: Double(second.admitted - first.admitted) * 60 / span,
          configuredPerMinute: settings.entry(at: (from + to) / 2).ratePerMinute,
          maxActive: inside.map(\.active).max() ?? 0, cap: settings.cap(at: to)))
      from = to
    }
    return windows
  }

  // MARK: Cap

  /// The most intervals open at once, and when. An interval's end counts before another's
  /// start at the same instant.
  /// How many of `sorted` (ascending) are below `value`: a binary search.
  static func count(_ sorted: [Double], below value: Double) -> Int {
    var low = 0
    var high = sorted.count
    while low < high {
      let middle = (low + high) / 2
      if sorted[middle] < value { low = middle + 1 } else { high = middle }
    }
    return low
  }

  static func maxConcurrent(_ intervals: [(start: Double, end: Double)]) -> (count: Int, at: Double) {
    var events: [(time: Double, delta: Int)] = []
    for interval in intervals where interval.end > interval.start {
      events.append((interval.start, 1))
      events.append((interval.end, -1))
    }
    events.sort { $0.time < $1.time || ($0.time == $1.time && $0.delta < $1.delta) }
    var open = 0
    var best = (count: 0, at: 0.0)
    for event in events {
      open += event.delta
      if open > best.count { best = (open, event.time) }
    }
    return best
  }

  // MARK: Fairness

  /// Ranks from 1, ties sharing their average rank.
  static func ranks(_ values: [Double]) -> [Double] {
    let order = values.indices.sorted { values[$0] < values[$1] }
    var ranks = [Double](repeating: 0, count: values.count)
    var start = 0
    while start < order.count {
      var end = start
      while end + 1 < order.count && values[order[end + 1]] == values[order[start]] { end += 1 }
      let rank = Double(start + end) / 2 + 1
      for position in start...end { ranks[order[position]] = rank }
      start = end + 1
    }
    return ranks
  }

  /// Spearman's rank correlation: 1 = admitted exactly in join order, 0 = no relation.
  static func spearman(_ x: [Double], _ y: [Double]) -> Double? {
    guard x.count == y.count, x.count > 2 else { return nil }
    let rx = ranks(x)
    let ry = ranks(y)
    let mean = Double(x.count + 1) / 2
    var covariance = 0.0
    var varianceX = 0.0
    var varianceY = 0.0
    for index in rx.indices {
      covariance += (rx[index] - mean) * (ry[index] - mean)
      varianceX += (rx[index] - mean) * (rx[index] - mean)
      varianceY += (ry[index] - mean) * (ry[index] - mean)
    }
    guard varianceX > 0, varianceY > 0 else { return nil }
    return covariance / (varianceX * varianceY).squareRoot()
  }

  /// Pearson's χ² of the 4 × 4 table (join quartile × admission quartile). A uniform shuffle
  /// gives about 9 (its degrees of freedom); above 27.88 happens by chance once in 1,000.
  static func quartileChiSquare(_ joined: [Double], _ admitted: [Double]) -> Double? {
    guard joined.count == admitted.count, joined.count >= 32 else { return nil }
    let count = Double(joined.count)
    func quartiles(_ values: [Double]) -> [Int] {
      ranks(values).map { min(Int(($0 - 1) / count * 4), 3) }
    }
    let rows = quartiles(joined)
    let columns = quartiles(admitted)
    var table = [[Double]](repeating: [Double](repeating: 0, count: 4), count: 4)
    for index in rows.indices { table[rows[index]][columns[index]] += 1 }
    var chiSquare = 0.0
    for row in 0..<4 {
      for column in 0..<4 {
        let expected = table[row].reduce(0, +) * table.map { $0[column] }.reduce(0, +) / count
        if expected > 0 {
          chiSquare += (table[row][column] - expected) * (table[row][column] - expected) / expected
        }
      }
    }
    return chiSquare
  }

  // MARK: The gateway's own view

  /// Upper bounds of a Prometheus histogram's percentiles, from its cumulative buckets in the
  /// text exposition format: the smallest `le` whose count reaches the share. `nil` when the
  /// histogram is absent or empty.
  static func histogramPercentiles(
    _ text: String, name: String, percentiles: [Double]
  ) -> (count: Int, bounds: [Double])? {
    // Summed by bound: the text may hold several servers' histograms.
    var counts: [Double: Double] = [:]
    let prefix = name + "_bucket{"
    for line in text.split(separator: "\n") where line.hasPrefix(prefix) {
      guard let leStart = line.range(of: "le=\""), let space = line.lastIndex(of: " ") else { continue }
      let leText = line[leStart.upperBound...].prefix { $0 != "\"" }
      guard let count = Double(line[line.index(after: space)...]) else { continue }
      let le = leText == "+Inf" ? Double.infinity : Double(leText) ?? .nan
      if !le.isNaN { counts[le, default: 0] += count }
    }
    let buckets = counts.map { (le: $0.key, count: $0.value) }.sorted { $0.le < $1.le }
    guard let total = buckets.last?.count, total > 0 else { return nil }
    let bounds = percentiles.map { share in
      buckets.first { $0.count >= share / 100 * total }?.le ?? .infinity
    }
    return (Int(total), bounds)
  }

  /// The 99.9 % point of χ² with 9 degrees of freedom.
  static let chiSquareCritical = 27.877
}
