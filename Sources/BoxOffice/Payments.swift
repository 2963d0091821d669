/// A card as the checkout form sends it. Only the number matters to the simulated provider.
public struct Card: Sendable, Hashable {
  public var number: String

  public init(number: String) {
    self.number = number.filter { !$0.isWhitespace && $0 != "-" }
  }

  public var last4: String { String(number.suffix(4)) }

  /// 12–19 digits.
  public var isWellFormed: Bool { (12...19).contains(number.count) && number.allSatisfy(\.isASCIIDigit) }

  /// The Luhn check digit is right.
  public var passesLuhn: Bool {
    var sum = 0
    for (index, character) in number.reversed().enumerated() {
      guard var digit = character.wholeNumberValue else { return false }
      if index % 2 == 1 {
        digit *= 2
        if digit > 9 { digit -= 9 }
      }
      sum += digit
    }
    return sum % 10 == 0
  }
}

extension Character {
  fileprivate var isASCIIDigit: Bool { isASCII && isNumber }
}

public enum ChargeOutcome: Sendable, Hashable {
  case succeeded(reference: String)
  case declined(reason: String)
}

/// The provider did not answer in time or failed: the charge's fate is unknown, so the caller
/// voids it (idempotently) before answering.
public struct PaymentProviderError: Error, Sendable, CustomStringConvertible {
  public let description: String
  public init(_ description: String) { self.description = description }
}

/// What checkout needs from a payment provider. Every call carries an idempotency key, and
/// a provider must honour it: the same key never charges twice, whatever the retries.
public protocol PaymentProvider: Sendable {
  func charge(amountCents: Int, card: Card, idempotencyKey: String) async throws -> ChargeOutcome
  /// Refunds (or voids) the charge made with `chargeKey`; a no-op if it never succeeded.
  func refund(chargeKey: String, idempotencyKey: String) async throws
}

/// The built-in provider for demos and tests, with the usual test cards:
///
/// | card number        | outcome                                       |
/// |--------------------|-----------------------------------------------|
/// | 4242 4242 4242 4242 | succeeds                                     |
/// | 4000 0000 0000 0002 | declined (`card_declined`)                   |
/// | 4000 0000 0000 9995 | declined (`insufficient_funds`)              |
/// | 4000 0000 0000 0077 | succeeds after `PaymentSettings.slow`        |
/// | 4000 0000 0000 0119 | never answers: times out after `timeout`     |
///
/// Any other number passing the Luhn check succeeds; one failing it is declined
/// (`invalid_number`). Charges are kept per idempotency key in memory (it stands in for the
/// provider's own ledger; BoxOffice records every charge and refund in `payments`).
public actor SimulatedPaymentProvider: PaymentProvider {
  public static let success = "4242424242424242"
  public static let declined = "4000000000000002"
  public static let insufficientFunds = "4000000000009995"
  public static let slow = "4000000000000077"
  public static let timeout = "4000000000000119"

  private let settings: PaymentSettings
  private var charges: [String: ChargeOutcome] = [:]
  private var refunded: Set<String> = []
  private var refundRequests: [String: Set<String>] = [:]
  private var refundsFail = false
  private var counter = 0

  public init(settings: PaymentSettings = PaymentSettings()) {
    self.settings = settings
  }

  public func charge(amountCents: Int, card: Card, idempotencyKey: String) async throws -> ChargeOutcome {
    if let known = charges[idempotencyKey] { return known }
    switch card.number {
    case Self.timeout:
      try await Task.sleep(for: settings.timeout)
      throw PaymentProviderError("the payment provider did not answer within \(settings.timeout)")
    case Self.slow:
      try await Task.sleep(for: settings.slow)
    default:
      break
    }
    // A concurrent call with the same key may have finished while this one slept.
    if let known = charges[idempotencyKey] { return known }
    let outcome: ChargeOutcome
    switch card.number {
    case Self.declined: outcome = .declined(reason: "card_declined")
    case Self.insufficientFunds: outcome = .declined(reason: "insufficient_funds")
    default:
      if card.isWellFormed && card.passesLuhn {
        counter += 1
        outcome = .succeeded(reference: "sim_ch_\(counter)")
      } else {
        outcome = .declined(reason: "invalid_number")
      }
    }
    charges[idempotencyKey] = outcome
    return outcome
  }

  public func refund(chargeKey: String, idempotencyKey: String) async throws {
    if refundsFail { throw PaymentProviderError("the payment provider refused the refund for now") }
    guard case .succeeded = charges[chargeKey] else { return }
    // Keyed like a real provider's ledger: each new key is a new refund request.
    refundRequests[chargeKey, default: []].insert(idempotencyKey)
    refunded.insert(chargeKey)
  }

  /// The idempotency keys under which `chargeKey` was asked to be refunded: one per refund
  /// BoxOffice meant (a provider would pay each new key out again).
  public func refundKeys(forCharge chargeKey: String) -> Set<String> { refundRequests[chargeKey] ?? [] }

  /// Makes refunds fail (the provider down) until turned off again.
  public func setRefundsFail(_ fail: Bool) { refundsFail = fail }
}
