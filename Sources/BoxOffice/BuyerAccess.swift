public import FoyerCore

/// A buyer's own credential for what outlives the on-sale (#17 item 6): orders, tickets,
/// cancelling, the waitlist. The gateway takes the pass back at checkout, so these paths live
/// outside the room and BoxOffice checks the buyer itself: `b1.<visitor>.<expiry>.<kid>.<mac>`,
/// signed with the key ring like every other token (its own prefix, so it is never a pass),
/// handed out as the `boxoffice_buyer` cookie and the `BoxOffice-Buyer` header of a checkout
/// or waitlist answer, and accepted from either.
public struct BuyerAccess: Sendable {
  public static let cookieName = "boxoffice_buyer"
  static let prefix = "b1"

  /// How long a credential lasts from when it is handed out.
  public let lifetime: Duration
  /// `Secure` on the cookie (behind TLS).
  public let secureCookie: Bool

  public init(lifetime: Duration, secureCookie: Bool) {
    self.lifetime = lifetime
    self.secureCookie = secureCookie
  }

  public func token(visitor: String, now: Int64, signer: TokenSigner) -> String {
    signer.sign(message: "\(Self.prefix).\(visitor).\(now + lifetime.components.seconds)")
  }

  /// The visitor a credential stands for, if it is authentic and unexpired.
  public static func visitor(of token: String, now: Int64, signer: TokenSigner) -> String? {
    guard token.utf8.count <= TokenSigner.maximumTokenLength else { return nil }
    let parts = token.utf8.split(separator: UInt8(ascii: "."), omittingEmptySubsequences: false).map {
      Substring($0)
    }
    guard parts.count == 5, parts[0] == Self.prefix, VisitorID(substring: parts[1]) != nil,
      parts[2].first != "0", parts[2].first != "+", let expiry = Int64(parts[2]),
      signer.verify(signed: token[..<parts[3].endIndex], keyID: parts[3], mac: parts[4]), expiry > now
    else { return nil }
    return String(parts[1])
  }

  /// The `Set-Cookie` value for `token`: the whole site (orders, tickets and the waitlist are
  /// each on their own path), script-proof, and never sent by another site's form.
  public func cookie(_ token: String) -> String {
    "\(Self.cookieName)=\(token); Path=/; Max-Age=\(lifetime.components.seconds); HttpOnly; SameSite=Lax"
      + (secureCookie ? "; Secure" : "")
  }
}
