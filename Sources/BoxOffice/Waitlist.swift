public import Foundation
public import Logging
internal import HTTPTypes
public import PostgresNIO
internal import Prometheus

/// A place on a sold-out event's waitlist, as `GET /waitlist/{id}` shows it.
public struct WaitlistEntry: Sendable, Hashable, Codable {
  public var id: UUID
  public var eventId: UUID
  public var seats: Int
  /// `waiting`, `offered` (seats held for this buyer until `offer.expiresAt`), `claimed`
  /// (bought), `lapsed` (the offer ran out) or `left`.
  public var status: String
  /// While waiting: 1 for the next to be offered seats.
  public var position: Int?
  public var offer: Hold?
  public var createdAt: Date
}

/// Waitlists for sold-out events (#17 item 5). Seats that come back (a cancellation, a hold
/// run out) are offered in waitlist order, each offer a hold made for that buyer with its own
/// claim window; an unclaimed offer passes to the next in line. Offers for one event are made
/// under a per-event lock, so two passes never offer the same entry or the same seats, and the
/// head of the line is never skipped: when it wants more seats than are free, nobody behind
/// it is offered any (the free seats stay on sale).
public final class Waitlist: Sendable {
  let inventory: Inventory
  let offerDuration: Duration
  let maxSeats: Int
  let metrics: BoxOfficeMetrics
  let logger: Logger

  public init(
    inventory: Inventory, offerDuration: Duration, maxSeats: Int, metrics: BoxOfficeMetrics, logger: Logger
  ) {
    self.inventory = inventory
    self.metrics = metrics
    self.offerDuration = offerDuration
    self.maxSeats = maxSeats
    self.logger = logger
  }

  /// `POST /events/{id}/waitlist`: a place for `visitor`, only when nothing is free.
  public func join(event: UUID, visitor: String, seats: Int) async throws -> WaitlistEntry {
    guard (1...maxSeats).contains(seats) else {
      throw APIError(.badRequest, "invalid_seats", "seats must be 1-\(maxSeats)")
    }
    let logger = self.logger
    let id = try await inventory.transaction { connection -> UUID in
      try await Self.lockLine(of: event, on: connection, logger: logger)
      var exists = false
      var free = 0
      for try await count in try await connection.query(
        """
        SELECT count(*) FILTER (WHERE status = 'available' OR (status = 'held' AND held_until <= now()))
        FROM seats WHERE event_id = \(event)
        """, logger: logger
      ).decode(Int.self) {
        free = count
      }
      for try await _ in try await connection.query("SELECT 1 FROM events WHERE id = \(event)", logger: logger) {
        exists = true
      }
      guard exists else { throw APIError.notFound("event") }
      guard free == 0 else {
        throw APIError(
          .conflict, "not_sold_out", "\(free) seats are on sale: hold them instead of waiting")
      }
      for try await existing in try await connection.query(
        """
        SELECT id FROM waitlist
        WHERE event_id = \(event) AND visitor = \(visitor) AND status IN ('waiting', 'offered')
        """, logger: logger
      ).decode(UUID.self) {
        throw APIError(
          .conflict, "already_waiting", "you are on this event's waitlist already (\(existing.uuidString.lowercased()))")
      }
      let id = UUID()
      try await connection.query(
        "INSERT INTO waitlist (id, event_id, visitor, seats) VALUES (\(id), \(event), \(visitor), \(seats))",
        logger: logger)
      return id
    }
    metrics.waitlistJoins.increment()
    guard let entry = try await entry(id, visitor: visitor) else { throw APIError.notFound("waitlist entry") }
    return entry
  }

  /// The buyer's own entry (another buyer's is "not found").
  public func entry(_ id: UUID, visitor: String) async throws -> WaitlistEntry? {
    var found: (UUID, Int, String, Int64, UUID?, Date)?
    for try await row in try await inventory.client.query(
      """
      SELECT event_id, seats, status, place, hold_id, created_at FROM waitlist
      WHERE id = \(id) AND visitor = \(visitor)
      """, logger: logger
    ).decode((UUID, Int, String, Int64, UUID?, Date).self) {
      found = row
    }
    guard let (event, seats, status, position, hold, created) = found else { return nil }
    var entry = WaitlistEntry(
      id: id, eventId: event, seats: seats, status: status, position: nil, offer: nil, createdAt: created)
    if status == "waiting" {
      for try await ahead in try await inventory.client.query(
        """
        SELECT count(*) FROM waitlist
        WHERE event_id = \(event) AND status IN ('waiting', 'offered') AND place < \(position)
        """, logger: logger
      ).decode(Int.self) {
        entry.position = ahead + 1
      }
    }
    if status == "offered", let hold {
      entry.offer = try await inventory.hold(hold, visitor: visitor)
    }
    return entry
  }

  /// The buyer's entries, newest first.
  public func entries(visitor: String) async throws -> [WaitlistEntry] {
    var ids: [UUID] = []
    for try await id in try await inventory.client.query(
      "SELECT id FROM waitlist WHERE visitor = \(visitor) ORDER BY created_at DESC LIMIT 100", logger: logger
    ).decode(UUID.self) {
      ids.append(id)
    }
    var entries: [WaitlistEntry] = []
    for id in ids {
      if let entry = try await entry(id, visitor: visitor) { entries.append(entry) }
    }
    return entries
  }

  /// The hold offered to the buyer's entry, to check out (a bought one too: a retry of the
  /// checkout is answered from its idempotency record); `404`, `409` or `410` otherwise.
  public func offeredHold(_ id: UUID, visitor: String) async throws -> UUID {
    var found: (String, UUID?)?
    for try await row in try await inventory.client.query(
      "SELECT status, hold_id FROM waitlist WHERE id = \(id) AND visitor = \(visitor)", logger: logger
    ).decode((String, UUID?).self) {
      found = row
    }
    guard let (status, hold) = found else { throw APIError.notFound("waitlist entry") }
    switch (status, hold) {
    case ("offered", let hold?), ("claimed", let hold?): return hold
    case ("waiting", _): throw APIError(.conflict, "not_offered", "no seats have been offered to you yet")
    default: throw APIError(.gone, "offer_gone", "this waitlist place has \(status)")
    }
  }

  /// The offer was bought.
  func claimed(_ id: UUID) async throws {
    try await inventory.client.query(
      "UPDATE waitlist SET status = 'claimed' WHERE id = \(id) AND status = 'offered'", logger: logger)
  }

  /// `DELETE /waitlist/{id}`: leaves the line; an offer's seats pass to the next in line.
  public func leave(_ id: UUID, visitor: String) async throws -> Bool {
    var left: (UUID, UUID?)?
    for try await row in try await inventory.client.query(
      """
      UPDATE waitlist SET status = 'left'
      WHERE id = \(id) AND visitor = \(visitor) AND status IN ('waiting', 'offered')
      RETURNING event_id, hold_id
      """, logger: logger
    ).decode((UUID, UUID?).self) {
      left = row
    }
    guard let (event, hold) = left else { return false }
    if let hold { _ = try await inventory.release(hold, visitor: visitor) }
    try await offer(event: event)
    return true
  }

  /// Serialises, until the transaction ends, everything that changes an event's line (joins,
  /// offers).
  static func lockLine(of event: UUID, on connection: PostgresConnection, logger: Logger) async throws {
    try await connection.query(
      "SELECT pg_advisory_xact_lock(hashtextextended(\("waitlist:" + event.uuidString), 0))", logger: logger)
  }

  /// Offers of `event` (every event's with `nil`) whose hold was bought become `claimed`, those
  /// whose hold ran out or was released `lapsed`.
  static func settleOffers(event: UUID?) -> PostgresQuery {
    """
    UPDATE waitlist w SET status = CASE WHEN h.status = 'ordered' THEN 'claimed' ELSE 'lapsed' END
    FROM holds h
    WHERE w.hold_id = h.id AND w.status = 'offered' AND (\(event)::uuid IS NULL OR w.event_id = \(event))
      AND (h.status IN ('ordered', 'expired', 'released') OR h.expires_at <= now())
    """
  }

  /// Makes every offer the event's free seats allow, in waitlist order.
  public func offer(event: UUID) async throws {
    try await inventory.transaction { connection in try await self.offer(event: event, on: connection) }
  }

  /// The same inside a transaction that has just freed seats (a cancellation): they go to the
  /// waitlist before anyone else sees them.
  func offer(event: UUID, on connection: PostgresConnection) async throws {
    let logger = self.logger
    let milliseconds = Int(offerDuration.components.seconds * 1_000)
    try await Self.lockLine(of: event, on: connection, logger: logger)
    // Settled in this transaction, at its now(): an offer whose hold ran out lapses before its
    // seats (taken over below by that same now()) go to the next in line.
    try await connection.query(Self.settleOffers(event: event), logger: logger)
    while true {
      var head: (UUID, String, Int)?
      for try await row in try await connection.query(
        """
        SELECT id, visitor, seats FROM waitlist WHERE event_id = \(event) AND status = 'waiting'
        ORDER BY place LIMIT 1
        """, logger: logger
      ).decode((UUID, String, Int).self) {
        head = row
      }
      guard let (entry, visitor, wanted) = head else { return }
      // Free seats, together as the seat map reads; a seat a claim is locking is skipped.
      var seats: [(Int64, Int)] = []
      for try await row in try await connection.query(
        """
        SELECT id, price_cents FROM seats
        WHERE event_id = \(event) AND (status = 'available' OR (status = 'held' AND held_until <= now()))
        ORDER BY section, length(row_label), row_label, number LIMIT \(wanted) FOR UPDATE SKIP LOCKED
        """, logger: logger
      ).decode((Int64, Int).self) {
        seats.append(row)
      }
      guard seats.count == wanted else { return }
      let hold = UUID()
      let ids = seats.map(\.0)
      let total = seats.reduce(0) { $0 + $1.1 }
      // A hold run out whose seats are offered here is closed first, as a claim's takeover does.
      try await connection.query(
        """
        UPDATE holds SET status = 'expired', version = version + 1
        WHERE status = 'active' AND expires_at <= now()
          AND id IN (SELECT hold_id FROM seats WHERE id = ANY(\(ids)) AND hold_id IS NOT NULL)
        """, logger: logger)
      try await connection.query(
        """
        INSERT INTO holds (id, event_id, visitor, seat_ids, total_cents, expires_at)
        VALUES (\(hold), \(event), \(visitor), \(ids), \(total), now() + \(milliseconds) * interval '1 millisecond')
        """, logger: logger)
      try await connection.query(
        """
        UPDATE seats SET status = 'held', hold_id = \(hold),
               held_until = now() + \(milliseconds) * interval '1 millisecond', version = version + 1
        WHERE id = ANY(\(ids))
        """, logger: logger)
      try await connection.query(
        """
        UPDATE waitlist SET status = 'offered', hold_id = \(hold), offered_at = clock_timestamp()
        WHERE id = \(entry)
        """, logger: logger)
      metrics.waitlistOffers.increment()
      logger.info("waitlist offer", metadata: ["entry": "\(entry)", "seats": "\(wanted)"])
    }
  }

  /// The expiry worker's step: offers whose hold ran out or was released lapse, bought ones are
  /// claimed, and every event with people waiting is offered what is free.
  public func advance() async throws {
    try await inventory.client.query(Self.settleOffers(event: nil), logger: logger)
    var events: [UUID] = []
    for try await event in try await inventory.client.query(
      "SELECT DISTINCT event_id FROM waitlist WHERE status = 'waiting'", logger: logger
    ).decode(UUID.self) {
      events.append(event)
    }
    for event in events { try await offer(event: event) }
  }
}
