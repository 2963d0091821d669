internal import Foundation

/// What a run showed: printed as tables for people and written as JSON for scripts.
public struct Report: Sendable, Codable {
  public struct Latency: Sendable, Codable {
    public var count: Int
    public var p50Ms: Double
    public var p90Ms: Double
    public var p99Ms: Double
    public var maxMs: Double
  }

  /// Percentile bounds from the gateway's histogram buckets (1, 2, 5, 10, 25 … ms).
  public struct GatewayLatency: Sendable, Codable {
    public var count: Int
    public var p50AtMostMs: Double
    public var p90AtMostMs: Double
    public var p99AtMostMs: Double
  }

  public struct Fairness: Sendable, Codable {
    /// Visitors who joined after the start and were admitted.
    public var postStartVisitors: Int
    /// Spearman's ρ between their join order and admission order (1 = strict FIFO).
    public var postStartSpearman: Double?
    /// Pre-queue visitors who were admitted.
    public var prequeueVisitors: Int
    /// Spearman's ρ for them (a fair shuffle is near 0; ± 2/√n is the usual chance range).
    public var prequeueSpearman: Double?
    /// χ² of join quartile × admission quartile (a fair shuffle ≈ 9).
    public var prequeueChiSquare: Double?
    public var chiSquareCritical: Double
  }

  public struct Violation: Sendable, Codable {
    public var kind: String
    public var count: Int
    public var examples: [String]
  }

  public var seed: UInt64
  public var visitors: Int
  public var durationSeconds: Double
  public var admissions: [Analysis.Window]
  public var rate: Analysis.RateCheck
  /// Admissions counted by the gateway over the run, and visitors who saw theirs.
  public var admittedByGateway: Int
  public var admittedVisitors: Int
  /// The highest number of active visitors: sampled from the admin API, and counted from
  /// the visitors' own passes (a lower bound of the real number).
  public var maxActiveSampled: Int
  public var maxActiveVisitors: Int
  public var cap: Int
  public var fairness: Fairness
  public var latency: [String: Latency]
  public var statuses: [String: [String: Int]]
  public var transportErrors: [String: Int]
  /// The first few transport errors, as the HTTP client told them.
  public var transportErrorExamples: [String] = []
  public var pollsPerAdmittedVisitor: Double
  public var outcomes: [String: Int]
  /// Forwarded requests as the gateway timed them (its `/metrics`), when it could be read.
  public var gatewayProxy: GatewayLatency? = nil
  /// When the room was closed as sold out, seconds after the start.
  public var soldOutSeconds: Double? = nil
  public var ordersSeen: Int
  public var ticketsSeen: Int
  public var ledger: Ledger
  /// The humans' wait, from their first request (a challenge solved included) to admission.
  public var humanWait: Wait? = nil
  /// What each kind of bot got (`bots:` in the scenario), by role.
  public var bots: [String: BotSummary] = [:]
  /// The bots' hashing: one core of this machine, and the botnet's budget.
  public var botHashes: BotHashes? = nil
  /// Requests the gateway refused, by reason (its `foyer_refused_requests_total`).
  public var refusals: [String: Int] = [:]
  /// What the visitors did after the sale (`aftermarket:`).
  public var aftermarket = Aftermarket()
  public var violations: [Violation]

  public struct Aftermarket: Sendable, Codable {
    public var cancelled = 0
    public var waitlisted = 0
    public var offered = 0
    public var boughtOffers = 0
    public var letOffersLapse = 0
  }

  public struct Wait: Sendable, Codable {
    public var count: Int
    public var p50Seconds: Double
    public var p90Seconds: Double
    /// Admissions (anyone's) made between a human's arrival and its own.
    public var p50AdmissionsAhead: Int
    public var p90AdmissionsAhead: Int
  }

  public struct BotSummary: Sendable, Codable {
    public var identities = 0
    public var addresses = 0
    /// Places in line given, and admissions won.
    public var places = 0
    public var admitted = 0
    public var seatsBought = 0
    public var mostSeatsHeld = 0
    /// Challenge solutions sent, and the hashes they stood for.
    public var solutions = 0
    public var hashes = 0.0
    public var polls = 0
    public var pollsTooSoon = 0
    /// Places refused, by the gateway's error code.
    public var refused: [String: Int] = [:]
  }

  public struct BotHashes: Sendable, Codable {
    public var oneCorePerSecond: Double
    public var botnetPerSecond: Double
  }

  public var passed: Bool { violations.isEmpty }

  public func violations(_ kind: ViolationKind) -> Int {
    violations.first { $0.kind == kind.rawValue }?.count ?? 0
  }

  public var json: String {
    let encoder = JSONEncoder()
    encoder.outputFormatting = [.prettyPrinted, .sortedKeys]
    return String(decoding: (try? encoder.encode(self)) ?? Data(), as: UTF8.self)
  }

  /// The tables.
  public var text: String {
    var out = "foyer-load: \(visitors) visitors, seed \(seed), \(format(durationSeconds, 1)) s\n\n"
    out += "Admissions (from the admin API; time after the on-sale start)\n"
    out += table(
      ["window", "admitted", "per minute", "configured", "max active", "cap"],
      admissions.map {
        [
          "\(format($0.from, 0))–\(format($0.to, 0)) s", "\($0.admitted)", format($0.perMinute, 0),
          "\($0.configuredPerMinute)", "\($0.maxActive)", "\($0.cap)",
        ]
      })
    out += "rate: worst window \(format(rate.worstExcess, 2)) admissions over the allowance "
    out += "(bucket \(format(rate.burst, 1))) → \(rate.worstExcess <= 0 ? "kept" : "EXCEEDED")\n"
    out += "active: \(maxActiveSampled) sampled, \(maxActiveVisitors) counted from passes; cap \(cap) → "
    out += "\(max(maxActiveSampled, maxActiveVisitors) <= cap ? "kept" : "EXCEEDED")\n"
    out += "admitted: \(admittedByGateway) by the gateway, \(admittedVisitors) seen by visitors; "
    out += "\(format(pollsPerAdmittedVisitor, 1)) status polls per admitted visitor\n\n"

    out += "Fairness\n"
    out += "after the start: \(fairness.postStartVisitors) visitors, join→admission rank correlation "
    out += "\(fairness.postStartSpearman.map { format($0, 3) } ?? "n/a") (1 = first come, first served)\n"
    out += "pre-queue: \(fairness.prequeueVisitors) visitors, rank correlation "
    out += "\(fairness.prequeueSpearman.map { format($0, 3) } ?? "n/a") (0 = shuffled), quartile χ² "
    out +=
      "\(fairness.prequeueChiSquare.map { format($0, 1) } ?? "n/a") (uniform ≈ 9, < \(format(fairness.chiSquareCritical, 1)))\n\n"

    out += "Latency (ms)\n"
    let kinds = RequestKind.allCases.filter { latency[$0.rawValue] != nil }
    out += table(
      ["request", "count", "p50", "p90", "p99", "max", "statuses"],
      kinds.map { kind in
        let entry = latency[kind.rawValue]!
        let codes = (statuses[kind.rawValue] ?? [:]).sorted { $0.key < $1.key }.map {
          "\($0.key)×\($0.value)"
        }
        let errors = transportErrors[kind.rawValue].map { [" errors×\($0)"] } ?? []
        return [
          kind.rawValue, "\(entry.count)", format(entry.p50Ms, 1), format(entry.p90Ms, 1),
          format(entry.p99Ms, 1),
          format(entry.maxMs, 1), (codes + errors).joined(separator: " "),
        ]
      })
    for example in transportErrorExamples { out += "transport error, e.g. \(example)\n" }
    if let soldOutSeconds {
      out += "\nsold out \(format(soldOutSeconds, 1)) s after the start; the room was closed\n"
    }
    if let proxy = gatewayProxy {
      out +=
        "the gateway's own timing of \(proxy.count) forwarded requests (head in to response end, its /metrics): "
      out += "p50 ≤ \(format(proxy.p50AtMostMs, 0)) ms, p90 ≤ \(format(proxy.p90AtMostMs, 0)) ms, "
      out += "p99 ≤ \(format(proxy.p99AtMostMs, 0)) ms\n"
    }
    out +=
      "\nVisitors: "
      + outcomes.sorted { $0.key < $1.key }.map { "\($0.key) \($0.value)" }.joined(separator: ", ")
    if let humanWait {
      out += "\nhumans' wait, arrival to admission: p50 \(format(humanWait.p50Seconds, 1)) s, "
      out += "p90 \(format(humanWait.p90Seconds, 1)) s (\(humanWait.count) admitted); "
      out += "admissions meanwhile p50 \(humanWait.p50AdmissionsAhead), p90 \(humanWait.p90AdmissionsAhead)"
    }
    if !bots.isEmpty {
      out += "\n\nBots"
      if let botHashes {
        out += " (one core here: \(format(botHashes.oneCorePerSecond, 0)) hashes/s; "
        out += "the botnet's budget \(format(botHashes.botnetPerSecond, 0)) hashes/s)"
      }
      out += "\n"
      out += table(
        ["bot", "identities", "addresses", "places", "admitted", "seats bought", "most held", "hashes/place",
         "polls (429 too soon)", "refused"],
        VisitorRecord.Role.allCases.compactMap { role in
          bots[role.rawValue].map { bot in
            [
              role.rawValue, "\(bot.identities)", "\(bot.addresses)", "\(bot.places)", "\(bot.admitted)",
              "\(bot.seatsBought)", "\(bot.mostSeatsHeld)",
              bot.solutions > 0 ? format(bot.hashes / Double(max(bot.places, 1)), 0) : "–",
              bot.polls > 0 ? "\(bot.polls) (\(bot.pollsTooSoon))" : "–",
              bot.refused.sorted { $0.key < $1.key }.map { "\($0.key)×\($0.value)" }.joined(separator: " "),
            ]
          }
        })
    }
    if !refusals.isEmpty {
      out += "\nthe gateway's refusals: "
      out += refusals.sorted { $0.key < $1.key }.map { "\($0.key) \($0.value)" }.joined(separator: ", ")
    }
    out += "\n\nBoxOffice (PostgreSQL)\n"
    out +=
      "seats \(ledger.seatsTotal): sold \(ledger.seatsSold), held \(ledger.seatsHeld), available \(ledger.seatsAvailable)\n"
    out +=
      "orders \(ledger.orders) (visitors saw \(ordersSeen)), tickets \(ledger.tickets) (visitors saw \(ticketsSeen)), "
    out += "revenue \(ledger.revenueCents / 100)\n"
    out += "holds \(ledger.holds) (expired \(ledger.holdsExpired), released \(ledger.holdsReleased)); "
    out +=
      "charges \(ledger.charges), declines \(ledger.declines), refunds \(ledger.refunds), voids \(ledger.voids)\n"
    out += "seats sold twice \(ledger.seatsSoldTwice), ticket mismatches \(ledger.ticketMismatches), "
    out +=
      "orders not charged once \(ledger.ordersNotChargedOnce), unrefunded charges \(ledger.unrefundedCharges), "
    out += "held-seat leaks \(ledger.heldSeatLeaks)\n"
    if ledger.ordersCancelled + ledger.waitlistPlaces + aftermarket.cancelled + aftermarket.waitlisted > 0 {
      out +=
        "cancelled \(ledger.ordersCancelled) (visitors \(aftermarket.cancelled)), refunded \(ledger.cancellationRefunds) "
        + "(pending \(ledger.cancellationRefundsPending)), not settled \(ledger.cancellationsNotSettled)\n"
      out +=
        "waitlist: \(ledger.waitlistPlaces) places (visitors \(aftermarket.waitlisted)), offers \(ledger.waitlistOffers) "
        + "(visitors saw \(aftermarket.offered)), bought \(ledger.waitlistClaimed) (visitors \(aftermarket.boughtOffers)), "
        + "lapsed \(ledger.waitlistLapsed) (let run out \(aftermarket.letOffersLapse)), left \(ledger.waitlistLeft), "
        + "waiting \(ledger.waitlistWaiting), out of order \(ledger.waitlistOutOfOrder)\n"
    }
    out += "\n"
    if violations.isEmpty {
      out += "PASSED: every invariant held\n"
    } else {
      out += "FAILED\n"
      for violation in violations {
        out += "  \(violation.kind): \(violation.count)\n"
        for example in violation.examples { out += "    e.g. \(example)\n" }
      }
    }
    return out
  }

  private func format(_ value: Double, _ digits: Int) -> String {
    value.isFinite ? String(format: "%.\(digits)f", value) : "–"
  }

  private func table(_ header: [String], _ rows: [[String]]) -> String {
    let all = [header] + rows
    let widths = header.indices.map { column in all.map { $0[column].count }.max() ?? 0 }
    return all.map { row in
      row.indices.map { column in
        column == row.count - 1
          ? row[column] : row[column].padding(toLength: widths[column], withPad: " ", startingAt: 0)
      }.joined(separator: "  ")
    }.joined(separator: "\n") + "\n"
  }
}
