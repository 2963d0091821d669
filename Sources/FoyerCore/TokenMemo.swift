/// The last token that verified on one connection, and what it said.
///
/// A client sends the same cookie with every request of a keep-alive connection, and its
/// HMAC was the largest single cost of forwarding one (perf: 1.6% of the proxy loop, and
/// OpenSSL's two allocations per status poll). The same bytes verified for the same kind
/// and room by the same signer give the same answer; only a pass's expiry depends on the
/// clock, so that is checked every time. Only successes are kept: a rejected token is
/// verified again (and counted by the caller's slow path) each time it comes.
///
/// Not thread-safe, like the `TokenSigner` it verifies with: one per connection.
public struct TokenMemo {
  public let signer: TokenSigner
  private var token: [UInt8] = []
  private var kind = TokenKind.pass
  private var room = ""
  private var visitor = VisitorID(high: 0, low: 0)
  private var time: Int64 = 0

  public init(signer: TokenSigner) {
    self.signer = signer
  }

  /// `signer.verify(utf8:kind:room:now:)`, without the MAC when `input` is the token that
  /// verified last.
  public mutating func verify(
    utf8 input: UnsafeRawBufferPointer, kind: TokenKind, room: String, now: Int64
  ) -> TokenVerification {
    if !token.isEmpty, kind == self.kind, room == self.room,
      token.withUnsafeBytes({ constantTimeEquals($0, input) })
    {
      if kind == .pass && time <= now { return .rejected(.expired) }
      return .valid(visitor: visitor, time: time)
    }
    let verification = signer.verify(utf8: input, kind: kind, room: room, now: now)
    if case .valid(let visitor, let time) = verification {
      token.removeAll(keepingCapacity: true)
      token.append(contentsOf: input)
      self.kind = kind
      self.room = room
      self.visitor = visitor
      self.time = time
    }
    return verification
  }
}
