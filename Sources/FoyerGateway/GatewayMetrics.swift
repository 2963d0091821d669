public import FoyerCore
internal import NIOCore
public import Prometheus
public import WaitingRoom

/// The gateway's Prometheus metrics, rendered by `GET /metrics` on the admin listener.
///
/// The per-process series are created once, up front, so the request path only bumps an
/// atomic (no label lookup, no lock). The room series (waiting, active, admitted, …) are the
/// room's cluster-wide numbers, read from Redis at scrape time: every gateway reports the
/// same values, so dashboards should use `max by (room)`, not `sum`.
public final class GatewayMetrics: Sendable {
  public let registry: PrometheusCollectorRegistry

  let passRejections: [TokenRejection: Counter]
  /// Indexed by the status class: `[0]` is 1xx … `[4]` is 5xx.
  let proxiedByClass: [Counter]
  /// In seconds as `Double`: a `DurationHistogram` compares every bucket through a call
  /// into the runtime on each record (perf: 0.4% of the proxy loop; this one is inlined away).
  let proxyDuration: ValueHistogram
  let expressRequests: Counter
  let upstreamConnectErrors: Counter
  let upstreamTimeouts: Counter
  let upstreamResets: Counter
  let upstreamBusy: Counter
  let redisErrors: Counter
  let statusPolls: Counter
  let waitingPages: Counter
  let newVisitors: Counter
  let challengesIssued: Counter
  let ruleHits: [TrafficRule.Action: Counter]
  let challengesSolved: Counter
  let connectionsRejected: Counter
  /// Requests refused at their head, by `Refusal.code`.
  private let refusals: [String: Counter]
  let openConnections: Gauge

  public init(registry: PrometheusCollectorRegistry = PrometheusCollectorRegistry()) {
    self.registry = registry
    var rejections: [TokenRejection: Counter] = [:]
    for reason in TokenRejection.allCases {
      rejections[reason] = registry.makeCounter(
        descriptor: .foyer(
          "foyer_pass_rejections_total", "Presented passes that failed verification, by reason."),
        labels: [("reason", reason.rawValue)])
    }
    passRejections = rejections
    proxiedByClass = (1...5).map { digit in
      registry.makeCounter(
        descriptor: .foyer(
          "foyer_proxied_requests_total",
          "Forwarded requests by the status class of the answer (gateway-made 502/504 included)."),
        labels: [("class", "\(digit)xx")])
    }
    proxyDuration = registry.makeValueHistogram(
      descriptor: .foyer(
        "foyer_proxy_duration_seconds",
        "Forwarded requests, from the request head to the end of the response."),
      buckets: [0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10])
    expressRequests = registry.makeCounter(
      descriptor: .foyer(
        "foyer_express_requests_total",
        "Forwarded requests that took the byte-level express lane (the rest took the NIOHTTP1 path)."))
    func upstreamErrors(_ kind: String) -> Counter {
      registry.makeCounter(
        descriptor: .foyer(
          "foyer_upstream_errors_total", "Upstream failures answered 502/504 or cut off, by kind."),
        labels: [("kind", kind)])
    }
    upstreamConnectErrors = upstreamErrors("connect")
    upstreamTimeouts = upstreamErrors("timeout")
    upstreamResets = upstreamErrors("closed")
    upstreamBusy = upstreamErrors("busy")
    redisErrors = registry.makeCounter(
      descriptor: .foyer(
        "foyer_redis_errors_total",
        "Queue operations on the request path that failed because Redis was unreachable or slow."))
    statusPolls = registry.makeCounter(
      descriptor: .foyer("foyer_status_polls_total", "Queue joins and polls answered (JSON or page)."))
    waitingPages = registry.makeCounter(
      descriptor: .foyer("foyer_waiting_pages_total", "Waiting pages served."))
    newVisitors = registry.makeCounter(
      descriptor: .foyer("foyer_visitor_tokens_issued_total", "New visitor ids issued by this gateway."))
    var ruleHits: [TrafficRule.Action: Counter] = [:]
    for action in [TrafficRule.Action.allow, .block] {
      ruleHits[action] = registry.makeCounter(
        descriptor: .foyer(
          "foyer_traffic_rule_hits_total", "Requests without a pass that a room's traffic rule let in or blocked."),
        labels: [("action", action.rawValue)])
    }
    self.ruleHits = ruleHits
    challengesIssued = registry.makeCounter(
      descriptor: .foyer("foyer_challenges_issued_total", "Proof-of-work challenges given to visitors without a place."))
    challengesSolved = registry.makeCounter(
      descriptor: .foyer("foyer_challenges_solved_total", "Solved challenges that bought a place in line."))
    connectionsRejected = registry.makeCounter(
      descriptor: .foyer(
        "foyer_connections_rejected_total", "Connections closed at once: over max_connections."))
    var refusals: [String: Counter] = [:]
    for code in Refusal.codes {
      refusals[code] = registry.makeCounter(
        descriptor: .foyer(
          "foyer_refused_requests_total", "Requests refused at their head or over a client limit, by reason (the error code)."),
        labels: [("reason", code)])
    }
    self.refusals = refusals
    openConnections = registry.makeGauge(
      descriptor: .foyer("foyer_open_connections", "Client connections open on this gateway."))
  }

  func countRule(_ action: TrafficRule.Action) {
    ruleHits[action]?.increment()
  }

  /// A request refused at its head for `code` (framing, form or target).
  func countRefused(_ code: String) {
    refusals[code]?.increment()
  }

  /// A forwarded request that started at `start` has ended.
  func recordProxied(since start: NIODeadline) {
    proxyDuration.record(Double((NIODeadline.now() - start).nanoseconds) / 1e9)
  }

  func countProxied(status: Int) {
    let index = min(max(status / 100, 1), 5) - 1
    proxiedByClass[index].increment()
  }

  /// Sets the room gauges from the room's numbers in Redis (called at scrape time).
  public func record(room: String, stats: RoomStats) {
    let gauges: [(String, String, Int)] = [
      ("foyer_room_waiting", "Visitors waiting in the queue.", stats.waiting),
      ("foyer_room_active", "Admitted shoppers holding a slot (claimed or not).", stats.active),
      ("foyer_room_joined", "Visitors who ever joined (cumulative).", stats.joined),
      ("foyer_room_admitted", "Visitors admitted (cumulative).", stats.admitted),
      ("foyer_room_claimed", "Admissions claimed by their visitor (cumulative).", stats.claimed),
      ("foyer_room_no_shows", "Admissions never claimed in time (cumulative).", stats.noShows),
      ("foyer_room_abandoned", "Waiting visitors who stopped polling (cumulative).", stats.abandoned),
      ("foyer_room_released", "Slots freed by Foyer-Release or leave (cumulative).", stats.released),
      ("foyer_room_expired", "Sessions that ran out (cumulative).", stats.expired),
      ("foyer_room_admitted_last_minute", "Admissions in the last minute.", stats.admittedLastMinute),
    ]
    for (name, help, value) in gauges {
      registry.makeGauge(
        descriptor: .foyer(name, help), labels: [("room", room)]
      ).set(Int64(value))
    }
  }
}

extension GatewayMetrics {
  /// Sets the room's live settings as gauges (called at scrape time), so alerts can compare
  /// the numbers with what operators asked for: the cap, the rate, and one
  /// `foyer_room_state{state}` series per state, 1 for the room's current one.
  public func record(room: String, settings: RoomSettings) {
    registry.makeGauge(
      descriptor: .foyer("foyer_room_max_active", "The room's cap on concurrent shoppers (0 = none)."),
      labels: [("room", room)]
    ).set(Int64(settings.maxActive))
    registry.makeGauge(
      descriptor: .foyer("foyer_room_rate_per_minute", "The room's admission rate, per minute."),
      labels: [("room", room)]
    ).set(Int64(settings.ratePerMinute))
    registry.makeGauge(
      descriptor: .foyer(
        "foyer_room_starts_at_seconds", "When the room's sale starts (Unix seconds; 0 = no start)."),
      labels: [("room", room)]
    ).set(Int64(settings.startsAtMilliseconds / 1_000))
    for state in RoomState.allCases {
      registry.makeGauge(
        descriptor: .foyer(
          "foyer_room_state", "1 for the room's current state (queue, paused, closed, passthrough)."),
        labels: [("room", room), ("state", state.rawValue)]
      ).set(Int64(state == settings.state ? 1 : 0))
    }
  }
}

extension MetricNameDescriptor {
  /// A full metric name and its help text (no namespace or unit parts: the names are
  /// written out so they can be grepped).
  static func foyer(_ name: String, _ help: String) -> MetricNameDescriptor {
    MetricNameDescriptor(metricName: name, unitName: "", helpText: help)
  }
}
