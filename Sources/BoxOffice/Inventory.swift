public import Foundation
internal import HTTPTypes
public import Logging
public import PostgresNIO

/// The result of a claim: the hold, or the seats that were not available (all-or-nothing).
public enum ClaimResult: Sendable, Hashable {
  case held(Hold)
  case unavailable([Int64])
}

/// Seats, holds and events in PostgreSQL (DESIGN §6). Every seat change happens under row
/// locks taken in seat-id order, so concurrent claims, releases and checkouts never deadlock;
/// READ COMMITTED is enough because each decision re-reads the locked rows.
public final class Inventory: Sendable {
  public let client: PostgresClient
  let logger: Logger

  public init(client: PostgresClient, logger: Logger = Logger(label: "boxoffice.inventory")) {
    self.client = client
    self.logger = logger
  }

  /// Runs `body` in a transaction on one pooled connection: COMMIT if it returns, ROLLBACK if
  /// it throws (the error is rethrown as is, so callers can match on it).
  func transaction<T: Sendable>(_ body: (PostgresConnection) async throws -> T) async throws -> T {
    let logger = self.logger
    return try await client.withConnection { connection in
      try await connection.query("BEGIN", logger: logger)
      do {
        let value = try await body(connection)
        try await connection.query("COMMIT", logger: logger)
        return value
      } catch {
        _ = try? await connection.query("ROLLBACK", logger: logger)
        throw error
      }
    }
  }

  // MARK: Events

  /// Creates an event and its seats (one statement per section, `generate_series`).
  public func createEvent(_ spec: EventSpec) async throws -> Event {
    try spec.validate()
    let id = UUID()
    let venue = UUID()
    try await transaction { connection in
      try await connection.query(
        "INSERT INTO venues (id, name, city) VALUES (\(venue), \(spec.venue), \(spec.city))", logger: logger)
      try await connection.query(
        """
        INSERT INTO events (id, venue_id, name, category, city, starts_at, on_sale_at, status)
        VALUES (\(id), \(venue), \(spec.name), \(spec.category), \(spec.city), \(spec.startsAt), \(spec.onSaleAt),
                'on_sale')
        """, logger: logger)
      for section in spec.sections {
        let labels = (0..<section.rows).map(EventSpec.rowLabel)
        try await connection.query(
          """
          INSERT INTO seats (event_id, section, row_label, number, price_cents)
          SELECT \(id), \(section.name), label, n, \(section.priceCents)
          FROM unnest(\(labels)::text[]) WITH ORDINALITY AS r(label, i), generate_series(1, \(section.seatsPerRow)) AS n
          ORDER BY i, n
          """, logger: logger)
      }
    }
    guard let event = try await event(id) else { throw APIError.notFound("event") }
    return event
  }

  static let eventColumns = """
    e.id, e.name, e.category, e.city, v.name, e.starts_at, e.on_sale_at, e.status,
    (SELECT count(*) FROM seats s WHERE s.event_id = e.id
       AND (s.status = 'available' OR (s.status = 'held' AND s.held_until < now())))::int,
    (SELECT count(*) FROM seats s WHERE s.event_id = e.id)::int,
    coalesce((SELECT min(price_cents) FROM seats s WHERE s.event_id = e.id), 0)
    """

  public func event(_ id: UUID) async throws -> Event? {
    let rows = try await client.query(
      PostgresQuery(
        unsafeSQL:
          "SELECT \(Self.eventColumns) FROM events e JOIN venues v ON v.id = e.venue_id WHERE e.id = $1",
        binds: Self.binds(id)), logger: logger)
    for try await row in rows.decode(EventRow.self) { return Self.event(row) }
    return nil
  }

  public struct EventFilter: Sendable {
    public var text: String?
    public var city: String?
    public var category: String?
    public var from: Date?
    public var to: Date?
    public var limit = 20
    public var offset = 0
    public init() {}
  }

  /// Events matching every given filter, soonest first; with the total for pagination.
  public func events(_ filter: EventFilter) async throws -> (events: [Event], total: Int) {
    var conditions: [String] = []
    var binds = PostgresBindings()
    func add(_ condition: String, _ value: some PostgresNonThrowingEncodable) {
      binds.append(value)
      conditions.append(condition.replacingOccurrences(of: "?", with: "$\(binds.count)"))
    }
    if let text = filter.text, !text.isEmpty {
      add("(e.name ILIKE ? OR v.name ILIKE $\(binds.count + 1))", "%" + Self.escapeLike(text) + "%")
    }
    if let city = filter.city, !city.isEmpty { add("lower(e.city) = lower(?)", city) }
    if let category = filter.category, !category.isEmpty { add("lower(e.category) = lower(?)", category) }
    if let from = filter.from { add("e.starts_at >= ?", from) }
    if let to = filter.to { add("e.starts_at < ?", to) }
    let whereClause = conditions.isEmpty ? "" : "WHERE " + conditions.joined(separator: " AND ")
    var total = 0
    for try await count in try await client.query(
      PostgresQuery(
        unsafeSQL: "SELECT count(*)::int FROM events e JOIN venues v ON v.id = e.venue_id \(whereClause)",
        binds: binds), logger: logger
    ).decode(Int.self) {
      total = count
    }
    var pageBinds = binds
    pageBinds.append(filter.limit)
    pageBinds.append(filter.offset)
    let rows = try await client.query(
      PostgresQuery(
        unsafeSQL: """
          SELECT \(Self.eventColumns) FROM events e JOIN venues v ON v.id = e.venue_id \(whereClause)
          ORDER BY e.starts_at, e.id LIMIT $\(binds.count + 1) OFFSET $\(binds.count + 2)
          """, binds: pageBinds), logger: logger)
    var events: [Event] = []
    for try await row in rows.decode(EventRow.self) { events.append(Self.event(row)) }
    return (events, total)
  }

  typealias EventRow = (UUID, String, String, String, String, Date, Date, String, Int, Int, Int)

  static func event(_ row: EventRow) -> Event {
    Event(
      id: row.0, name: row.1, category: row.2, city: row.3, venue: row.4, startsAt: row.5, onSaleAt: row.6,
      status: row.7, seatsAvailable: row.8, seatsTotal: row.9, minPriceCents: row.10)
  }

  static func escapeLike(_ text: String) -> String {
    text.replacingOccurrences(of: "\\", with: "\\\\").replacingOccurrences(of: "%", with: "\\%")
      .replacingOccurrences(of: "_", with: "\\_")
  }

  static func binds<each Value: PostgresNonThrowingEncodable>(_ values: repeat each Value) -> PostgresBindings
  {
    var binds = PostgresBindings()
    repeat binds.append(each values)
    return binds
  }

  // MARK: Seat map

  /// A fingerprint of the seat map: every seat change bumps the seat's version, and holds
  /// that ran out (shown as available before the worker releases them) are counted.
  public func seatMapTag(event: UUID, section: String?) async throws -> String? {
    let rows = try await client.query(
      """
      SELECT count(*)::int, coalesce(sum(version), 0)::bigint,
             count(*) FILTER (WHERE status = 'held' AND held_until < now())::int
      FROM seats WHERE event_id = \(event) AND (\(section)::text IS NULL OR section = \(section))
      """, logger: logger)
    for try await (count, versions, lapsed) in rows.decode((Int, Int64, Int).self) {
      return count == 0 ? nil : "\"\(count)-\(versions)-\(lapsed)\""
    }
    return nil
  }

  public func seats(event: UUID, section: String?) async throws -> [SeatView] {
    let rows = try await client.query(
      """
      SELECT id, section, row_label, number, price_cents,
             CASE WHEN status = 'held' AND held_until < now() THEN 'available' ELSE status END
      FROM seats WHERE event_id = \(event) AND (\(section)::text IS NULL OR section = \(section))
      ORDER BY section, length(row_label), row_label, number
      """, logger: logger)
    var seats: [SeatView] = []
    for try await (id, section, row, number, price, status) in rows.decode(
      (Int64, String, String, Int, Int, String).self)
    {
      seats.append(
        SeatView(id: id, section: section, row: row, number: number, priceCents: price, status: status))
    }
    return seats
  }

  // MARK: Holds

  /// Holds exactly `seatIds` for `visitor`, or none of them.
  ///
  /// The rows are locked in id order (`ORDER BY id FOR UPDATE`), then one conditional
  /// `UPDATE` takes the seats that are available or held by a hold that ran out (lazy
  /// takeover). Fewer rows than asked: roll back and name the others.
  public func claim(
    event: UUID, seatIds: [Int64], visitor: String, duration: Duration, seatCap: Int? = nil
  ) async throws -> ClaimResult {
    do {
      return .held(
        try await claimOrThrow(
          event: event, seatIds: seatIds, visitor: visitor, duration: duration, seatCap: seatCap))
    } catch let unavailable as Unavailable {
      return .unavailable(unavailable.seatIds)
    }
  }

  /// `seatCap`: the seats one visitor may hold at once and have bought for the event,
  /// together, at most; checked under a per-visitor lock, so concurrent claims of one
  /// visitor are counted one after another.
  private func claimOrThrow(
    event: UUID, seatIds: [Int64], visitor: String, duration: Duration, seatCap: Int? = nil
  ) async throws -> Hold {
    let holdID = UUID()
    let milliseconds = Int(
      duration.components.seconds * 1_000 + duration.components.attoseconds / 1_000_000_000_000_000)
    return try await transaction { connection -> Hold in
      if let seatCap {
        let key = visitor + ":" + event.uuidString
        try await connection.query(
          "SELECT pg_advisory_xact_lock(hashtextextended(\(key), 0))", logger: logger)
        var taken = 0
        for try await count in try await connection.query(
          """
          SELECT coalesce(sum(cardinality(h.seat_ids)), 0)::bigint FROM holds h
          WHERE h.event_id = \(event) AND h.visitor = \(visitor)
            AND ((h.status = 'active' AND h.expires_at > now())
              OR (h.status = 'ordered' AND EXISTS (
                SELECT 1 FROM orders o WHERE o.hold_id = h.id AND o.status = 'confirmed')))
          """, logger: logger
        ).decode(Int64.self) {
          taken = Int(count)
        }
        guard taken + seatIds.count <= seatCap else {
          throw APIError(
            .conflict, "limit_reached",
            "one visitor may hold and buy \(seatCap) seats of this event; \(taken) are held or bought already",
            details: ["limit": [Int64(seatCap)], "taken": [Int64(taken)], "asked": [Int64(seatIds.count)]])
        }
      }
      var existing: [Int64] = []
      for try await id in try await connection.query(
        "SELECT id FROM seats WHERE event_id = \(event) AND id = ANY(\(seatIds)) ORDER BY id FOR UPDATE",
        logger: logger
      ).decode(Int64.self) {
        existing.append(id)
      }
      guard existing.count == seatIds.count else {
        let unknown = Set(seatIds).subtracting(existing).sorted()
        throw APIError(
          .badRequest, "unknown_seats", "these seats are not part of the event", details: ["seatIds": unknown]
        )
      }
      var seats: [HeldSeat] = []
      var expiresAt = Date()
      for try await (id, section, row, number, price, until) in try await connection.query(
        """
        UPDATE seats SET status = 'held', hold_id = \(holdID),
               held_until = now() + \(milliseconds) * interval '1 millisecond', version = version + 1
        WHERE id = ANY(\(seatIds))
          AND (status = 'available' OR (status = 'held' AND held_until < now()))
        RETURNING id, section, row_label, number, price_cents, held_until
        """, logger: logger
      ).decode((Int64, String, String, Int, Int, Date).self) {
        seats.append(HeldSeat(id: id, section: section, row: row, number: number, priceCents: price))
        expiresAt = until
      }
      guard seats.count == seatIds.count else {
        throw Unavailable(seatIds: Set(seatIds).subtracting(seats.map(\.id)).sorted())
      }
      seats.sort { $0.seatOrder < $1.seatOrder }
      let total = seats.reduce(0) { $0 + $1.priceCents }
      try await connection.query(
        """
        INSERT INTO holds (id, event_id, visitor, seat_ids, total_cents, expires_at)
        VALUES (\(holdID), \(event), \(visitor), \(seats.map(\.id)), \(total), \(expiresAt))
        """, logger: logger)
      return Hold(
        id: holdID, eventId: event, seats: seats, totalCents: total, expiresAt: expiresAt, status: "active")
    }
  }

  /// Thrown inside the claim transaction to roll it back.
  struct Unavailable: Error {
    let seatIds: [Int64]
  }

  /// `quantity` seats of `section`: adjacent in one row where possible (the first run long
  /// enough, front rows first), else the best seats left. Retries when another claim takes
  /// the picked seats first.
  public func claimBest(
    event: UUID, section: String, quantity: Int, visitor: String, duration: Duration, seatCap: Int? = nil
  ) async throws -> ClaimResult {
    for _ in 0..<5 {
      let picked = try await pickBest(event: event, section: section, quantity: quantity)
      guard picked.count == quantity else { return .unavailable([]) }
      do {
        return .held(
          try await claimOrThrow(
            event: event, seatIds: picked, visitor: visitor, duration: duration, seatCap: seatCap))
      } catch is Unavailable {
        continue  // taken meanwhile: pick again
      }
    }
    return .unavailable([])
  }

  func pickBest(event: UUID, section: String, quantity: Int) async throws -> [Int64] {
    let free = """
      SELECT id, row_label, number, number - row_number() OVER (PARTITION BY row_label ORDER BY number) AS run
      FROM seats WHERE event_id = $1 AND section = $2
        AND (status = 'available' OR (status = 'held' AND held_until < now()))
      """
    var ids: [Int64] = []
    for try await id in try await client.query(
      PostgresQuery(
        unsafeSQL: """
          WITH free AS (\(free)),
          runs AS (
            SELECT row_label, run, min(number) AS first FROM free GROUP BY row_label, run HAVING count(*) >= $3
            ORDER BY length(row_label), row_label, first LIMIT 1)
          SELECT f.id FROM free f JOIN runs r USING (row_label, run) ORDER BY f.number LIMIT $3
          """, binds: Self.binds(event, section, quantity)), logger: logger
    ).decode(Int64.self) {
      ids.append(id)
    }
    if ids.count == quantity { return ids }
    ids = []
    for try await id in try await client.query(
      PostgresQuery(
        unsafeSQL:
          "WITH free AS (\(free)) SELECT id FROM free ORDER BY length(row_label), row_label, number LIMIT $3",
        binds: Self.binds(event, section, quantity)), logger: logger
    ).decode(Int64.self) {
      ids.append(id)
    }
    return ids
  }

  /// The visitor's own hold (another visitor's is "not found").
  public func hold(_ id: UUID, visitor: String) async throws -> Hold? {
    var found: (UUID, [Int64], Int, Date, String, Bool)?
    for try await row in try await client.query(
      """
      SELECT event_id, seat_ids, total_cents, expires_at, status, expires_at <= now()
      FROM holds WHERE id = \(id) AND visitor = \(visitor)
      """, logger: logger
    ).decode((UUID, [Int64], Int, Date, String, Bool).self) {
      found = row
    }
    guard let (event, seatIds, total, expiresAt, status, lapsed) = found else { return nil }
    var seats: [HeldSeat] = []
    for try await (seat, section, row, number, price) in try await client.query(
      """
      SELECT id, section, row_label, number, price_cents FROM seats WHERE id = ANY(\(seatIds))
      ORDER BY section, length(row_label), row_label, number
      """, logger: logger
    ).decode((Int64, String, String, Int, Int).self) {
      seats.append(HeldSeat(id: seat, section: section, row: row, number: number, priceCents: price))
    }
    return Hold(
      id: id, eventId: event, seats: seats, totalCents: total, expiresAt: expiresAt,
      status: status == "active" && lapsed ? "expired" : status)
  }

  /// Gives the seats of an active hold back. `false` if there was no active hold to release.
  public func release(_ id: UUID, visitor: String) async throws -> Bool {
    try await transaction { connection in
      var active = false
      for try await _ in try await connection.query(
        """
        UPDATE holds SET status = 'released', version = version + 1
        WHERE id = \(id) AND visitor = \(visitor) AND status = 'active' RETURNING id
        """, logger: logger
      ) {
        active = true
      }
      guard active else { return false }
      try await connection.query(
        "SELECT id FROM seats WHERE hold_id = \(id) AND status = 'held' ORDER BY id FOR UPDATE",
        logger: logger)
      try await connection.query(
        """
        UPDATE seats SET status = 'available', hold_id = NULL, held_until = NULL, version = version + 1
        WHERE hold_id = \(id) AND status = 'held'
        """, logger: logger)
      return true
    }
  }

  // MARK: Expiry

  /// Releases up to `limit` seats whose hold ran out (skipping rows other transactions have
  /// locked: they are being claimed or sold right now) and marks those holds expired.
  public func releaseExpired(limit: Int = 500) async throws -> Int {
    // Two statements, each its own transaction, each skipping locked rows: the worker never
    // waits for a checkout or a claim (and so can never deadlock with one).
    var released = 0
    for try await _ in try await client.query(
      """
      WITH due AS (
        SELECT id FROM seats WHERE status = 'held' AND held_until <= now()
        ORDER BY id LIMIT \(limit) FOR UPDATE SKIP LOCKED)
      UPDATE seats s SET status = 'available', hold_id = NULL, held_until = NULL, version = s.version + 1
      FROM due WHERE s.id = due.id RETURNING s.id
      """, logger: logger
    ) {
      released += 1
    }
    try await client.query(
      """
      UPDATE holds SET status = 'expired', version = version + 1
      WHERE id IN (SELECT id FROM holds WHERE status = 'active' AND expires_at <= now() FOR UPDATE SKIP LOCKED)
      """, logger: logger)
    return released
  }

  /// How long the most overdue seat still held has been due, in seconds (0 if none is): the
  /// expiry worker's lag, measured before it releases (the partial index on `held_until`
  /// serves it).
  public func expiryLagSeconds() async throws -> Double {
    for try await seconds in try await client.query(
      """
      SELECT EXTRACT(EPOCH FROM (clock_timestamp() - min(held_until)))::float8 FROM seats
      WHERE status = 'held' AND held_until <= now()
      """, logger: logger
    ).decode(Double?.self) {
      return max(seconds ?? 0, 0)
    }
    return 0
  }

  /// Time until the earliest hold runs out, as the database sees it; `nil` with no holds.
  public func nextExpiry() async throws -> Duration? {
    for try await seconds in try await client.query(
      "SELECT EXTRACT(EPOCH FROM (min(held_until) - clock_timestamp()))::float8 FROM seats WHERE status = 'held'",
      logger: logger
    ).decode(Double?.self) {
      return seconds.map { .milliseconds(Int64(max($0, 0) * 1_000)) }
    }
    return nil
  }
}
