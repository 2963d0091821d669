internal import FoyerCore
internal import HTTPWire
internal import NIOHTTP1

/// Cookie handling for the gateway's own cookies (DESIGN §4).
enum Cookies {
  static func visitorName(room: String) -> String { visitorPrefix + room }
  static func passName(room: String) -> String { passPrefix + room }
  static func placeName(room: String) -> String { placePrefix + room }

  static let passPrefix = "foyer_p_"
  static let visitorPrefix = "foyer_v_"
  static let placePrefix = "foyer_q_"

  /// The value of the gateway's cookie `prefix + room` in the request's `Cookie` headers.
  ///
  /// Matched on UTF-8 bytes without building the name: this runs twice on every queue poll,
  /// and `Character`-wise `Substring` scanning showed up in profiles of that path.
  static func value(prefix: String, room: String, in headers: HTTPHeaders) -> Substring? {
    for header in headers["cookie"] {
      if let value = valueRange(prefix: prefix, room: room, inHeader: header.utf8) { return header[value] }
    }
    return nil
  }

  /// The pass a raw request head presents for `room`: the pass cookie first, then the first
  /// `Foyer-Pass` header (the one order both lanes look in).
  static func presentedPass(_ bytes: UnsafeRawBufferPointer, _ head: RawHead, room: String) -> Range<Int>? {
    for field in head.fields where RawHTTP.equals(bytes, field.name, lowercase: "cookie") {
      if let value = valueRange(prefix: passPrefix, room: room, inHeader: bytes[field.value]) { return value }
    }
    return head.fields.first { RawHTTP.equals(bytes, $0.name, lowercase: "foyer-pass") }?.value
  }

  /// Where the value of the cookie `prefix + room` is in one `Cookie` header value. On any
  /// UTF-8 bytes: a `String`'s (NIOHTTP1 path) or a request buffer's (express lane).
  static func valueRange<Bytes: Collection<UInt8>>(
    prefix: String, room: String, inHeader header: Bytes
  ) -> Range<Bytes.Index>? {
    for pair in PairRanges(header) {
      if let value = value(of: pair, in: header, prefix: prefix, room: room) { return value }
    }
    return nil
  }

  /// Where the values of the room's pass, visitor and place cookies are in one `Cookie`
  /// header value (the first of each), in one scan: a status poll looks for all three.
  static func pollRanges<Bytes: Collection<UInt8>>(
    room: String, inHeader header: Bytes
  ) -> (pass: Range<Bytes.Index>?, visitor: Range<Bytes.Index>?, place: Range<Bytes.Index>?) {
    var pass: Range<Bytes.Index>?
    var visitor: Range<Bytes.Index>?
    var place: Range<Bytes.Index>?
    for pair in PairRanges(header) {
      if pass == nil, let value = value(of: pair, in: header, prefix: passPrefix, room: room) {
        pass = value
      } else if visitor == nil, let value = value(of: pair, in: header, prefix: visitorPrefix, room: room) {
        visitor = value
      } else if place == nil, let value = value(of: pair, in: header, prefix: placePrefix, room: room) {
        place = value
      }
    }
    return (pass, visitor, place)
  }

  /// Who a poll is and the place in line it brings, the one rule of both lanes: a place that
  /// verifies (kind `q`, this room) and whose visitor the visitor cookie names proves both
  /// with one MAC; otherwise the visitor cookie alone, verified, and no place (another's,
  /// altered or forged places count for nothing).
  static func visitorAndPlace(
    visitor token: UnsafeRawBufferPointer, place: UnsafeRawBufferPointer?, room: String,
    verify: (UnsafeRawBufferPointer, TokenKind) -> TokenVerification
  ) -> (visitor: VisitorID, place: Int64?)? {
    if let place, case .valid(let owner, let score) = verify(place, .place),
      TokenSigner.namedVisitor(utf8: token, kind: .visitor, room: room) == owner
    {
      return (owner, score)
    }
    guard case .valid(let visitor, _) = verify(token, .visitor) else { return nil }
    return (visitor, nil)
  }

  /// The value of `pair` if its name is `prefix + room`.
  private static func value<Bytes: Collection<UInt8>>(
    of pair: Range<Bytes.Index>, in header: Bytes, prefix: String, room: String
  ) -> Range<Bytes.Index>? {
    var cursor = pair.lowerBound
    guard skip(prefix.utf8, in: header, upTo: pair.upperBound, at: &cursor),
      skip(room.utf8, in: header, upTo: pair.upperBound, at: &cursor),
      cursor < pair.upperBound, header[cursor] == UInt8(ascii: "=")
    else { return nil }
    return header.index(after: cursor)..<pair.upperBound
  }

  /// Whether a `name=value` pair is one of the gateway's own cookies (any room). Without
  /// case: an upstream's cookie parser may fold names, and the gateway's cookies must never
  /// reach it in any spelling.
  static func isGatewayCookie<Bytes: Collection<UInt8>>(_ pair: Bytes) -> Bool {
    pair.hasPrefixIgnoringCase(utf8: passPrefix) || pair.hasPrefixIgnoringCase(utf8: visitorPrefix)
      || pair.hasPrefixIgnoringCase(utf8: placePrefix)
  }

  /// Where the pairs of one `Cookie` header value are that are not the gateway's: what goes
  /// upstream, on both lanes.
  static func foreignPairs<Bytes: Collection<UInt8>>(
    inHeader header: Bytes
  ) -> some Sequence<Range<Bytes.Index>> {
    PairRanges(header).lazy.filter { !isGatewayCookie(header[$0]) }
  }

  /// Whether one `Cookie` header value carries any of the gateway's cookies.
  static func hasGatewayCookie<Bytes: Collection<UInt8>>(inHeader header: Bytes) -> Bool {
    PairRanges(header).contains { isGatewayCookie(header[$0]) }
  }

  /// Where the non-empty `name=value` pairs of one `Cookie` header value are, on UTF-8 bytes:
  /// the one scan behind finding the gateway's cookies and stripping them, for `String`s and
  /// for raw request bytes alike.
  private struct PairRanges<Bytes: Collection<UInt8>>: Sequence, IteratorProtocol {
    let bytes: Bytes
    private var index: Bytes.Index

    init(_ bytes: Bytes) {
      self.bytes = bytes
      index = bytes.startIndex
    }

    mutating func next() -> Range<Bytes.Index>? {
      while index < bytes.endIndex {
        // Any whitespace or control byte before a name is skipped, as upstream cookie
        // parsers skip it: a pair after `;\t` is still a pair.
        while index < bytes.endIndex && (bytes[index] <= 0x20 || bytes[index] == 0x7f) {
          index = bytes.index(after: index)
        }
        let start = index
        let end = bytes[index...].firstIndex(of: UInt8(ascii: ";")) ?? bytes.endIndex
        index = end < bytes.endIndex ? bytes.index(after: end) : end
        if start < end { return start..<end }
      }
      return nil
    }
  }

  /// Advances `cursor` past `expected` if the bytes there, before `end`, are exactly it.
  private static func skip<Bytes: Collection<UInt8>>(
    _ expected: String.UTF8View, in bytes: Bytes, upTo end: Bytes.Index, at cursor: inout Bytes.Index
  ) -> Bool {
    func skip(_ expected: some Sequence<UInt8>) -> Bool {
      for byte in expected {
        guard cursor < end, bytes[cursor] == byte else { return false }
        cursor = bytes.index(after: cursor)
      }
      return true
    }
    // Through the contiguous bytes when there are (see `hasPrefix(utf8:)`).
    return expected.withContiguousStorageIfAvailable { skip($0) } ?? skip(expected)
  }

  /// A `Set-Cookie` value: `HttpOnly`, `SameSite=Lax`, `Path=/`, `Secure` when configured.
  static func setCookie(name: String, value: String, maxAge: Int64?, secure: Bool) -> String {
    var cookie = "\(name)=\(value); Path=/; HttpOnly; SameSite=Lax"
    if let maxAge { cookie += "; Max-Age=\(max(maxAge, 0))" }
    if secure { cookie += "; Secure" }
    return cookie
  }
}
