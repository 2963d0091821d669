public import Foundation
public import PostgresNIO

/// What a scan at the door finds (#17 item 3).
public enum CheckInOutcome: Sendable, Hashable {
  /// First scan: let them in.
  case admitted(ScannedTicket)
  /// Scanned before, at `gate`, at `at`.
  case alreadyUsed(ScannedTicket, at: Date, gate: String)
  /// The order was cancelled.
  case revoked(ScannedTicket)
  /// The ticket is for another event than the gate's.
  case wrongEvent(ScannedTicket)
  /// Signed by us but not in this database (another deployment's, or a restored backup's).
  case unknown
}

/// The seat a scanned ticket is for, as the door shows it.
public struct ScannedTicket: Sendable, Hashable, Codable {
  public var ticketId: UUID
  public var eventId: UUID
  public var event: String
  public var section: String
  public var row: String
  public var number: Int
}

extension Inventory {
  /// Checks in the ticket `ticket` for `seat` (both from a code whose signature is already
  /// verified) at `gate`. The first scan wins: the update's condition is re-checked on the
  /// row after any concurrent scan commits, so two gates at the same instant get one
  /// `admitted` between them.
  public func checkIn(ticket: UUID, seat: Int64, gate: String, event expected: UUID?) async throws
    -> CheckInOutcome
  {
    var found: (ScannedTicket, Bool, Date?, String?)?
    for try await (event, name, section, row, number, live, usedAt, usedGate) in try await client.query(
      """
      SELECT e.id, e.name, s.section, s.row_label, s.number, t.live, t.checked_in_at, t.checked_in_gate
      FROM tickets t JOIN seats s ON s.id = t.seat_id JOIN events e ON e.id = s.event_id
      WHERE t.id = \(ticket) AND t.seat_id = \(seat)
      """, logger: logger
    ).decode((UUID, String, String, String, Int, Bool, Date?, String?).self) {
      found = (
        ScannedTicket(ticketId: ticket, eventId: event, event: name, section: section, row: row, number: number),
        live, usedAt, usedGate
      )
    }
    guard let (scanned, live, usedAt, usedGate) = found else { return .unknown }
    if let expected, expected != scanned.eventId { return .wrongEvent(scanned) }
    if !live { return .revoked(scanned) }
    if let usedAt, let usedGate { return .alreadyUsed(scanned, at: usedAt, gate: usedGate) }
    for try await _ in try await client.query(
      """
      UPDATE tickets SET checked_in_at = clock_timestamp(), checked_in_gate = \(gate)
      WHERE id = \(ticket) AND live AND checked_in_at IS NULL RETURNING id
      """, logger: logger
    ) {
      return .admitted(scanned)
    }
    // Another gate (or a cancellation) got there between the read and the update.
    for try await (live, usedAt, usedGate) in try await client.query(
      "SELECT live, checked_in_at, checked_in_gate FROM tickets WHERE id = \(ticket)", logger: logger
    ).decode((Bool, Date?, String?).self) {
      if let usedAt, let usedGate { return .alreadyUsed(scanned, at: usedAt, gate: usedGate) }
      if !live { return .revoked(scanned) }
    }
    return .unknown
  }
}
