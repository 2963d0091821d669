import BoxOffice
import Foundation
import FoyerCore
import FoyerTestSupport
import PostgresNIO
import Testing

/// Issue #17 item 4: cancelling an order refunds it exactly once and puts its seats back on
/// sale, against the real BoxOffice and PostgreSQL.
@Suite(.timeLimit(.minutes(3))) struct CancelTests {
  /// The provider's idempotency key of the order's charge.
  static func chargeKey(_ box: TestBoxOffice, order: String) async throws -> String {
    var keys: [String] = []
    for try await key in try await box.server.postgres.query(
      "SELECT idempotency_key FROM payments WHERE order_id = \(UUID(uuidString: order)!) AND kind = 'charge'"
    ).decode(String.self) {
      keys.append(key)
    }
    return try #require(keys.count == 1 ? keys.first : nil)
  }

  static func provider(_ box: TestBoxOffice) throws -> SimulatedPaymentProvider {
    try #require(box.server.payments as? SimulatedPaymentProvider)
  }

  /// Every seat's audit rows chain: each change starts where the one before ended.
  static func auditChainsHold(_ box: TestBoxOffice) async throws -> Bool {
    let broken = try await box.integers(
      """
      SELECT count(*) FROM (
        SELECT from_status, lag(to_status) OVER (PARTITION BY seat_id ORDER BY id) AS before FROM seat_audit
      ) chained WHERE from_status IS DISTINCT FROM before
      """)
    return broken == [0]
  }

  @Test func cancellingRefundsOnceAndPutsTheSeatsBackOnSale() async throws {
    let box = try await TestBoxOffice.start()
    defer { Task { await box.stop() } }
    let pass = box.pass()
    let order = try await box.sell(2, pass: pass)
    let id = try #require(order.json["id"] as? String)
    let seats = try #require(order.json["tickets"] as? [[String: Any]]).compactMap { ($0["seatId"] as? NSNumber)?.int64Value }
    #expect(seats.count == 2)

    let cancelled = try await box.request("POST", "/orders/\(id)/cancel", pass: pass)
    #expect(cancelled.status == 200)
    #expect(cancelled.json["status"] as? String == "cancelled")
    #expect(cancelled.json["cancelledAt"] is String)
    let refund = try #require(cancelled.json["refund"] as? [String: Any])
    #expect(refund["status"] as? String == "succeeded")
    #expect(refund["amountCents"] as? Int == 5_000)  // two Balcony seats
    let tickets = try #require(cancelled.json["tickets"] as? [[String: Any]])
    #expect(tickets.allSatisfy { $0["status"] as? String == "revoked" })
    // The seats are on sale again, and the audit trail says so.
    let list = seats.map(String.init).joined(separator: ",")
    #expect(try await box.integers("SELECT count(*) FROM seats WHERE id IN (\(list)) AND status = 'available'") == [2])
    #expect(try await Self.auditChainsHold(box))
    // The provider was asked once, under the order's one key.
    let chargeKey = try await Self.chargeKey(box, order: id)
    #expect(await (try Self.provider(box)).refundKeys(forCharge: chargeKey) == ["order:\(id.uppercased()):refund"])

    // Again: the same cancellation, no second refund.
    let again = try await box.request("POST", "/orders/\(id)/cancel", pass: pass)
    #expect(again.status == 200)
    #expect((again.json["refund"] as? [String: Any])?["id"] as? String == refund["id"] as? String)
    #expect(await (try Self.provider(box)).refundKeys(forCharge: chargeKey).count == 1)
    #expect(try await box.integers("SELECT count(*) FROM refunds") == [1])
    #expect(try await box.metric("boxoffice_orders_cancelled_total") == 1)
    // Orders are never deleted.
    await #expect(throws: PSQLError.self) {
      try await box.server.postgres.query(PostgresQuery(unsafeSQL: "DELETE FROM orders"))
    }
    // The freed seats sell again.
    let resold = try await box.sell(2, pass: box.pass())
    #expect(resold.status == 201)
  }

  @Test func cancelRacingItselfRefundsOnce() async throws {
    let box = try await TestBoxOffice.start()
    defer { Task { await box.stop() } }
    let pass = box.pass()
    let id = try #require(try await box.sell(3, pass: pass).json["id"] as? String)
    let statuses = try await withThrowingTaskGroup(of: Int.self) { group in
      for _ in 0..<30 { group.addTask { try await box.request("POST", "/orders/\(id)/cancel", pass: pass).status } }
      return try await group.reduce(into: [Int]()) { $0.append($1) }
    }
    #expect(statuses == Array(repeating: 200, count: 30))
    #expect(try await box.integers("SELECT count(*) FROM refunds") == [1])
    #expect(try await box.integers("SELECT count(*) FROM refunds WHERE status = 'succeeded'") == [1])
    let chargeKey = try await Self.chargeKey(box, order: id)
    #expect(await (try Self.provider(box)).refundKeys(forCharge: chargeKey).count == 1)
    #expect(try await box.metric("boxoffice_orders_cancelled_total") == 1)
    #expect(try await box.integers("SELECT count(*) FROM seats WHERE status = 'available'") == [60])
    #expect(try await Self.auditChainsHold(box))
  }

  @Test func cancelRacingACheckoutOfTheFreedSeatsNeverSellsTwice() async throws {
    let box = try await TestBoxOffice.start(holdAttemptsPerMinute: nil)
    defer { Task { await box.stop() } }
    for round in 0..<8 {
      let seller = box.pass()
      let order = try await box.sell(2, pass: seller)
      let id = try #require(order.json["id"] as? String, "round \(round): \(order.text)")
      let seats = try #require(order.json["tickets"] as? [[String: Any]]).compactMap { ($0["seatId"] as? NSNumber)?.int64Value }
      let buyer = box.pass()
      // The cancel and a buyer trying for exactly those seats until they are free, at once.
      async let cancel = box.request("POST", "/orders/\(id)/cancel", pass: seller)
      let bought: Bool = try await {
        for _ in 0..<200 {
          let hold = try await box.request(
            "POST", "/events/\(box.event.id)/holds", pass: buyer,
            body: #"{"seatIds":[\#(seats.map(String.init).joined(separator: ","))]}"#)
          guard hold.status == 201, let holdID = hold.json["id"] as? String else { continue }
          let paid = try await box.request(
            "POST", "/holds/\(holdID)/checkout", pass: buyer, headers: ["Idempotency-Key": UUID().uuidString],
            body: CheckoutTests.good)
          return paid.status == 201
        }
        return false
      }()
      #expect(try await cancel.status == 200)
      #expect(bought, "round \(round): the freed seats never sold")
    }
    // Each sold seat has exactly one live ticket, each available one none; every audit chain
    // runs unbroken; every cancelled order has one refund.
    #expect(
      try await box.integers(
        """
        SELECT count(*) FROM seats s
        WHERE (SELECT count(*) FROM tickets t WHERE t.seat_id = s.id AND t.live) <> (CASE WHEN s.status = 'sold' THEN 1 ELSE 0 END)
        """) == [0])
    #expect(try await box.integers("SELECT count(*) FROM orders WHERE status = 'cancelled'") == [8])
    #expect(try await box.integers("SELECT count(*) FROM refunds WHERE status = 'succeeded'") == [8])
    #expect(try await box.integers("SELECT count(*) FROM tickets WHERE live") == [16])
    #expect(try await Self.auditChainsHold(box))
  }

  @Test func cancelIsRefusedWhenItCannotBeDone() async throws {
    // The event starts in 30 minutes; orders may be cancelled until an hour before.
    let box = try await TestBoxOffice.start(cancelCutoff: .seconds(3_600), startsIn: 1_800)
    defer { Task { await box.stop() } }
    let pass = box.pass()
    let id = try #require(try await box.sell(1, pass: pass).json["id"] as? String)
    let late = try await box.request("POST", "/orders/\(id)/cancel", pass: pass)
    #expect(late.status == 409 && late.json["error"] as? String == "too_late")
    #expect(try await box.request("POST", "/orders/\(id)/cancel", pass: box.pass()).status == 404)
    #expect(try await box.request("POST", "/orders/\(id)/cancel").status == 401)
    #expect(try await box.request("POST", "/orders/nope/cancel", pass: pass).status == 400)
    #expect(try await box.request("GET", "/orders/\(id)/cancel", pass: pass).status == 405)
    #expect(try await box.integers("SELECT count(*) FROM orders WHERE status = 'confirmed'") == [1])
    #expect(try await box.integers("SELECT count(*) FROM refunds") == [0])
  }

  @Test func aRefundTheProviderRefusesIsFinishedLater() async throws {
    let box = try await TestBoxOffice.start()
    defer { Task { await box.stop() } }
    let provider = try Self.provider(box)
    let pass = box.pass()
    let id = try #require(try await box.sell(1, pass: pass).json["id"] as? String)
    await provider.setRefundsFail(true)
    let cancelled = try await box.request("POST", "/orders/\(id)/cancel", pass: pass)
    // Cancelled for good (the seat is back on sale); the money is owed, and recorded so.
    #expect(cancelled.status == 200 && cancelled.json["status"] as? String == "cancelled")
    #expect((cancelled.json["refund"] as? [String: Any])?["status"] as? String == "pending")
    let chargeKey = try await Self.chargeKey(box, order: id)
    #expect(await provider.refundKeys(forCharge: chargeKey).isEmpty)
    try await box.server.cancellation.retryPending(olderThan: 0)
    #expect(try await box.integers("SELECT count(*) FROM refunds WHERE status = 'pending'") == [1])
    await provider.setRefundsFail(false)
    try await box.server.cancellation.retryPending(olderThan: 0)
    #expect(try await box.integers("SELECT count(*) FROM refunds WHERE status = 'succeeded'") == [1])
    #expect(await provider.refundKeys(forCharge: chargeKey).count == 1)
    #expect(try await box.metric(#"boxoffice_refunds_total{outcome="retrying"}"#) == 2)
  }
}
