public import Foundation
public import FoyerCore
public import HTTPTypes
public import Logging
public import PostgresNIO
internal import Prometheus

/// Where an `Idempotency-Key` stands (draft-ietf-httpapi-idempotency-key-header).
enum IdempotencyStart: Sendable {
  /// First use: go ahead (the key is now in flight).
  case new
  /// The same request finished before: answer the same.
  case replay(status: Int, body: String)
  /// The same key is being processed right now.
  case inFlight
  /// The key was used with a different request.
  case mismatch
}

/// The answer to a checkout, stored for replays.
public struct CheckoutAnswer: Sendable, Hashable {
  public var status: HTTPResponse.Status
  public var body: String
  /// A successful checkout frees the shopper's slot at the gateway (`Foyer-Release: done`).
  public var releasesSlot: Bool { status == .created }
}

/// `POST /holds/{id}/checkout` (DESIGN §6): idempotency record → charge → fenced confirmation
/// in one transaction → answer, stored under the key. A hold lost while paying is refunded.
public final class Checkout: Sendable {
  let inventory: Inventory
  let payments: any PaymentProvider
  let tickets: TicketCodes
  let metrics: BoxOfficeMetrics
  let logger: Logger
  /// In-flight records older than this are taken over (their process died mid-checkout;
  /// the provider's idempotency makes retrying the charge safe).
  let staleAfterSeconds = 120

  public init(
    inventory: Inventory, payments: any PaymentProvider, tickets: TicketCodes, metrics: BoxOfficeMetrics,
    logger: Logger
  ) {
    self.inventory = inventory
    self.payments = payments
    self.tickets = tickets
    self.metrics = metrics
    self.logger = logger
  }

  /// Runs the checkout for `visitor`; every outcome the client should see is an answer (not
  /// a throw): those are what replays return.
  public func checkout(
    hold holdID: UUID, visitor: String, idempotencyKey key: String, body: [UInt8]
  ) async throws -> CheckoutAnswer {
    guard (1...255).contains(key.utf8.count), key.utf8.allSatisfy({ $0 >= 0x20 && $0 < 0x7f }) else {
      throw APIError(
        .badRequest, "invalid_idempotency_key", "Idempotency-Key must be 1-255 printable characters")
    }
    let card = try Self.card(from: body)
    let fingerprint = Self.fingerprint(hold: holdID, body: body)
    switch try await begin(visitor: visitor, key: key, fingerprint: fingerprint) {
    case .replay(let status, let body):
      metrics.checkouts(outcome: "replayed").increment()
      return CheckoutAnswer(status: HTTPResponse.Status(code: status), body: body)
    case .inFlight:
      throw APIError(
        .conflict, "request_in_progress", "a request with this Idempotency-Key is still being processed")
    case .mismatch:
      throw APIError(
        .unprocessableContent, "idempotency_key_reused",
        "this Idempotency-Key was used with a different request; use a new key")
    case .new:
      break
    }
    do {
      let answer = try await run(hold: holdID, visitor: visitor, key: key, card: card)
      return answer
    } catch {
      // Nothing final happened (an outage, a provider failure): the key may be retried.
      try? await abandon(visitor: visitor, key: key)
      throw error
    }
  }

  private func run(hold holdID: UUID, visitor: String, key: String, card: Card) async throws -> CheckoutAnswer
  {
    guard let hold = try await loadHold(holdID, visitor: visitor) else {
      return try await finish(visitor: visitor, key: key, APIError.notFound("hold"), outcome: "not_found")
    }
    switch hold.status {
    case "ordered":
      return try await finish(
        visitor: visitor, key: key,
        APIError(.conflict, "already_ordered", "this hold has been checked out already"),
        outcome: "already_ordered")
    case "active" where !hold.lapsed:
      break
    default:
      return try await finish(
        visitor: visitor, key: key, APIError(.gone, "hold_expired", "the hold has expired or was released"),
        outcome: "expired")
    }

    let chargeKey = "hold:\(holdID):key:\(key)"
    let outcome: ChargeOutcome
    do {
      outcome = try await payments.charge(amountCents: hold.total, card: card, idempotencyKey: chargeKey)
    } catch {
      // Unknown fate: void it (idempotent; a no-op if nothing was charged).
      try? await payments.refund(chargeKey: chargeKey, idempotencyKey: chargeKey + ":void")
      _ = try? await recordPayment(
        hold: holdID, key: chargeKey, kind: "void", outcome: "failed", amount: hold.total, card: card,
        reference: nil)
      metrics.checkouts(outcome: "payment_failed").increment()
      logger.warning("payment provider failed", metadata: ["hold": "\(holdID)", "error": "\(error)"])
      throw APIError(
        .badGateway, "payment_unavailable",
        "the payment provider did not answer; nothing was charged. Retrying with the same Idempotency-Key is safe"
      )
    }
    let reference: String
    switch outcome {
    case .declined(let reason):
      try await recordPayment(
        hold: holdID, key: chargeKey, kind: "charge", outcome: "declined", amount: hold.total, card: card,
        reference: nil)
      return try await finish(
        visitor: visitor, key: key,
        APIError(
          HTTPResponse.Status(code: 402, reasonPhrase: "Payment Required"), "payment_declined",
          "the card was declined (\(reason)); your seats stay held until the hold expires"),
        outcome: "declined")
    case .succeeded(let charged):
      reference = charged
    }
    let payment = try await recordPayment(
      hold: holdID, key: chargeKey, kind: "charge", outcome: "succeeded", amount: hold.total, card: card,
      reference: reference)

    // The fence: same hold, same version, not expired, every seat still ours; in the
    // transaction that sells the seats and stores the answer.
    let orderID = UUID()
    do {
      let order = try await confirm(
        hold: hold, holdID: holdID, visitor: visitor, key: key, orderID: orderID, payment: payment)
      metrics.checkouts(outcome: "succeeded").increment()
      return CheckoutAnswer(status: .created, body: try Self.encode(order))
    } catch is HoldLost {
      try await payments.refund(chargeKey: chargeKey, idempotencyKey: chargeKey + ":refund")
      try await recordPayment(
        hold: holdID, key: chargeKey + ":refund", kind: "refund", outcome: "succeeded", amount: hold.total,
        card: card,
        reference: reference)
      logger.notice("hold lost during payment: refunded", metadata: ["hold": "\(holdID)"])
      return try await finish(
        visitor: visitor, key: key,
        APIError(.gone, "hold_expired", "the hold expired during payment; the charge was refunded"),
        outcome: "expired_refunded")
    }
  }

  struct HoldLost: Error {}

  struct LoadedHold {
    var status: String
    var lapsed: Bool
    var total: Int
    var version: Int64
    var seatIds: [Int64]
    var eventID: UUID
  }

  private func loadHold(_ id: UUID, visitor: String) async throws -> LoadedHold? {
    for try await (status, lapsed, total, version, seats, event) in try await inventory.client.query(
      """
      SELECT status, expires_at <= now(), total_cents, version, seat_ids, event_id
      FROM holds WHERE id = \(id) AND visitor = \(visitor)
      """, logger: logger
    ).decode((String, Bool, Int, Int64, [Int64], UUID).self) {
      return LoadedHold(
        status: status, lapsed: lapsed, total: total, version: version, seatIds: seats, eventID: event)
    }
    return nil
  }

  private func confirm(
    hold: LoadedHold, holdID: UUID, visitor: String, key: String, orderID: UUID, payment: UUID
  ) async throws -> Order {
    let logger = self.logger
    let tickets = self.tickets
    return try await inventory.transaction { connection -> Order in
      var fenced = false
      for try await _ in try await connection.query(
        """
        UPDATE holds SET status = 'ordered', version = version + 1
        WHERE id = \(holdID) AND visitor = \(visitor) AND status = 'active' AND version = \(hold.version)
          AND expires_at > now()
        RETURNING id
        """, logger: logger
      ) {
        fenced = true
      }
      guard fenced else { throw HoldLost() }
      try await connection.query(
        "SELECT id FROM seats WHERE id = ANY(\(hold.seatIds)) ORDER BY id FOR UPDATE", logger: logger)
      var sold: [Ticket] = []
      for try await (seat, section, row, number) in try await connection.query(
        """
        UPDATE seats SET status = 'sold', held_until = NULL, version = version + 1
        WHERE id = ANY(\(hold.seatIds)) AND hold_id = \(holdID) AND status = 'held' AND held_until > now()
        RETURNING id, section, row_label, number
        """, logger: logger
      ).decode((Int64, String, String, Int).self) {
        let id = UUID()
        sold.append(
          Ticket(
            id: id, seatId: seat, section: section, row: row, number: number,
            code: tickets.code(ticket: id, seat: seat)))
      }
      guard sold.count == hold.seatIds.count else { throw HoldLost() }
      sold.sort { $0.seatOrder < $1.seatOrder }
      var createdAt = Date()
      for try await created in try await connection.query(
        """
        INSERT INTO orders (id, event_id, hold_id, visitor, total_cents)
        VALUES (\(orderID), \(hold.eventID), \(holdID), \(visitor), \(hold.total)) RETURNING created_at
        """, logger: logger
      ).decode(Date.self) {
        createdAt = created
      }
      try await connection.query(
        """
        INSERT INTO tickets (id, order_id, seat_id, code)
        SELECT id, \(orderID), seat, code
        FROM unnest(\(sold.map(\.id))::uuid[], \(sold.map(\.seatId))::bigint[], \(sold.map(\.code))::text[])
          AS t(id, seat, code)
        """, logger: logger)
      try await connection.query(
        "UPDATE payments SET order_id = \(orderID) WHERE id = \(payment)", logger: logger)
      let order = Order(
        id: orderID, eventId: hold.eventID, holdId: holdID, totalCents: hold.total, status: "confirmed",
        createdAt: createdAt, tickets: sold)
      let body = try Self.encode(order)
      try await connection.query(
        """
        UPDATE idempotency_keys SET state = 'done', response_status = 201, response_body = \(body)
        WHERE visitor = \(visitor) AND key = \(key)
        """, logger: logger)
      return order
    }
  }

  // MARK: Idempotency records

  private func begin(visitor: String, key: String, fingerprint: String) async throws -> IdempotencyStart {
    for try await _ in try await inventory.client.query(
      """
      INSERT INTO idempotency_keys (visitor, key, request_hash, state)
      VALUES (\(visitor), \(key), \(fingerprint), 'in_flight')
      ON CONFLICT (visitor, key) DO UPDATE SET created_at = now()
        WHERE idempotency_keys.state = 'in_flight' AND idempotency_keys.request_hash = EXCLUDED.request_hash
          AND idempotency_keys.created_at < now() - \(staleAfterSeconds) * interval '1 second'
      RETURNING key
      """, logger: logger
    ) {
      return .new
    }
    for try await (hash, state, status, body) in try await inventory.client.query(
      """
      SELECT request_hash, state, response_status, response_body FROM idempotency_keys
      WHERE visitor = \(visitor) AND key = \(key)
      """, logger: logger
    ).decode((String, String, Int?, String?).self) {
      if hash != fingerprint { return .mismatch }
      if state == "done", let status, let body { return .replay(status: status, body: body) }
      return .inFlight
    }
    // Deleted between the two statements (an abandoned attempt): try again.
    return try await begin(visitor: visitor, key: key, fingerprint: fingerprint)
  }

  /// Stores a final answer under the key and returns it.
  private func finish(
    visitor: String, key: String, _ error: APIError, outcome: String
  ) async throws -> CheckoutAnswer {
    metrics.checkouts(outcome: outcome).increment()
    try await inventory.client.query(
      """
      UPDATE idempotency_keys SET state = 'done', response_status = \(Int(error.status.code)),
             response_body = \(error.json)
      WHERE visitor = \(visitor) AND key = \(key)
      """, logger: logger)
    return CheckoutAnswer(status: error.status, body: error.json)
  }

  private func abandon(visitor: String, key: String) async throws {
    try await inventory.client.query(
      "DELETE FROM idempotency_keys WHERE visitor = \(visitor) AND key = \(key) AND state = 'in_flight'",
      logger: logger)
  }

  @discardableResult
  private func recordPayment(
    hold: UUID, key: String, kind: String, outcome: String, amount: Int, card: Card, reference: String?
  ) async throws -> UUID {
    let id = UUID()
    try await inventory.client.query(
      """
      INSERT INTO payments (id, hold_id, idempotency_key, kind, outcome, amount_cents, card_last4, provider_reference)
      VALUES (\(id), \(hold), \(key), \(kind), \(outcome), \(amount), \(card.last4), \(reference))
      """, logger: logger)
    return id
  }

  // MARK: Helpers

  /// `{"card": {"number": "4242 4242 4242 4242"}}`.
  static func card(from body: [UInt8]) throws(APIError) -> Card {
    guard let object = try? JSONSerialization.jsonObject(with: Data(body)) as? [String: Any] else {
      throw APIError(
        .badRequest, "invalid_json", "the body must be a JSON object like {\"card\":{\"number\":\"…\"}}")
    }
    guard let card = object["card"] as? [String: Any], let number = card["number"] as? String else {
      throw APIError(.badRequest, "invalid_card", "card.number is required")
    }
    let parsed = Card(number: number)
    guard parsed.isWellFormed else {
      throw APIError(.badRequest, "invalid_card", "card.number must be 12-19 digits")
    }
    return parsed
  }

  /// Identifies "the same request" for the key: the hold and the exact body.
  static func fingerprint(hold: UUID, body: [UInt8]) -> String {
    let mac = try! HMACSHA256(key: Array("foyer-boxoffice-idempotency-v1-fingerprint".utf8))
    return Base64URL.encode(mac.authenticate(Array(hold.uuidString.utf8) + [0] + body))
  }

  static func encode(_ order: Order) throws -> String {
    String(decoding: try JSONEncoder.api.encode(order), as: UTF8.self)
  }
}
