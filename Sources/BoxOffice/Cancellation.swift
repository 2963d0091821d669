public import Foundation
public import Logging
internal import HTTPTypes
internal import PostgresNIO
internal import Prometheus

/// `POST /orders/{id}/cancel` (#17 item 4): in one transaction the order is cancelled, its
/// tickets revoked, its seats put back on sale (the audit trigger records each) and a refund
/// row made; then the provider refunds the charge under one idempotency key per order. A
/// retry, a double click or two racing requests find the order cancelled and at most finish
/// the same refund: the money goes back once.
public final class Cancellation: Sendable {
  let inventory: Inventory
  let payments: any PaymentProvider
  let metrics: BoxOfficeMetrics
  /// Orders may be cancelled until this long before their event starts.
  let cutoff: Duration
  /// Seats that come back are offered to the event's waitlist in the same transaction.
  let waitlist: Waitlist?
  let logger: Logger

  public init(
    inventory: Inventory, payments: any PaymentProvider, metrics: BoxOfficeMetrics, cutoff: Duration,
    waitlist: Waitlist? = nil, logger: Logger
  ) {
    self.inventory = inventory
    self.payments = payments
    self.metrics = metrics
    self.cutoff = cutoff
    self.waitlist = waitlist
    self.logger = logger
  }

  /// The provider's idempotency key for an order's refund: one per order, ever.
  static func refundKey(order: UUID) -> String { "order:\(order):refund" }

  /// Cancels `visitor`'s order and refunds it; the order as it now stands. Throws `404` for
  /// no such order of theirs, `409` when it can no longer be cancelled.
  public func cancel(order id: UUID, visitor: String) async throws -> Order {
    let logger = self.logger
    let cutoffSeconds = Int(cutoff.components.seconds)
    let event = try await inventory.transaction { connection -> UUID? in
      var found: (String, UUID, Bool, Date)?
      for try await row in try await connection.query(
        """
        SELECT o.status, o.event_id, e.starts_at - \(cutoffSeconds) * interval '1 second' > now(),
               e.starts_at - \(cutoffSeconds) * interval '1 second'
        FROM orders o JOIN events e ON e.id = o.event_id
        WHERE o.id = \(id) AND o.visitor = \(visitor) FOR UPDATE OF o
        """, logger: logger
      ).decode((String, UUID, Bool, Date).self) {
        found = row
      }
      guard let (status, event, inTime, deadline) = found else { throw APIError.notFound("order") }
      // Cancelled already (a retry, a double click, a race lost on the row lock): nothing to do
      // but finish the refund below.
      guard status == "confirmed" else { return nil }
      guard inTime else {
        throw APIError(
          .conflict, "too_late",
          "orders for this event could be cancelled until \(deadline.formatted(.iso8601))")
      }
      // Locked before they are read: a scan at the door waits for this transaction and then
      // finds the ticket revoked, or has already used it and this cancellation stops here.
      for try await used in try await connection.query(
        "SELECT checked_in_at IS NOT NULL FROM tickets WHERE order_id = \(id) ORDER BY id FOR UPDATE",
        logger: logger
      ).decode(Bool.self) where used {
        throw APIError(.conflict, "checked_in", "a ticket of this order has been used at the door")
      }
      var charge: (UUID, Int)?
      for try await row in try await connection.query(
        """
        SELECT id, amount_cents FROM payments
        WHERE order_id = \(id) AND kind = 'charge' AND outcome = 'succeeded'
        """, logger: logger
      ).decode((UUID, Int).self) {
        charge = row
      }
      guard let (chargeID, amount) = charge else {
        throw CancellationError("order \(id) has no recorded charge")
      }
      try await connection.query(
        "UPDATE tickets SET live = false, revoked_at = now() WHERE order_id = \(id) AND live", logger: logger)
      try await connection.query(
        """
        UPDATE seats SET status = 'available', hold_id = NULL, held_until = NULL, version = version + 1
        WHERE id IN (SELECT seat_id FROM tickets WHERE order_id = \(id)) AND status = 'sold'
        """, logger: logger)
      try await connection.query(
        "UPDATE orders SET status = 'cancelled', cancelled_at = now() WHERE id = \(id)", logger: logger)
      try await connection.query(
        """
        INSERT INTO refunds (id, order_id, charge_id, amount_cents, status)
        VALUES (\(UUID()), \(id), \(chargeID), \(amount), 'pending')
        """, logger: logger)
      try await self.waitlist?.offer(event: event, on: connection)
      return event
    }
    if let event {
      metrics.cancellations.increment()
      logger.info("order cancelled", metadata: ["order": "\(id)", "event": "\(event)"])
    }
    try? await completeRefund(order: id)
    guard let order = try await inventory.order(id, visitor: visitor) else { throw APIError.notFound("order") }
    return order
  }

  /// Asks the provider to refund the order's charge and records the success. Safe to repeat
  /// (the provider sees the same key); a failure leaves the refund pending for `retryPending`.
  func completeRefund(order id: UUID) async throws {
    var pending: String?
    for try await chargeKey in try await inventory.client.query(
      """
      SELECT p.idempotency_key FROM refunds r JOIN payments p ON p.id = r.charge_id
      WHERE r.order_id = \(id) AND r.status = 'pending'
      """, logger: logger
    ).decode(String.self) {
      pending = chargeKey
    }
    guard let chargeKey = pending else { return }
    do {
      try await payments.refund(chargeKey: chargeKey, idempotencyKey: Self.refundKey(order: id))
    } catch {
      metrics.refunds(outcome: "retrying").increment()
      logger.warning("refund failed; will retry", metadata: ["order": "\(id)", "error": "\(error)"])
      throw error
    }
    try await inventory.client.query(
      """
      UPDATE refunds SET status = 'succeeded', completed_at = now()
      WHERE order_id = \(id) AND status = 'pending'
      """, logger: logger)
    metrics.refunds(outcome: "succeeded").increment()
  }

  /// Finishes refunds left pending (the provider failed, or the process stopped between the
  /// cancellation and the refund): the expiry worker calls this on each pass.
  public func retryPending(olderThan seconds: Int = 30) async throws {
    var orders: [UUID] = []
    for try await order in try await inventory.client.query(
      """
      SELECT order_id FROM refunds
      WHERE status = 'pending' AND requested_at < now() - \(seconds) * interval '1 second'
      ORDER BY requested_at LIMIT 100
      """, logger: logger
    ).decode(UUID.self) {
      orders.append(order)
    }
    for order in orders { try? await completeRefund(order: order) }
  }
}

struct CancellationError: Error, CustomStringConvertible {
  let description: String
  init(_ description: String) { self.description = description }
}
