internal import FoyerCore

/// The pass rule, in one place for both parsers: the signature, kind, room and expiry (through
/// the connection's memo, so a keep-alive client's repeated pass skips the HMAC), then the
/// revocation list. One per connection handler, like the memo.
struct PassCheck {
  private var memo: TokenMemo
  private let revocations: RevocationList

  init(signer: TokenSigner, revocations: RevocationList) {
    memo = TokenMemo(signer: signer)
    self.revocations = revocations
  }

  enum Outcome {
    case valid(visitor: VisitorID, expiry: Int64)
    /// Genuine, but given back (left, checkout done, or taken by an operator).
    case revoked
    case rejected(TokenRejection)
  }

  mutating func check(utf8 token: UnsafeRawBufferPointer, room: String, now: Int64) -> Outcome {
    switch memo.verify(utf8: token, kind: .pass, room: room, now: now) {
    case .valid(let visitor, let expiry):
      revocations.isRevoked(room: room, visitor: visitor, passExpiry: expiry)
        ? .revoked : .valid(visitor: visitor, expiry: expiry)
    case .rejected(let reason):
      .rejected(reason)
    }
  }
}
