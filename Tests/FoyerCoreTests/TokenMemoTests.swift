import FoyerCore
import Testing

/// `TokenMemo` answers exactly as `TokenSigner.verify` would, whatever it saw before.
@Suite struct TokenMemoTests {
  static let now: Int64 = 1_800_000_000
  let signer = try! TokenSigner(
    keyRing: try! KeyRing([try! SigningKey(id: "k2", secret: Array(repeating: 0x42, count: 32))]))

  func verify(
    _ memo: inout TokenMemo, _ token: String, kind: TokenKind = .pass, room: String = "r", now: Int64 = now
  ) -> TokenVerification {
    Array(token.utf8).withUnsafeBytes { memo.verify(utf8: $0, kind: kind, room: room, now: now) }
  }

  @Test func theSameTokenAgainGivesTheSameAnswerAndItsExpiryStillCounts() {
    var memo = TokenMemo(signer: signer)
    let visitor = VisitorID.random()
    let pass = signer.sign(Token(kind: .pass, room: "r", visitor: visitor, time: Self.now + 10))
    #expect(verify(&memo, pass) == .valid(visitor: visitor, time: Self.now + 10))
    #expect(verify(&memo, pass) == .valid(visitor: visitor, time: Self.now + 10))
    #expect(verify(&memo, pass, now: Self.now + 9) == .valid(visitor: visitor, time: Self.now + 10))
    #expect(verify(&memo, pass, now: Self.now + 10) == .rejected(.expired))
    // The kept token is only valid for the room and kind it was verified for.
    #expect(verify(&memo, pass, room: "other") == .rejected(.wrongRoom))
    #expect(verify(&memo, pass, kind: .visitor) == .rejected(.wrongKind))
    #expect(verify(&memo, pass) == .valid(visitor: visitor, time: Self.now + 10))
  }

  @Test func anyChangedByteAfterAValidTokenIsRejected() {
    var memo = TokenMemo(signer: signer)
    let pass = signer.sign(Token(kind: .pass, room: "r", visitor: .random(), time: Self.now + 60))
    let original = Array(pass.utf8)
    for position in original.indices {
      #expect(verify(&memo, pass).visitor != nil)
      var changed = original
      changed[position] ^= 0x01
      let result = changed.withUnsafeBytes { memo.verify(utf8: $0, kind: .pass, room: "r", now: Self.now) }
      #expect(result.visitor == nil, "byte \(position) changed was accepted")
      // Same length with one byte less, and a prefix: not the kept token either.
      let prefix = original.dropLast().withUnsafeBytes {
        memo.verify(utf8: $0, kind: .pass, room: "r", now: Self.now)
      }
      #expect(prefix.visitor == nil)
    }
  }

  @Test func aNewValidTokenReplacesTheKeptOneAndRejectionsAreNotKept() {
    var memo = TokenMemo(signer: signer)
    let first = VisitorID.random()
    let second = VisitorID.random()
    let a = signer.sign(Token(kind: .visitor, room: "r", visitor: first, time: Self.now))
    let b = signer.sign(Token(kind: .visitor, room: "r", visitor: second, time: Self.now))
    // One character inside the MAC changed (the last one carries padding bits).
    var bytes = Array(b.utf8)
    bytes[bytes.count - 10] =
      bytes[bytes.count - 10] == UInt8(ascii: "A") ? UInt8(ascii: "B") : UInt8(ascii: "A")
    let forged = String(decoding: bytes, as: UTF8.self)
    #expect(verify(&memo, a, kind: .visitor).visitor == first)
    #expect(verify(&memo, forged, kind: .visitor) == .rejected(.badSignature))
    #expect(verify(&memo, forged, kind: .visitor) == .rejected(.badSignature))
    #expect(verify(&memo, b, kind: .visitor).visitor == second)
    #expect(verify(&memo, a, kind: .visitor).visitor == first)
  }
}
