#if canImport(Glibc)
internal import Glibc
#elseif canImport(Darwin)
internal import Darwin
#endif

/// HTTP/1.1 heads read straight from the bytes of a connection, for the express lane.
///
/// Written by hand, not with NIOHTTP1: decoding a head into `HTTPHeaders` of `String`s and
/// encoding it again on each side of the proxy was most of the gateway's user time per
/// forwarded request in `perf`. This reader is deliberately narrower than RFC 9112: it
/// accepts only clean heads (CRLF line ends, token field names, no obs-fold, visible ASCII
/// values) and says `unsupported` for anything else, which the caller then leaves to
/// NIOHTTP1. It never decides a message's framing on its own where the two could disagree.
public struct RawHead {
  /// A request: method, target and version. A response: version, status code and reason.
  public var start: (Range<Int>, Range<Int>, Range<Int>)
  public var fields: [Field]
  /// The bytes up to and including the blank line.
  public var length: Int

  public struct Field {
    public var name: Range<Int>
    public var value: Range<Int>
    /// The whole line with its CRLF, to pass the field on as it came.
    public var line: Range<Int>
  }
}

public enum RawHeadResult {
  /// No blank line yet.
  case incomplete
  /// Not a head this reader takes: NIOHTTP1 decides what it is.
  case unsupported
  case head(RawHead)
}

public enum RawHTTP {
  /// Reads a request head: `token SP target SP HTTP/1.x CRLF` then fields.
  public static func request(_ bytes: UnsafeRawBufferPointer) -> RawHeadResult {
    head(bytes, response: false)
  }

  /// Reads a response head: `HTTP/1.x SP 3DIGIT [SP reason] CRLF` then fields.
  public static func response(_ bytes: UnsafeRawBufferPointer) -> RawHeadResult {
    head(bytes, response: true)
  }

  private static func head(_ bytes: UnsafeRawBufferPointer, response: Bool) -> RawHeadResult {
    guard let firstEnd = lineEnd(bytes, from: 0) else {
      return looksValid(bytes, from: 0) ? .incomplete : .unsupported
    }
    guard let start = response ? statusLine(bytes, end: firstEnd) : requestLine(bytes, end: firstEnd) else {
      return .unsupported
    }
    var fields: [RawHead.Field] = []
    fields.reserveCapacity(16)
    var cursor = firstEnd + 2
    while true {
      guard let end = lineEnd(bytes, from: cursor) else {
        return looksValid(bytes, from: cursor) ? .incomplete : .unsupported
      }
      if end == cursor { return .head(RawHead(start: start, fields: fields, length: end + 2)) }
      guard let field = field(bytes, from: cursor, to: end) else { return .unsupported }
      fields.append(field)
      cursor = end + 2
    }
  }

  /// The index of the CR of the next CRLF at or after `from`; `nil` if none yet, or if the
  /// LF comes bare (left for `looksValid` to refuse). A bare CR inside the line is refused by
  /// whoever reads the line: no CR is a token, target, version or field-value byte. `memchr`
  /// rather than a loop: this scan is every byte of every head, both ways.
  private static func lineEnd(_ bytes: UnsafeRawBufferPointer, from: Int) -> Int? {
    guard from < bytes.count, let base = bytes.baseAddress,
      let found = memchr(base + from, Int32(lf), bytes.count - from)
    else { return nil }
    let index = base.distance(to: UnsafeRawPointer(found))
    guard index > from, bytes[index - 1] == cr else { return nil }
    return index - 1
  }

  /// Whether the bytes from `from` could still become a clean line (no bare CR or LF).
  private static func looksValid(_ bytes: UnsafeRawBufferPointer, from: Int) -> Bool {
    var index = from
    while index < bytes.count {
      let byte = bytes[index]
      if byte == lf { return false }
      if byte == cr { return index + 1 == bytes.count }
      index += 1
    }
    return true
  }

  private static func requestLine(
    _ bytes: UnsafeRawBufferPointer, end: Int
  ) -> (Range<Int>, Range<Int>, Range<Int>)? {
    var index = 0
    while index < end && isTokenByte(bytes[index]) { index += 1 }
    guard index > 0, index < end, bytes[index] == space else { return nil }
    let method = 0..<index
    index += 1
    let targetStart = index
    while index < end && bytes[index] > space && bytes[index] < 0x7f { index += 1 }
    guard index > targetStart, index < end, bytes[index] == space else { return nil }
    let target = targetStart..<index
    let version = (index + 1)..<end
    guard isVersion(bytes, version) else { return nil }
    return (method, target, version)
  }

  private static func statusLine(
    _ bytes: UnsafeRawBufferPointer, end: Int
  ) -> (Range<Int>, Range<Int>, Range<Int>)? {
    guard end >= 12, isVersion(bytes, 0..<8), bytes[8] == space else { return nil }
    for index in 9..<12 where !(UInt8(ascii: "0")...UInt8(ascii: "9")).contains(bytes[index]) { return nil }
    guard end == 12 || bytes[12] == space else { return nil }
    let reason = min(13, end)..<end
    for index in reason where !isFieldValueByte(bytes[index]) { return nil }
    return (0..<8, 9..<12, reason)
  }

  private static func isVersion(_ bytes: UnsafeRawBufferPointer, _ range: Range<Int>) -> Bool {
    guard range.count == 8 else { return false }
    let base = range.lowerBound
    let prefix: StaticString = "HTTP/1."
    for offset in 0..<7 where bytes[base + offset] != prefix.utf8Start[offset] { return false }
    return bytes[base + 7] == UInt8(ascii: "1") || bytes[base + 7] == UInt8(ascii: "0")
  }

  /// `token ":" OWS value OWS`, the value trimmed.
  private static func field(_ bytes: UnsafeRawBufferPointer, from: Int, to end: Int) -> RawHead.Field? {
    var index = from
    while index < end && isTokenByte(bytes[index]) { index += 1 }
    guard index > from, index < end, bytes[index] == colon else { return nil }
    let name = from..<index
    index += 1
    while index < end && (bytes[index] == space || bytes[index] == tab) { index += 1 }
    var valueEnd = end
    while valueEnd > index && (bytes[valueEnd - 1] == space || bytes[valueEnd - 1] == tab) { valueEnd -= 1 }
    for position in index..<valueEnd where !isFieldValueByte(bytes[position]) { return nil }
    return RawHead.Field(name: name, value: index..<valueEnd, line: from..<(end + 2))
  }

  /// RFC 9110 `tchar`.
  public static func isTokenByte(_ byte: UInt8) -> Bool {
    switch byte {
    case UInt8(ascii: "a")...UInt8(ascii: "z"), UInt8(ascii: "A")...UInt8(ascii: "Z"),
      UInt8(ascii: "0")...UInt8(ascii: "9"):
      return true
    case UInt8(ascii: "!"), UInt8(ascii: "#"), UInt8(ascii: "$"), UInt8(ascii: "%"), UInt8(ascii: "&"),
      UInt8(ascii: "'"), UInt8(ascii: "*"), UInt8(ascii: "+"), UInt8(ascii: "-"), UInt8(ascii: "."),
      UInt8(ascii: "^"), UInt8(ascii: "_"), UInt8(ascii: "`"), UInt8(ascii: "|"), UInt8(ascii: "~"):
      return true
    default:
      return false
    }
  }

  /// Visible ASCII, space, tab and obs-text (RFC 9110 §5.5): every value byte llhttp takes,
  /// so a head NIOHTTP1 read reads here again (`UpstreamRequestHead`).
  private static func isFieldValueByte(_ byte: UInt8) -> Bool {
    (byte >= space && byte != 0x7f) || byte == tab
  }

  /// A decimal `Content-Length` value; `nil` if it is not one (or would overflow).
  public static func contentLength(_ bytes: UnsafeRawBufferPointer, _ range: Range<Int>) -> Int? {
    guard !range.isEmpty, range.count <= 18 else { return nil }
    var value = 0
    for index in range {
      let byte = bytes[index]
      guard byte >= UInt8(ascii: "0") && byte <= UInt8(ascii: "9") else { return nil }
      value = value * 10 + Int(byte - UInt8(ascii: "0"))
    }
    return value
  }

  public static let cr = UInt8(ascii: "\r")
  public static let lf = UInt8(ascii: "\n")
  public static let space = UInt8(ascii: " ")
  public static let tab = UInt8(ascii: "\t")
  public static let colon = UInt8(ascii: ":")
}
