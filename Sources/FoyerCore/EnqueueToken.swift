/// The operator's site's word that an account may take a place in an invite-only room (#16
/// item 5): `e1.<room>.<account>.<expiry>.<mac>`, where `account` is the site's hash of the
/// account id (base64url or hex, 16–128 characters: the gateway never sees the id itself),
/// `expiry` unix seconds and `mac` the base64url HMAC-SHA256, under the room's enqueue key,
/// of everything before `.<mac>`.
///
/// The account's visitor id is derived from the account and the room key, so every gateway
/// with the key gives the same account the same visitor id, and so the same place in line,
/// from any browser or address.
public struct EnqueueToken: Sendable, Hashable {
  public var room: String
  public var account: String
  public var expiry: Int64

  public init(room: String, account: String, expiry: Int64) {
    self.room = room
    self.account = account
    self.expiry = expiry
  }

  public enum Rejection: String, Sendable, Hashable, Error {
    case malformed, badSignature = "bad_signature", expired, wrongRoom = "wrong_room"
  }

  /// An account hash as the token carries it.
  public static func isValidAccount(_ text: some StringProtocol) -> Bool {
    (16...128).contains(text.utf8.count)
      && text.utf8.allSatisfy { byte in
        switch byte {
        case UInt8(ascii: "A")...UInt8(ascii: "Z"), UInt8(ascii: "a")...UInt8(ascii: "z"),
          UInt8(ascii: "0")...UInt8(ascii: "9"), UInt8(ascii: "-"), UInt8(ascii: "_"):
          true
        default: false
        }
      }
  }

  static func payload(room: String, account: some StringProtocol, expiry: Int64) -> String {
    "e1.\(room).\(account).\(expiry)"
  }

  /// The token for the operator's site (and `foyer enqueue-token`).
  public func signed(key: [UInt8]) throws(CryptoError) -> String {
    precondition(Identifier.isValid(room) && Self.isValidAccount(account) && expiry >= 0)
    let payload = Self.payload(room: room, account: account, expiry: expiry)
    return payload + "." + Base64URL.encode(try HMACSHA256(key: key).authenticate(Array(payload.utf8)))
  }

  /// The token's account, if `text` is a token for `room` signed with `key` that has not
  /// expired at `now` (unix seconds). The MAC is compared in constant time.
  public static func verify(
    _ text: some StringProtocol, room: String, key: HMACSHA256, now: Int64
  ) -> Result<EnqueueToken, Rejection> {
    let text = String(text)
    // On the bytes, as `Challenge` does: a Character split walks grapheme clusters.
    let parts = text.utf8.split(separator: UInt8(ascii: "."), omittingEmptySubsequences: false).map { Substring($0) }
    guard text.utf8.count <= 512, parts.count == 5, parts[0] == "e1", Identifier.isValid(parts[1]),
      isValidAccount(parts[2]), parts[3].utf8.allSatisfy({ $0 >= 0x30 && $0 <= 0x39 }),
      let expiry = Int64(parts[3]), let mac = Base64URL.decode(parts[4]), mac.count == HMACSHA256.byteCount
    else { return .failure(.malformed) }
    let signedPart = payload(room: String(parts[1]), account: parts[2], expiry: expiry)
    // The canonical form only: a leading zero in the expiry would sign the same number twice.
    guard text.utf8.count == signedPart.utf8.count + 1 + parts[4].utf8.count else { return .failure(.malformed) }
    guard constantTimeEquals(key.authenticate(Array(signedPart.utf8)), mac) else { return .failure(.badSignature) }
    guard parts[1] == room else { return .failure(.wrongRoom) }
    guard expiry > now else { return .failure(.expired) }
    return .success(EnqueueToken(room: room, account: String(parts[2]), expiry: expiry))
  }

  /// The account's visitor id in this room: the first 16 bytes of the HMAC of
  /// `visitor.<room>.<account>` under the room key (not guessable without the key).
  public func visitor(key: HMACSHA256) -> VisitorID {
    key.authenticate(Array("visitor.\(room).\(account)".utf8)).withUnsafeBufferPointer { VisitorID(bytes: $0) }
  }
}
