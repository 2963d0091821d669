internal import NIOHTTP1

/// Cookie handling for the gateway's own cookies (DESIGN §4).
enum Cookies {
  static func visitorName(room: String) -> String { visitorPrefix + room }
  static func passName(room: String) -> String { passPrefix + room }

  static let passPrefix = "foyer_p_"
  static let visitorPrefix = "foyer_v_"

  /// The value of the gateway's cookie `prefix + room` in the request's `Cookie` headers.
  ///
  /// Matched on UTF-8 bytes without building the name: this runs twice on every queue poll,
  /// and `Character`-wise `Substring` scanning showed up in profiles of that path.
  static func value(prefix: String, room: String, in headers: HTTPHeaders) -> Substring? {
    for header in headers["cookie"] {
      if let value = value(prefix: prefix, room: room, inHeader: header) { return value }
    }
    return nil
  }

  private static func value(prefix: String, room: String, inHeader header: String) -> Substring? {
    for pair in Pairs(header: header) {
      if let value = valueRange(prefix: prefix, room: room, inPair: pair.utf8) { return header[value] }
    }
    return nil
  }

  /// Where the value of the cookie `prefix + room` is in one `name=value` pair, if the pair is
  /// that cookie. On any UTF-8 bytes: a `String`'s or a request buffer's.
  static func valueRange<Bytes: Collection<UInt8>>(
    prefix: String, room: String, inPair pair: Bytes
  ) -> Range<Bytes.Index>? {
    var cursor = pair.startIndex
    guard skip(prefix.utf8, in: pair, at: &cursor), skip(room.utf8, in: pair, at: &cursor),
      cursor < pair.endIndex, pair[cursor] == UInt8(ascii: "=")
    else { return nil }
    return pair.index(after: cursor)..<pair.endIndex
  }

  /// Whether a `name=value` pair is one of the gateway's own cookies (any room).
  static func isGatewayCookie<Bytes: Collection<UInt8>>(_ pair: Bytes) -> Bool {
    pair.starts(with: passPrefix.utf8) || pair.starts(with: visitorPrefix.utf8)
  }

  static func isGatewayCookie(_ pair: Substring) -> Bool { isGatewayCookie(pair.utf8) }

  /// The non-empty `name=value` pairs of one `Cookie` header, leading spaces skipped.
  struct Pairs: Sequence, IteratorProtocol {
    let header: String
    private var ranges: PairRanges<String.UTF8View>

    init(header: String) {
      self.header = header
      ranges = PairRanges(header.utf8)
    }

    mutating func next() -> Substring? { ranges.next().map { header[$0] } }
  }

  /// Where the non-empty `name=value` pairs of one `Cookie` header value are, on UTF-8 bytes:
  /// the one scan behind finding the gateway's cookies and stripping them, for `String`s and
  /// for raw request bytes alike.
  struct PairRanges<Bytes: Collection<UInt8>>: Sequence, IteratorProtocol {
    let bytes: Bytes
    private var index: Bytes.Index

    init(_ bytes: Bytes) {
      self.bytes = bytes
      index = bytes.startIndex
    }

    mutating func next() -> Range<Bytes.Index>? {
      while index < bytes.endIndex {
        while index < bytes.endIndex && bytes[index] == UInt8(ascii: " ") {
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

  /// Advances `cursor` past `expected` if the bytes there are exactly it.
  private static func skip<Bytes: Collection<UInt8>>(
    _ expected: String.UTF8View, in bytes: Bytes, at cursor: inout Bytes.Index
  ) -> Bool {
    for byte in expected {
      guard cursor < bytes.endIndex, bytes[cursor] == byte else { return false }
      cursor = bytes.index(after: cursor)
    }
    return true
  }

  /// A `Set-Cookie` value: `HttpOnly`, `SameSite=Lax`, `Path=/`, `Secure` when configured.
  static func setCookie(name: String, value: String, maxAge: Int64?, secure: Bool) -> String {
    var cookie = "\(name)=\(value); Path=/; HttpOnly; SameSite=Lax"
    if let maxAge { cookie += "; Max-Age=\(max(maxAge, 0))" }
    if secure { cookie += "; Secure" }
    return cookie
  }
}
