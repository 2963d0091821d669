/// The one form of a request target the gateway matches rooms on and sends upstream, so the
/// upstream always serves the path that was matched (RFC 3986 §6.2.2, §5.2.4).
///
/// Written by hand: Foundation's `URLComponents` neither refuses encoded separators nor says
/// whether it changed anything, and the check runs on raw request bytes in the express lane.
public enum CanonicalTarget {
  public enum Outcome: Equatable, Sendable {
    /// Already canonical origin-form: forwarded as it came.
    case canonical
    /// The canonical origin-form target; `authority` is the absolute-form's host, if it was.
    case rewritten(target: String, authority: String?)
    case refused(String)
  }

  public static func canonicalize(_ target: String) -> Outcome {
    var target = target
    return target.withUTF8 { canonicalize(UnsafeRawBufferPointer($0)) }
  }

  /// Absolute-form becomes origin-form; in the path, percent-encoded unreserved characters
  /// are decoded (other escapes get upper-case hex), repeated `/` collapse and dot segments
  /// are removed. An encoded `/`, `\`, NUL or control byte, a raw `\`, a raw non-ASCII byte
  /// or a fragment is refused: upstreams disagree on what each means.
  public static func canonicalize(_ bytes: UnsafeRawBufferPointer) -> Outcome {
    guard !bytes.isEmpty else { return .refused("the target is empty") }
    var pathStart = 0
    var authority: String?
    if bytes[0] != slash {
      guard let parsed = absoluteForm(bytes) else {
        return .refused("the target is neither origin-form nor absolute-form")
      }
      (authority, pathStart) = parsed
    }
    if bytes.contains(UInt8(ascii: "#")) { return .refused("the target carries a fragment") }
    let queryStart = bytes[pathStart...].firstIndex(of: UInt8(ascii: "?")) ?? bytes.count

    // Decode what may be decoded; refuse what may not.
    var decoded: [UInt8] = []
    decoded.reserveCapacity(queryStart - pathStart + 1)
    var index = pathStart
    while index < queryStart {
      let byte = bytes[index]
      if byte == UInt8(ascii: "%") {
        guard index + 2 < queryStart,
          let high = hexValue(bytes[index + 1]), let low = hexValue(bytes[index + 2])
        else { return .refused("the path has a malformed percent-encoding") }
        let value = high << 4 | low
        if isUnreserved(value) {
          decoded.append(value)
        } else if value == slash || value == backslash || value < 0x20 || value == 0x7f {
          return .refused("the path encodes a separator or control byte")
        } else {
          decoded.append(contentsOf: [UInt8(ascii: "%"), upperHex(value >> 4), upperHex(value & 0xf)])
        }
        index += 3
        continue
      }
      if byte == backslash { return .refused("the path has a backslash") }
      if byte >= 0x80 || byte <= 0x20 || byte == 0x7f { return .refused("the path has a raw non-ASCII byte") }
      decoded.append(byte)
      index += 1
    }
    if decoded.isEmpty { decoded = [slash] }  // absolute-form without a path

    // Segments: empty ones collapse, `.` goes, `..` takes the one before it.
    var segments: [ArraySlice<UInt8>] = []
    var trailingSlash = false
    let parts = decoded.split(separator: slash, omittingEmptySubsequences: false).dropFirst()
    for (offset, segment) in parts.enumerated() {
      let last = offset == parts.count - 1
      if segment.isEmpty {
        if last { trailingSlash = true }
      } else if segment.elementsEqual([UInt8(ascii: ".")]) {
        if last { trailingSlash = true }
      } else if segment.elementsEqual([UInt8(ascii: "."), UInt8(ascii: ".")]) {
        _ = segments.popLast()
        if last { trailingSlash = true }
      } else {
        segments.append(segment)
      }
    }
    var canonical: [UInt8] = []
    canonical.reserveCapacity(decoded.count + bytes.count - queryStart)
    for segment in segments {
      canonical.append(slash)
      canonical.append(contentsOf: segment)
    }
    if segments.isEmpty || trailingSlash { canonical.append(slash) }
    canonical.append(contentsOf: bytes[queryStart...])
    if authority == nil && canonical.elementsEqual(bytes) { return .canonical }
    return .rewritten(target: String(decoding: canonical, as: UTF8.self), authority: authority)
  }

  /// A cheap, conservative test for the express lane: `true` only for an origin-form target
  /// that `canonicalize` leaves as it is (no escapes, backslashes, fragments, raw control or
  /// non-ASCII bytes, empty or dot segments in the path).
  public static func isPlainlyCanonical(_ target: Slice<UnsafeRawBufferPointer>) -> Bool {
    guard target.first == slash else { return false }
    var previous: UInt8 = 0
    var inQuery = false
    for byte in target {
      // The query is not canonicalised, but a fragment anywhere is refused.
      if inQuery {
        if byte == UInt8(ascii: "#") { return false }
        continue
      }
      if byte == UInt8(ascii: "?") {
        inQuery = true
        continue
      }
      if byte == UInt8(ascii: "%") || byte == backslash || byte == UInt8(ascii: "#") || byte >= 0x7f || byte <= 0x20 {
        return false
      }
      if previous == slash && (byte == slash || byte == UInt8(ascii: ".")) { return false }
      previous = byte
    }
    return true
  }

  /// A host as compared: lowercased, without its port or a trailing dot.
  public static func normalizedHost(_ value: Substring) -> Substring {
    var host = value.lowercased()[...]
    if host.hasPrefix("[") {
      if let close = host.firstIndex(of: "]") { host = host[...close] }
    } else if let colon = host.lastIndex(of: ":") {
      host = host[..<colon]
    }
    if host.hasSuffix(".") { host = host.dropLast() }
    return host
  }

  /// `http://authority[/path…]` (or `https`): the authority, and where the path starts.
  private static func absoluteForm(_ bytes: UnsafeRawBufferPointer) -> (String, Int)? {
    let schemes: [StaticString] = ["http://", "https://"]
    for scheme in schemes {
      let length = scheme.utf8CodeUnitCount
      let expected = UnsafeBufferPointer(start: scheme.utf8Start, count: length)
      // The scheme without case (`HTTP://`): every byte of it is a letter, `:` or `/`.
      guard bytes.count > length, zip(bytes[0..<length], expected).allSatisfy({ $0 | 0x20 == $1 }) else { continue }
      let end = bytes[length...].firstIndex { $0 == slash || $0 == UInt8(ascii: "?") } ?? bytes.count
      let authority = bytes[length..<end]
      // No user info (`user@host`), nothing but host and port characters.
      guard !authority.isEmpty,
        authority.allSatisfy({ isUnreserved($0) || $0 == UInt8(ascii: ":") || $0 == UInt8(ascii: "[") || $0 == UInt8(ascii: "]") })
      else { return nil }
      return (String(decoding: authority, as: UTF8.self), end)
    }
    return nil
  }

  private static let slash = UInt8(ascii: "/")
  private static let backslash = UInt8(ascii: "\\")

  private static func isUnreserved(_ byte: UInt8) -> Bool {
    (byte >= UInt8(ascii: "a") && byte <= UInt8(ascii: "z")) || (byte >= UInt8(ascii: "A") && byte <= UInt8(ascii: "Z"))
      || (byte >= UInt8(ascii: "0") && byte <= UInt8(ascii: "9")) || byte == UInt8(ascii: "-")
      || byte == UInt8(ascii: ".") || byte == UInt8(ascii: "_") || byte == UInt8(ascii: "~")
  }

  private static func hexValue(_ byte: UInt8) -> UInt8? {
    switch byte {
    case UInt8(ascii: "0")...UInt8(ascii: "9"): byte - UInt8(ascii: "0")
    case UInt8(ascii: "a")...UInt8(ascii: "f"): byte - UInt8(ascii: "a") + 10
    case UInt8(ascii: "A")...UInt8(ascii: "F"): byte - UInt8(ascii: "A") + 10
    default: nil
    }
  }

  private static func upperHex(_ nibble: UInt8) -> UInt8 {
    nibble < 10 ? UInt8(ascii: "0") + nibble : UInt8(ascii: "A") + nibble - 10
  }
}
