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
      let bytes = pair.utf8
      var cursor = bytes.startIndex
      if skip(prefix.utf8, in: bytes, at: &cursor), skip(room.utf8, in: bytes, at: &cursor),
        cursor < bytes.endIndex, bytes[cursor] == UInt8(ascii: "=")
      {
        return pair[bytes.index(after: cursor)...]
      }
    }
    return nil
  }

  /// Whether a `name=value` pair is one of the gateway's own cookies (any room).
  static func isGatewayCookie(_ pair: Substring) -> Bool {
    pair.utf8.starts(with: passPrefix.utf8) || pair.utf8.starts(with: visitorPrefix.utf8)
  }

  /// The non-empty `name=value` pairs of one `Cookie` header, leading spaces skipped, on
  /// UTF-8 bytes: the one scan behind finding the gateway's cookies and stripping them.
  struct Pairs: Sequence, IteratorProtocol {
    let header: String
    private var index: String.Index

    init(header: String) {
      self.header = header
      index = header.utf8.startIndex
    }

    mutating func next() -> Substring? {
      let bytes = header.utf8
      while index < bytes.endIndex {
        while index < bytes.endIndex && bytes[index] == UInt8(ascii: " ") {
          index = bytes.index(after: index)
        }
        let end = bytes[index...].firstIndex(of: UInt8(ascii: ";")) ?? bytes.endIndex
        let pair = header[index..<end]
        index = end < bytes.endIndex ? bytes.index(after: end) : end
        if !pair.isEmpty { return pair }
      }
      return nil
    }
  }

  /// Advances `cursor` past `expected` if the bytes there are exactly it.
  private static func skip(
    _ expected: String.UTF8View, in bytes: Substring.UTF8View, at cursor: inout String.Index
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
