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
    var found: (UUID, UUID, Int, String, Date)?
    for try await row in try await client.query(
      "SELECT event_id, hold_id, total_cents, status, created_at FROM orders WHERE id = \(id) AND visitor = \(visitor)",
      logger: logger
    ).decode((UUID, UUID, Int, String, Date).self) {
      found = row
    }
    guard let (event, hold, total, status, created) = found else { return nil }
    var tickets: [Ticket] = []
    for try await (ticket, seat, section, row, number, code) in try await client.query(
      """
      SELECT t.id, s.id, s.section, s.row_label, s.number, t.code
      FROM tickets t JOIN seats s ON s.id = t.seat_id WHERE t.order_id = \(id)
      ORDER BY s.section, length(s.row_label), s.row_label, s.number
      """, logger: logger
    ).decode((UUID, Int64, String, String, Int, String).self) {
      tickets.append(Ticket(id: ticket, seatId: seat, section: section, row: row, number: number, code: code))
    }
    return Order(
      id: id, eventId: event, holdId: hold, totalCents: total, status: status, createdAt: created,
      tickets: tickets)
  }
}
