internal import BoxOffice
internal import Foundation
internal import Logging
internal import PostgresNIO

/// BoxOffice's books for the event after the run, read straight from PostgreSQL, and the
/// invariants they must keep whatever happened over HTTP (DESIGN §6).
public struct Ledger: Sendable, Codable {
  public var seatsTotal = 0
  public var seatsSold = 0
  public var seatsHeld = 0
  public var seatsAvailable = 0
  public var orders = 0
  public var revenueCents = 0
  public var tickets = 0
  public var holds = 0
  public var holdsExpired = 0
  public var holdsReleased = 0
  public var charges = 0
  public var declines = 0
  public var refunds = 0
  public var voids = 0
  /// Seats with more than one live ticket, or sold more than once in the audit trail.
  public var seatsSoldTwice = 0
  /// Sold seats without a live ticket, and live tickets on seats not sold.
  public var ticketMismatches = 0
  /// Confirmed orders whose hold was charged other than exactly once.
  public var ordersNotChargedOnce = 0
  /// Holds without an order whose successful charges were not all refunded.
  public var unrefundedCharges = 0
  /// Ordered holds with a seat not sold to that order.
  public var ordersMissingSeats = 0
  /// Holds still active after their expiry (plus the worker's grace), and seats held by a
  /// hold that ended.
  public var heldSeatLeaks = 0

  // After the sale.
  public var ordersCancelled = 0
  public var cancellationRefunds = 0
  public var cancellationRefundsPending = 0
  /// Cancelled orders without exactly one refund, or with a live ticket left.
  public var cancellationsNotSettled = 0
  public var waitlistPlaces = 0
  public var waitlistOffers = 0
  public var waitlistClaimed = 0
  public var waitlistLapsed = 0
  public var waitlistLeft = 0
  public var waitlistWaiting = 0
  /// Offers made out of the line's order, places still waiting ahead of one offered seats,
  /// and bought offers without their order.
  public var waitlistOutOfOrder = 0

  /// Runs `body` with a client of the database, closed afterwards.
  static func withDatabase<T: Sendable>(
    _ url: String, _ body: (PostgresClient) async throws -> T
  ) async throws -> T {
    let client = PostgresClient(configuration: try postgresConfiguration(url: url, maximumConnections: 2))
    return try await withThrowingTaskGroup(of: Void.self) { group in
      group.addTask { await client.run() }
      defer { group.cancelAll() }
      return try await body(client)
    }
  }

  /// One column of a query's rows: the shape of every small question below.
  private static func column<T: PostgresDecodable & Sendable>(
    _ client: PostgresClient, _ query: PostgresQuery, as type: T.Type, logger: Logger
  ) async throws -> [T] {
    var values: [T] = []
    for try await value in try await client.query(query, logger: logger).decode(T.self) {
      values.append(value)
    }
    return values
  }

  /// The seconds until the last active hold of the event runs out (0 when none is left).
  static func secondsUntilHoldsEnd(
    _ client: PostgresClient, event: UUID, logger: Logger
  ) async throws -> Double {
    let seconds = try await column(
      client,
      """
      SELECT coalesce(extract(epoch FROM max(expires_at) - now()), 0)::float8
      FROM holds WHERE event_id = \(event) AND status = 'active'
      """, as: Double.self, logger: logger)
    return max(seconds.first ?? 0, 0)
  }

  /// The sections of the event, for the visitors to choose from.
  static func sections(_ client: PostgresClient, event: UUID, logger: Logger) async throws -> [String] {
    try await column(
      client, "SELECT DISTINCT section FROM seats WHERE event_id = \(event) ORDER BY section",
      as: String.self,
      logger: logger)
  }

  /// Seats not sold yet (available or held).
  static func unsoldSeats(_ client: PostgresClient, event: UUID, logger: Logger) async throws -> Int {
    try await column(
      client, "SELECT count(*)::int8 FROM seats WHERE event_id = \(event) AND status <> 'sold'", as: Int.self,
      logger: logger
    ).first ?? 0
  }

  /// The ids of the event's orders (lowercase), to find any a visitor was given and the
  /// database does not have.
  static func orderIDs(_ client: PostgresClient, event: UUID, logger: Logger) async throws -> Set<String> {
    let ids = try await column(
      client, "SELECT id FROM orders WHERE event_id = \(event)", as: UUID.self, logger: logger)
    return Set(ids.map { $0.uuidString.lowercased() })
  }

  /// Reads the books of one event.
  static func read(_ client: PostgresClient, event: UUID, logger: Logger) async throws -> Ledger {
    func count(_ query: PostgresQuery) async throws -> Int {
      try await column(client, query, as: Int.self, logger: logger).first ?? 0
    }
    var ledger = Ledger()
    for try await (status, number) in try await client.query(
      "SELECT status, count(*)::int8 FROM seats WHERE event_id = \(event) GROUP BY status", logger: logger
    ).decode((String, Int).self) {
      ledger.seatsTotal += number
      switch status {
      case "sold": ledger.seatsSold = number
      case "held": ledger.seatsHeld = number
      default: ledger.seatsAvailable = number
      }
    }
    for try await (orders, revenue) in try await client.query(
      """
      SELECT count(*)::int8, coalesce(sum(total_cents), 0)::int8 FROM orders
      WHERE event_id = \(event) AND status = 'confirmed'
      """, logger: logger
    ).decode((Int, Int).self) {
      ledger.orders = orders
      ledger.revenueCents = revenue
    }
    ledger.tickets = try await count(
      """
      SELECT count(*)::int8 FROM tickets t JOIN orders o ON o.id = t.order_id
      WHERE o.event_id = \(event) AND t.live
      """)
    for try await (status, number) in try await client.query(
      "SELECT status, count(*)::int8 FROM holds WHERE event_id = \(event) GROUP BY status", logger: logger
    ).decode((String, Int).self) {
      ledger.holds += number
      if status == "expired" { ledger.holdsExpired = number }
      if status == "released" { ledger.holdsReleased = number }
    }
    for try await (kind, outcome, number) in try await client.query(
      """
      SELECT p.kind, p.outcome, count(*)::int8 FROM payments p JOIN holds h ON h.id = p.hold_id
      WHERE h.event_id = \(event) GROUP BY p.kind, p.outcome
      """, logger: logger
    ).decode((String, String, Int).self) {
      switch (kind, outcome) {
      case ("charge", "succeeded"): ledger.charges = number
      case ("charge", "declined"): ledger.declines = number
      case ("refund", "succeeded"): ledger.refunds = number
      case ("void", _): ledger.voids += number
      default: break
      }
    }

    // The invariants.
    ledger.seatsSoldTwice =
      try await count(
        """
        SELECT count(*)::int8 FROM (
          SELECT t.seat_id FROM tickets t JOIN seats s ON s.id = t.seat_id
          WHERE s.event_id = \(event) AND t.live GROUP BY t.seat_id HAVING count(*) > 1) twice
        """)
      // A seat sold again must have come back in between (a cancellation): in its audit trail,
      // sales never outnumber returns from sold by more than one.
      + (try await count(
        """
        SELECT count(*)::int8 FROM (
          SELECT seat_id FROM seat_audit WHERE event_id = \(event)
          GROUP BY seat_id
          HAVING count(*) FILTER (WHERE to_status = 'sold')
            > count(*) FILTER (WHERE from_status = 'sold' AND to_status <> 'sold') + 1) twice
        """))
    ledger.ticketMismatches = try await count(
      """
      SELECT count(*)::int8 FROM seats s WHERE s.event_id = \(event)
        AND (s.status = 'sold') <> EXISTS (SELECT 1 FROM tickets t WHERE t.seat_id = s.id AND t.live)
      """)
    ledger.ordersNotChargedOnce = try await count(
      """
      SELECT count(*)::int8 FROM orders o WHERE o.event_id = \(event) AND o.status = 'confirmed'
        AND (SELECT count(*) FROM payments p WHERE p.hold_id = o.hold_id
             AND p.kind = 'charge' AND p.outcome = 'succeeded') <> 1
      """)
    ledger.unrefundedCharges = try await count(
      """
      SELECT count(*)::int8 FROM holds h WHERE h.event_id = \(event)
        AND NOT EXISTS (SELECT 1 FROM orders o WHERE o.hold_id = h.id)
        AND (SELECT count(*) FROM payments p WHERE p.hold_id = h.id AND p.kind = 'charge' AND p.outcome = 'succeeded')
         <> (SELECT count(*) FROM payments p WHERE p.hold_id = h.id AND p.kind = 'refund' AND p.outcome = 'succeeded')
      """)
    ledger.ordersMissingSeats = try await count(
      """
      SELECT count(*)::int8 FROM holds h JOIN orders o ON o.hold_id = h.id, unnest(h.seat_ids) AS seat(id)
      WHERE h.event_id = \(event) AND o.status = 'confirmed'
        AND NOT EXISTS (SELECT 1 FROM tickets t WHERE t.order_id = o.id AND t.seat_id = seat.id AND t.live)
      """)
    ledger.heldSeatLeaks =
      try await count(
        """
        SELECT count(*)::int8 FROM holds WHERE event_id = \(event) AND status = 'active'
          AND expires_at < now() - interval '5 seconds'
        """)
      + (try await count(
        """
        SELECT count(*)::int8 FROM seats s WHERE s.event_id = \(event) AND s.status = 'held'
          AND (s.held_until < now() - interval '5 seconds'
               OR NOT EXISTS (SELECT 1 FROM holds h WHERE h.id = s.hold_id AND h.status = 'active'))
        """))
    try await readAftermarket(&ledger, client, event: event, logger: logger)
    return ledger
  }

  /// Cancellations, refunds and the waitlist, and their invariants.
  private static func readAftermarket(
    _ ledger: inout Ledger, _ client: PostgresClient, event: UUID, logger: Logger
  ) async throws {
    func count(_ query: PostgresQuery) async throws -> Int {
      try await column(client, query, as: Int.self, logger: logger).first ?? 0
    }
    ledger.ordersCancelled = try await count(
      "SELECT count(*)::int8 FROM orders WHERE event_id = \(event) AND status = 'cancelled'")
    for try await (status, number) in try await client.query(
      """
      SELECT r.status, count(*)::int8 FROM refunds r JOIN orders o ON o.id = r.order_id
      WHERE o.event_id = \(event) GROUP BY r.status
      """, logger: logger
    ).decode((String, Int).self) {
      if status == "succeeded" { ledger.cancellationRefunds = number } else { ledger.cancellationRefundsPending = number }
    }
    ledger.cancellationsNotSettled = try await count(
      """
      SELECT count(*)::int8 FROM orders o WHERE o.event_id = \(event) AND o.status = 'cancelled'
        AND ((SELECT count(*) FROM refunds r WHERE r.order_id = o.id) <> 1
          OR EXISTS (SELECT 1 FROM tickets t WHERE t.order_id = o.id AND t.live))
      """)
    for try await (status, number) in try await client.query(
      "SELECT status, count(*)::int8 FROM waitlist WHERE event_id = \(event) GROUP BY status", logger: logger
    ).decode((String, Int).self) {
      ledger.waitlistPlaces += number
      switch status {
      case "claimed": ledger.waitlistClaimed = number
      case "lapsed": ledger.waitlistLapsed = number
      case "left": ledger.waitlistLeft = number
      case "waiting": ledger.waitlistWaiting = number
      default: break
      }
    }
    ledger.waitlistOffers = try await count(
      "SELECT count(*)::int8 FROM waitlist WHERE event_id = \(event) AND offered_at IS NOT NULL")
    ledger.waitlistOutOfOrder =
      try await count(
        """
        SELECT count(*)::int8 FROM (
          SELECT place, lag(place) OVER (ORDER BY offered_at) AS before FROM waitlist
          WHERE event_id = \(event) AND offered_at IS NOT NULL) offers
        WHERE place < before
        """)
      + (try await count(
        """
        SELECT count(*)::int8 FROM waitlist w WHERE w.event_id = \(event) AND w.status = 'waiting'
          AND w.place < (SELECT max(place) FROM waitlist WHERE event_id = \(event) AND offered_at IS NOT NULL)
        """))
      + (try await count(
        """
        SELECT count(*)::int8 FROM waitlist w WHERE w.event_id = \(event) AND w.status = 'claimed'
          AND NOT EXISTS (SELECT 1 FROM orders o WHERE o.hold_id = w.hold_id)
        """))
  }
}
