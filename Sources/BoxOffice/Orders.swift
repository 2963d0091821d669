public import Foundation
public import PostgresNIO

extension Inventory {
  /// The visitor's orders, newest first.
  public func orders(visitor: String) async throws -> [Order] {
    var ids: [UUID] = []
    for try await id in try await client.query(
      "SELECT id FROM orders WHERE visitor = \(visitor) ORDER BY created_at DESC LIMIT 100", logger: logger
    ).decode(UUID.self) {
      ids.append(id)
    }
    var orders: [Order] = []
    for id in ids {
      if let order = try await order(id, visitor: visitor) { orders.append(order) }
    }
    return orders
  }

  /// The visitor's own order (another visitor's is "not found").
  public func order(_ id: UUID, visitor: String) async throws -> Order? {
    var found: (UUID, UUID, Int, String, Date, Date?)?
    for try await row in try await client.query(
      """
      SELECT event_id, hold_id, total_cents, status, created_at, cancelled_at
      FROM orders WHERE id = \(id) AND visitor = \(visitor)
      """,
      logger: logger
    ).decode((UUID, UUID, Int, String, Date, Date?).self) {
      found = row
    }
    guard let (event, hold, total, status, created, cancelled) = found else { return nil }
    var tickets: [Ticket] = []
    for try await (ticket, seat, section, row, number, code, live, checkedIn) in try await client.query(
      """
      SELECT t.id, s.id, s.section, s.row_label, s.number, t.code, t.live, t.checked_in_at
      FROM tickets t JOIN seats s ON s.id = t.seat_id WHERE t.order_id = \(id)
      ORDER BY s.section, length(s.row_label), s.row_label, s.number
      """, logger: logger
    ).decode((UUID, Int64, String, String, Int, String, Bool, Date?).self) {
      tickets.append(
        Ticket(
          id: ticket, seatId: seat, section: section, row: row, number: number, code: code,
          status: !live ? "revoked" : checkedIn != nil ? "used" : "valid", checkedInAt: checkedIn))
    }
    var refund: Refund?
    for try await (refundID, amount, refundStatus, requested, completed) in try await client.query(
      "SELECT id, amount_cents, status, requested_at, completed_at FROM refunds WHERE order_id = \(id)",
      logger: logger
    ).decode((UUID, Int, String, Date, Date?).self) {
      refund = Refund(
        id: refundID, amountCents: amount, status: refundStatus, requestedAt: requested, completedAt: completed)
    }
    return Order(
      id: id, eventId: event, holdId: hold, totalCents: total, status: status, createdAt: created,
      tickets: tickets, cancelledAt: cancelled, refund: refund)
  }
}
