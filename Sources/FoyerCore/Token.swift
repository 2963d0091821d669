/// What a token proves: a visitor's identity, or admission to a room.
public enum TokenKind: UInt8, Sendable, Hashable {
  /// `v`: proves the visitor id; `time` is when it was issued.
  case visitor = 0x76
  /// `p`: the pass; `time` is when it expires.
  case pass = 0x70
  /// `q`: the visitor's place in line; `time` is its queue score (order and last-seen
  /// second) as Redis held it when signed, from which polls are answered without Redis.
  case place = 0x71
}

/// A visitor's random 128-bit id; 22 characters of base64url on the wire.
public struct VisitorID: Hashable, Sendable, CustomStringConvertible {
  public static let encodedLength = 22

  /// The 16 bytes, big-endian halves; a value type, so verifying a token allocates nothing.
  public let high: UInt64
  public let low: UInt64

  public init(high: UInt64, low: UInt64) {
    self.high = high
    self.low = low
  }

  /// A fresh id from `RAND_bytes`.
  public static func random() -> VisitorID {
    var id = VisitorID(high: 0, low: 0)
    withUnsafeMutableBytes(of: &id) { secureRandomBytes($0) }
    return id
  }

  /// Parses the 22-character base64url form.
  public init?(_ text: some StringProtocol) {
    var bytes = Array(text.utf8)
    guard let id = bytes.withUnsafeMutableBufferPointer({ VisitorID(utf8: UnsafeBufferPointer($0)) }) else {
      return nil
    }
    self = id
  }

  /// The 22-character form within a larger text, read in place.
  public init?(substring: Substring) {
    var text = substring
    guard let id = text.withUTF8({ VisitorID(utf8: $0) }) else { return nil }
    self = id
  }

  init?(utf8: UnsafeBufferPointer<UInt8>) {
    guard utf8.count == Self.encodedLength else { return nil }
    let decoded = withUnsafeTemporaryAllocation(of: UInt8.self, capacity: 16) { raw -> VisitorID? in
      guard Base64URL.decode(utf8, into: raw) == 16 else { return nil }
      return VisitorID(bytes: UnsafeBufferPointer(raw))
    }
    guard let decoded else { return nil }
    self = decoded
  }

  /// The id whose 16 bytes (big-endian halves) start `bytes`.
  public init(bytes: UnsafeBufferPointer<UInt8>) {
    precondition(bytes.count >= 16)
    var high: UInt64 = 0
    var low: UInt64 = 0
    for index in 0..<8 {
      high = high << 8 | UInt64(bytes[index])
      low = low << 8 | UInt64(bytes[index + 8])
    }
    self.init(high: high, low: low)
  }

  /// The 22-character base64url form.
  public var description: String {
    String(unsafeUninitializedCapacity: Self.encodedLength) { output in
      encode(into: UnsafeMutableRawBufferPointer(output))
      return Self.encodedLength
    }
  }

  /// Writes the 22-character base64url form into `output` (which holds at least 22 bytes),
  /// straight from the two halves: a status poll writes it into its Redis commands this way,
  /// with no string in between.
  public func encode(into output: UnsafeMutableRawBufferPointer) {
    precondition(output.count >= Self.encodedLength)
    var halves = (high.bigEndian, low.bigEndian)
    withUnsafeBytes(of: &halves) { raw in
      _ = Base64URL.encode(
        raw.bindMemory(to: UInt8.self), into: output.bindMemory(to: UInt8.self))
    }
  }
}

/// The content of a visitor token or pass, before signing and after verification.
public struct Token: Hashable, Sendable {
  public var kind: TokenKind
  public var room: String
  public var visitor: VisitorID
  /// Unix seconds: issued-at for `.visitor`, expiry for `.pass`.
  public var time: Int64

  public init(kind: TokenKind, room: String, visitor: VisitorID, time: Int64) {
    precondition(Identifier.isValid(room), "room ids are [A-Za-z0-9_-]{1,64}")
    precondition(time >= 0, "token times are unix seconds")
    self.kind = kind
    self.room = room
    self.visitor = visitor
    self.time = time
  }
}

/// Why a token was treated as absent. Raw values are metric labels.
public enum TokenRejection: String, Sendable, Hashable, CaseIterable {
  case malformed
  case badSignature = "bad_signature"
  case unknownKey = "unknown_key"
  case expired
  case wrongRoom = "wrong_room"
  case wrongKind = "wrong_kind"
  /// Authentic and unexpired, but given back (leave, checkout done, an operator): decided by
  /// the gateway's revocation list, never by the signer.
  case revoked
}

/// The outcome of verifying a token.
public enum TokenVerification: Sendable, Hashable {
  /// Authentic, of the expected kind and room, and (for passes) not expired.
  case valid(visitor: VisitorID, time: Int64)
  case rejected(TokenRejection)

  public var visitor: VisitorID? {
    if case .valid(let visitor, _) = self { visitor } else { nil }
  }
}

/// Signs and verifies tokens `v1.<kind>.<room>.<visitor>.<time>.<kid>.<mac>` (DESIGN §4).
///
/// Holds one keyed OpenSSL context per key, so it is not thread-safe: create one per thread
/// or event loop. Creation is cheap; the `KeyRing` it is made from is `Sendable`.
public final class TokenSigner {
  /// Inputs longer than this are rejected before any parsing or MAC work.
  public static let maximumTokenLength = 512
  static let macLength = Base64URL.encodedLength(of: HMACSHA256.byteCount)
  /// Queue scores (a place's time) take 16 digits; seconds take 10.
  static let maximumTimeDigits = 16

  public let keyRing: KeyRing
  /// For proof-of-work checks (`Challenge`), on the same thread as the MACs.
  public let sha256: SHA256Digest
  private let macs: [HMACSHA256]
  private let keyIDs: [[UInt8]]

  public init(keyRing: KeyRing) throws(CryptoError) {
    self.keyRing = keyRing
    sha256 = try SHA256Digest()
    var macs: [HMACSHA256] = []
    for key in keyRing.keys { macs.append(try HMACSHA256(key: key.secret)) }
    self.macs = macs
    self.keyIDs = keyRing.keys.map { Array($0.id.utf8) }
  }

  /// The MAC of `message` under the ring's key `keyIndex`.
  func mac(keyIndex: Int, _ message: [UInt8]) -> [UInt8] {
    macs[keyIndex].authenticate(message)
  }

  /// Whether `mac` (base64url) is the MAC of `signed` (which ends with `.<keyID>`) under the
  /// ring's key `keyID`: for signed formats other than tokens (challenges).
  public func verify(signed: Substring, keyID: Substring, mac: Substring) -> Bool {
    guard let index = keyIDs.firstIndex(where: { $0.elementsEqual(keyID.utf8) }) else { return false }
    var signed = signed
    var mac = mac
    return signed.withUTF8 { input in
      mac.withUTF8 { isAuthentic(keyIndex: index, signed: UnsafeRawBufferPointer(input), mac: $0) }
    }
  }

  /// The one MAC check of every signed format: `mac` (base64url) decoded and compared in
  /// constant time with the MAC of `signed` under key `keyIndex`, without allocating.
  private func isAuthentic(keyIndex: Int, signed: UnsafeRawBufferPointer, mac: UnsafeBufferPointer<UInt8>) -> Bool {
    guard mac.count == Self.macLength else { return false }
    return withUnsafeTemporaryAllocation(of: UInt8.self, capacity: 2 * HMACSHA256.byteCount) { scratch in
      let expected = UnsafeMutableBufferPointer(rebasing: scratch[0..<HMACSHA256.byteCount])
      let presented = UnsafeMutableBufferPointer(rebasing: scratch[HMACSHA256.byteCount...])
      guard Base64URL.decode(mac, into: presented) == HMACSHA256.byteCount,
        macs[keyIndex].authenticate(signed, into: UnsafeMutableRawBufferPointer(expected))
      else { return false }
      return constantTimeEquals(UnsafeRawBufferPointer(expected), UnsafeRawBufferPointer(presented))
    }
  }

  /// Signs `token` with the first key of the ring.
  public func sign(_ token: Token) -> String {
    let kind = Character(Unicode.Scalar(token.kind.rawValue))
    let signed = "v1.\(kind).\(token.room).\(token.visitor).\(token.time).\(keyRing.signingKey.id)"
    var mac = [UInt8](repeating: 0, count: HMACSHA256.byteCount)
    var message = Array(signed.utf8)
    let ok = message.withUnsafeMutableBytes { input in
      mac.withUnsafeMutableBytes { macs[0].authenticate(UnsafeRawBufferPointer(input), into: $0) }
    }
    precondition(ok, "HMAC-SHA256 failed inside OpenSSL")
    return signed + "." + Base64URL.encode(mac)
  }

  /// Verifies `token` as a `kind` token for `room` at unix time `now`.
  public func verify(_ token: String, kind: TokenKind, room: String, now: Int64) -> TokenVerification {
    guard token.utf8.count <= Self.maximumTokenLength else { return .rejected(.malformed) }
    var token = token
    return token.withUTF8 { verify(utf8: UnsafeRawBufferPointer($0), kind: kind, room: room, now: now) }
  }

  /// Verifies a token given as UTF-8 bytes (a cookie value straight from a request buffer).
  public func verify(
    utf8 input: UnsafeRawBufferPointer, kind: TokenKind, room: String, now: Int64
  )
    -> TokenVerification
  {
    guard input.count <= Self.maximumTokenLength else { return .rejected(.malformed) }
    let bytes = input.bindMemory(to: UInt8.self)
    guard let fields = TokenFields(bytes) else { return .rejected(.malformed) }

    guard let keyIndex = keyIDs.firstIndex(where: { $0.elementsEqual(bytes[fields.keyID]) }) else {
      return .rejected(.unknownKey)
    }
    guard
      isAuthentic(
        keyIndex: keyIndex, signed: UnsafeRawBufferPointer(rebasing: input[..<fields.signedEnd]),
        mac: UnsafeBufferPointer(rebasing: bytes[fields.mac]))
    else { return .rejected(.badSignature) }

    guard bytes[fields.kind] == kind.rawValue else { return .rejected(.wrongKind) }
    let roomMatches =
      room.utf8.withContiguousStorageIfAvailable { $0.elementsEqual(bytes[fields.room]) }
      ?? room.utf8.elementsEqual(bytes[fields.room])
    guard roomMatches else { return .rejected(.wrongRoom) }
    guard let visitor = VisitorID(utf8: UnsafeBufferPointer(rebasing: bytes[fields.visitor])) else {
      return .rejected(.malformed)
    }
    if kind == .pass && fields.time <= now { return .rejected(.expired) }
    return .valid(visitor: visitor, time: fields.time)
  }
}

extension TokenSigner {
  /// The visitor a `kind` token for `room` names, read without its MAC: only to compare with
  /// the visitor of a token that did verify (a place and its visitor cookie).
  public static func namedVisitor(utf8 input: UnsafeRawBufferPointer, kind: TokenKind, room: String) -> VisitorID? {
    guard input.count <= maximumTokenLength else { return nil }
    let bytes = input.bindMemory(to: UInt8.self)
    guard let fields = TokenFields(bytes), bytes[fields.kind] == kind.rawValue,
      room.utf8.elementsEqual(bytes[fields.room])
    else { return nil }
    return VisitorID(utf8: UnsafeBufferPointer(rebasing: bytes[fields.visitor]))
  }
}

/// The byte ranges of a structurally valid token. Checking structure before the MAC keeps
/// garbage cheap; the MAC then vouches for the content.
struct TokenFields {
  var kind: Int
  var room: Range<Int>
  var visitor: Range<Int>
  var time: Int64
  var keyID: Range<Int>
  var mac: Range<Int>
  /// The end of the signed part (the index of the last dot).
  var signedEnd: Int

  init?(_ bytes: UnsafeBufferPointer<UInt8>) {
    // Exactly six dots; their positions live on the stack so parsing allocates nothing.
    let parsed = withUnsafeTemporaryAllocation(of: Int.self, capacity: 6) { dots -> TokenFields? in
      var count = 0
      for index in 0..<bytes.count where bytes[index] == UInt8(ascii: ".") {
        if count == 6 { return nil }
        dots[count] = index
        count += 1
      }
      guard count == 6 else { return nil }
      return TokenFields(bytes, dots: dots)
    }
    guard let parsed else { return nil }
    self = parsed
  }

  private init?(_ bytes: UnsafeBufferPointer<UInt8>, dots: UnsafeMutableBufferPointer<Int>) {
    let version = 0..<dots[0]
    let kind = (dots[0] + 1)..<dots[1]
    let room = (dots[1] + 1)..<dots[2]
    let visitor = (dots[2] + 1)..<dots[3]
    let time = (dots[3] + 1)..<dots[4]
    let keyID = (dots[4] + 1)..<dots[5]
    let mac = (dots[5] + 1)..<bytes.count

    guard version.count == 2, bytes[0] == UInt8(ascii: "v"), bytes[1] == UInt8(ascii: "1") else { return nil }
    guard kind.count == 1,
      bytes[kind.lowerBound] == TokenKind.visitor.rawValue
        || bytes[kind.lowerBound] == TokenKind.pass.rawValue || bytes[kind.lowerBound] == TokenKind.place.rawValue
    else { return nil }
    guard Self.isIdentifier(bytes[room]), Self.isIdentifier(bytes[keyID]) else { return nil }
    guard visitor.count == VisitorID.encodedLength, mac.count == TokenSigner.macLength else { return nil }

    let timeField = bytes[time]
    guard (1...TokenSigner.maximumTimeDigits).contains(timeField.count),
      timeField.first != UInt8(ascii: "0") || timeField.count == 1
    else { return nil }
    var seconds: Int64 = 0
    for byte in timeField {
      guard byte >= UInt8(ascii: "0") && byte <= UInt8(ascii: "9") else { return nil }
      seconds = seconds * 10 + Int64(byte - UInt8(ascii: "0"))
    }

    self.kind = kind.lowerBound
    self.room = room
    self.visitor = visitor
    self.time = seconds
    self.keyID = keyID
    self.mac = mac
    self.signedEnd = dots[5]
  }

  private static func isIdentifier(_ field: Slice<UnsafeBufferPointer<UInt8>>) -> Bool {
    (1...Identifier.maximumLength).contains(field.count) && field.allSatisfy(Identifier.isIdentifierByte)
  }
}
