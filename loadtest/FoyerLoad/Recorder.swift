internal import Histogram
internal import Synchronization

/// The kinds of request a visitor makes; latency and statuses are kept per kind.
public enum RequestKind: String, CaseIterable, Codable, Sendable, Comparable {
  /// The event page: the waiting page (and the visitor cookie), or a 307 when the join admits.
  case page
  /// `GET /_foyer/status`.
  case status
  /// A section's seat map (forwarded).
  case seats
  /// `POST /events/{id}/holds` (forwarded).
  case hold
  /// `POST /holds/{id}/checkout` (forwarded).
  case checkout
  /// `DELETE /holds/{id}` (forwarded).
  case release
  /// `POST /_foyer/leave`.
  case leave
  /// `POST /orders/{id}/cancel`, outside the room.
  case cancel
  /// The waitlist: joining (with the pass), following and leaving a place (outside the room).
  case waitlist
  /// A cheater's request with a forged pass.
  case cheat
  /// `POST /_foyer/solve`: a solved proof-of-work challenge.
  case solve
  /// A poll flooder's polls.
  case flood
  /// The simulator's own admin API calls (settings, samples).
  case admin

  public static func < (a: RequestKind, b: RequestKind) -> Bool {
    allCases.firstIndex(of: a)! < allCases.firstIndex(of: b)!
  }
}

/// Broken promises found during the run; any one fails it.
public enum ViolationKind: String, CaseIterable, Codable, Sendable, Comparable {
  /// An answer with status 500 or above.
  case serverError = "server_error"
  /// A request without a valid pass reached the upstream (BoxOffice answered 401, or a
  /// forged pass got an upstream answer).
  case forwardedWithoutPass = "forwarded_without_pass"
  /// More visitors active than `max_active` allowed.
  case capExceeded = "cap_exceeded"
  /// More admissions in a window than the rate and the bucket allow.
  case rateExceeded = "rate_exceeded"
  /// An idempotent replay or a double submit produced a second order or another answer.
  case idempotency
  /// A seat sold twice, a sold seat without its ticket, or the other way round.
  case doubleSale = "double_sale"
  /// An order with other than one charge, or a charge for an unsold hold not refunded.
  case charges
  /// A seat still held after its hold ended.
  case heldSeatLeak = "held_seat_leak"
  /// The database lost an order a visitor was given.
  case lostOrder = "lost_order"
  /// An answer the journey cannot continue from (a contract broken: wrong status or body).
  case unexpectedAnswer = "unexpected_answer"
  /// One pass held more seats at once than BoxOffice's per-visitor cap.
  case seatCap = "seat_cap"
  /// A waitlist offer made out of the line's order, a place skipped, or a bought offer
  /// without its order.
  case waitlist

  public static func < (a: ViolationKind, b: ViolationKind) -> Bool { a.rawValue < b.rawValue }
}

/// Collects what every visitor saw, from many tasks at once.
///
/// One lock around plain values: each record is a few hundred nanoseconds of work, far
/// below the cost of the request it describes.
final class Recorder: Sendable {
  struct State {
    var latency: [RequestKind: Histogram<UInt64>] = [:]
    var statuses: [RequestKind: [Int: Int]] = [:]
    var transportErrors: [RequestKind: Int] = [:]
    var transportErrorExamples: [String] = []
    var violations: [ViolationKind: Int] = [:]
    var examples: [ViolationKind: [String]] = [:]
  }
  private let state = Mutex(State())

  func request(_ kind: RequestKind, status: Int, microseconds: UInt64) {
    state.withLock { state in
      state.latency[
        kind, default: Histogram(highestTrackableValue: 600_000_000, numberOfSignificantValueDigits: .three)
      ]
      .record(min(microseconds, 600_000_000))
      state.statuses[kind, default: [:]][status, default: 0] += 1
    }
  }

  /// A request that got no answer; the first few errors are kept for the report.
  func transportError(_ kind: RequestKind, _ error: (any Error)? = nil) {
    state.withLock { state in
      state.transportErrors[kind, default: 0] += 1
      if let error, state.transportErrorExamples.count < 5 {
        state.transportErrorExamples.append("\(kind.rawValue): \(String(reflecting: error).prefix(200))")
      }
    }
  }

  /// Counts a violation; the first few of each kind are kept as examples for the report.
  func violation(_ kind: ViolationKind, _ detail: String, count: Int = 1) {
    guard count > 0 else { return }
    state.withLock { state in
      state.violations[kind, default: 0] += count
      if state.examples[kind, default: []].count < 5 { state.examples[kind, default: []].append(detail) }
    }
  }

  var snapshot: State { state.withLock { $0 } }
}
