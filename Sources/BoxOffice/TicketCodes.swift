internal import Crypto
public import Foundation
public import FoyerCore

/// Ticket codes signed with Ed25519: `TK2.<ticket>.<seat>.<kid>.<signature>` (the ticket's
/// UUID and the signature in base64url), about 130 characters, a small QR symbol. A gate
/// scanner checks one with the published public keys alone (`GET /tickets/keys`,
/// `boxoffice verify-ticket`): no secret, no database.
///
/// The signing key is derived from the key ring's secret (an HMAC of it, so it is a key of its
/// own: a ticket code is never a pass), so it needs no configuration of its own and rotates
/// with the ring; tickets signed under an older key still verify while it is in the ring.
public final class TicketCodes: Sendable {
  let keyID: String
  private let signingKey: Curve25519.Signing.PrivateKey
  /// kid → raw 32-byte public key, for every key of the ring.
  public let publicKeys: [String: [UInt8]]
  private let verifier: TicketVerifier

  public init(keyRing: KeyRing) {
    keyID = keyRing.signingKey.id
    signingKey = Self.derive(keyRing.signingKey.secret)
    var keys: [String: [UInt8]] = [:]
    for key in keyRing.keys { keys[key.id] = Array(Self.derive(key.secret).publicKey.rawRepresentation) }
    publicKeys = keys
    verifier = try! TicketVerifier(publicKeys: keys)
  }

  private static func derive(_ secret: [UInt8]) -> Curve25519.Signing.PrivateKey {
    let seed = try! HMACSHA256(key: secret).authenticate(Array("foyer-ticket-ed25519-v2".utf8))
    return try! Curve25519.Signing.PrivateKey(rawRepresentation: seed)
  }

  public func code(ticket: UUID, seat: Int64) -> String {
    let text = TicketVerifier.signedPart(ticket: ticket, seat: seat, keyID: keyID)
    let signature = try! signingKey.signature(for: Array(text.utf8))
    return text + "." + Base64URL.encode(Array(signature))
  }

  /// The ticket and seat of a code this ring signed, if it is one.
  public func verify(_ code: String) -> TicketVerifier.Ticket? { verifier.verify(code) }

  /// A code as the QR symbol `GET /orders/{id}/tickets/{ticket}/qr.svg` serves.
  public static func qrSVG(_ code: String) -> String? { TicketQR.svg(code) }

  /// kid → base64url public key, as `GET /tickets/keys` serves them.
  public var publishedKeys: [String: String] {
    publicKeys.mapValues { Base64URL.encode($0) }
  }
}

/// `GET /tickets/keys`: what a scanner needs to check codes offline.
struct TicketKeys: Encodable {
  var keys: [String: String]
  var algorithm = "Ed25519"
  var format = "TK2.<ticket uuid, base64url>.<seat id>.<kid>.<Ed25519 signature of everything before it, base64url>"
}

/// Checks ticket codes against public keys only: what a scanner at the door runs.
public struct TicketVerifier: Sendable {
  public struct Ticket: Sendable, Equatable {
    public var ticket: UUID
    public var seat: Int64
    public var keyID: String
  }

  private let keys: [String: Curve25519.Signing.PublicKey]

  /// `publicKeys`: kid → raw 32-byte Ed25519 public key.
  public init(publicKeys: [String: [UInt8]]) throws {
    keys = try publicKeys.mapValues { try Curve25519.Signing.PublicKey(rawRepresentation: $0) }
  }

  /// Reads `{"keys": {kid: base64url}}` as `GET /tickets/keys` serves it.
  public init(json: Data) throws {
    struct Published: Decodable { var keys: [String: String] }
    let published = try JSONDecoder().decode(Published.self, from: json)
    var raw: [String: [UInt8]] = [:]
    for (kid, text) in published.keys {
      guard let bytes = Base64URL.decode(text), bytes.count == 32 else {
        throw TicketKeysError(description: "key '\(kid)' is not a base64url Ed25519 public key")
      }
      raw[kid] = bytes
    }
    try self.init(publicKeys: raw)
  }

  static func signedPart(ticket: UUID, seat: Int64, keyID: String) -> String {
    "TK2.\(Base64URL.encode(withUnsafeBytes(of: ticket.uuid) { Array($0) })).\(seat).\(keyID)"
  }

  public func verify(_ code: String) -> Ticket? {
    guard code.utf8.count <= 256 else { return nil }
    let fields = code.split(separator: ".", omittingEmptySubsequences: false)
    guard fields.count == 5, fields[0] == "TK2", let id = Base64URL.decode(fields[1]), id.count == 16,
      let seat = Int64(fields[2]), seat > 0, let key = keys[String(fields[3])],
      let signature = Base64URL.decode(fields[4]), signature.count == 64
    else { return nil }
    // The signature covers the code's own bytes before it: written any other way (a seat
    // `007`), the code is not the one signed.
    guard key.isValidSignature(signature, for: Array(code.utf8.dropLast(fields[4].utf8.count + 1))) else {
      return nil
    }
    return Ticket(
      ticket: id.withUnsafeBytes { UUID(uuid: $0.load(as: uuid_t.self)) }, seat: seat, keyID: String(fields[3]))
  }
}

public struct TicketKeysError: Error, CustomStringConvertible {
  public let description: String
}
