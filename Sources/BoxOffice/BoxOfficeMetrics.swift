public import Prometheus

/// BoxOffice's Prometheus series, rendered by `GET /metrics` (admin token).
public final class BoxOfficeMetrics: Sendable {
  public let registry: PrometheusCollectorRegistry
  let holdsCreated: Counter
  let holdConflicts: Counter
  let holdsReleased: Counter
  let seatsExpired: Counter
  let claimAttempts: Counter
  let guardRejections: Counter
  let holdAttemptsRefused: Counter
  let requestDuration: DurationHistogram
  /// How late the expiry worker came to the most overdue held seat, at its last pass.
  let expiryLag: Gauge
  /// When the expiry worker last finished a pass (Unix seconds): a stalled worker stops it.
  let expiryLastPass: Gauge
  let cancellations: Counter
  let waitlistJoins: Counter
  let waitlistOffers: Counter

  public init(registry: PrometheusCollectorRegistry = PrometheusCollectorRegistry()) {
    self.registry = registry
    func counter(_ name: String, _ help: String) -> Counter {
      registry.makeCounter(descriptor: MetricNameDescriptor(metricName: name, unitName: "", helpText: help))
    }
    holdsCreated = counter("boxoffice_holds_created_total", "Holds created.")
    holdConflicts = counter("boxoffice_hold_conflicts_total", "Hold requests answered 409 (seats taken).")
    holdsReleased = counter("boxoffice_holds_released_total", "Holds released by their visitor.")
    seatsExpired = counter("boxoffice_seats_expired_total", "Seats released by the expiry worker.")
    claimAttempts = counter(
      "boxoffice_claim_attempts_total",
      "Claim transactions run against the database (the guard saves the rest).")
    guardRejections = counter(
      "boxoffice_guard_rejections_total", "Hold requests turned away by the Redis hot-seat guard.")
    expiryLag = registry.makeGauge(
      descriptor: MetricNameDescriptor(
        metricName: "boxoffice_expiry_lag_seconds", unitName: "",
        helpText: "At the expiry worker's last pass: how long the most overdue held seat had been due."))
    expiryLastPass = registry.makeGauge(
      descriptor: MetricNameDescriptor(
        metricName: "boxoffice_expiry_last_pass_seconds", unitName: "",
        helpText: "When the expiry worker last finished a pass, in Unix seconds."))
    holdAttemptsRefused = counter(
      "boxoffice_hold_attempts_refused_total", "Hold attempts answered 429: the visitor tried too often.")
    requestDuration = registry.makeDurationHistogram(
      descriptor: MetricNameDescriptor(
        metricName: "boxoffice_request_duration_seconds", unitName: "",
        helpText: "API requests, handler time."),
      buckets: [
        .milliseconds(1), .milliseconds(2), .milliseconds(5), .milliseconds(10), .milliseconds(25),
        .milliseconds(50), .milliseconds(100), .milliseconds(250), .milliseconds(500), .seconds(1),
        .seconds(5),
      ])
    cancellations = counter("boxoffice_orders_cancelled_total", "Orders cancelled by their buyer.")
    waitlistJoins = counter("boxoffice_waitlist_joins_total", "Places taken on sold-out events' waitlists.")
    waitlistOffers = counter(
      "boxoffice_waitlist_offers_total", "Seats offered to waitlists as holds (one per offer, any number of seats).")
    for outcome in Self.checkoutOutcomes { _ = checkouts(outcome: outcome) }
    for outcome in Self.checkInOutcomes { _ = checkIns(outcome: outcome) }
    for outcome in Self.refundOutcomes { _ = refunds(outcome: outcome) }
  }

  static let checkInOutcomes = ["admitted", "already_used", "revoked", "wrong_event", "invalid", "unknown"]

  /// Scans at the door by outcome (one of `checkInOutcomes`).
  func checkIns(outcome: String) -> Counter {
    registry.makeCounter(
      descriptor: MetricNameDescriptor(
        metricName: "boxoffice_checkins_total", unitName: "", helpText: "Ticket scans at the door by outcome."),
      labels: [("outcome", outcome)])
  }

  static let refundOutcomes = ["succeeded", "retrying"]

  /// Refund attempts with the provider: `succeeded`, or `retrying` (failed, left pending).
  func refunds(outcome: String) -> Counter {
    registry.makeCounter(
      descriptor: MetricNameDescriptor(
        metricName: "boxoffice_refunds_total", unitName: "", helpText: "Refunds asked of the provider by outcome."),
      labels: [("outcome", outcome)])
  }

  /// Every checkout outcome, created up front so each series starts at 0 (a rate over a
  /// series that appears only with its first increment misses that increment).
  static let checkoutOutcomes = [
    "succeeded", "replayed", "declined", "payment_failed", "expired", "expired_refunded", "not_found",
    "already_ordered",
  ]

  /// Checkouts by outcome (one of `checkoutOutcomes`).
  func checkouts(outcome: String) -> Counter {
    registry.makeCounter(
      descriptor: MetricNameDescriptor(
        metricName: "boxoffice_checkouts_total", unitName: "", helpText: "Checkouts by outcome."),
      labels: [("outcome", outcome)])
  }
}
