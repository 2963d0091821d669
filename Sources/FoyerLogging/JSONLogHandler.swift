public import Logging

#if canImport(Glibc)
internal import Glibc
#elseif canImport(Darwin)
internal import Darwin
#endif

/// One JSON object per log event, on one line of standard error:
/// `{"ts":"…Z","level":"…","label":"…","message":"…", …metadata}` with the metadata's keys
/// (request id, room, status, duration where the event has them) sorted, so lines diff well.
///
/// Written by hand rather than with `JSONEncoder`: the output is a flat object in a fixed
/// order, and the escaping (RFC 8259 §7) is a dozen lines. Lines are written with one
/// `write(2)` each, so lines from several threads never interleave.
public struct JSONLogHandler: LogHandler {
  public let label: String
  public var logLevel: Logger.Level = .info
  public var metadata: Logger.Metadata = [:]
  public var metadataProvider: Logger.MetadataProvider?

  public init(label: String, metadataProvider: Logger.MetadataProvider? = LoggingSystem.metadataProvider) {
    self.label = label
    self.metadataProvider = metadataProvider
  }

  public subscript(metadataKey key: String) -> Logger.Metadata.Value? {
    get { metadata[key] }
    set { metadata[key] = newValue }
  }

  public func log(event: LogEvent) {
    var merged = metadata
    if let provided = metadataProvider?.get() { merged.merge(provided) { _, new in new } }
    if let own = event.metadata { merged.merge(own) { _, new in new } }
    var line = Self.line(
      timestamp: Self.timestamp(), level: event.level, label: label, message: "\(event.message)",
      metadata: merged)
    line.append("\n")
    line.withUTF8 { bytes in
      var offset = 0
      while offset < bytes.count {
        let written = write(2, bytes.baseAddress! + offset, bytes.count - offset)
        if written <= 0 { break }
        offset += written
      }
    }
  }

  /// The JSON object for one event, without its newline.
  static func line(
    timestamp: String, level: Logger.Level, label: String, message: String, metadata: Logger.Metadata
  ) -> String {
    var out = "{\"ts\":\"\(timestamp)\",\"level\":\"\(level.rawValue)\",\"label\":"
    appendString(label, to: &out)
    out += ",\"message\":"
    appendString(message, to: &out)
    for key in metadata.keys.sorted() where !["ts", "level", "label", "message"].contains(key) {
      out += ","
      appendString(key, to: &out)
      out += ":"
      appendValue(metadata[key]!, to: &out)
    }
    out += "}"
    return out
  }

  private static func appendValue(_ value: Logger.Metadata.Value, to out: inout String) {
    switch value {
    case .string(let text): appendString(text, to: &out)
    case .stringConvertible(let convertible): appendString(convertible.description, to: &out)
    case .array(let values):
      out += "["
      for (index, element) in values.enumerated() {
        if index > 0 { out += "," }
        appendValue(element, to: &out)
      }
      out += "]"
    case .dictionary(let dictionary):
      out += "{"
      for (index, key) in dictionary.keys.sorted().enumerated() {
        if index > 0 { out += "," }
        appendString(key, to: &out)
        out += ":"
        appendValue(dictionary[key]!, to: &out)
      }
      out += "}"
    }
  }

  /// A JSON string: quotes, backslashes and control characters escaped (RFC 8259 §7).
  static func appendString(_ text: String, to out: inout String) {
    out += "\""
    for scalar in text.unicodeScalars {
      switch scalar {
      case "\"": out += "\\\""
      case "\\": out += "\\\\"
      case "\n": out += "\\n"
      case "\r": out += "\\r"
      case "\t": out += "\\t"
      case _ where scalar.value < 0x20 || scalar.value == 0x7f || (0x2028...0x2029).contains(scalar.value):
        let hex = String(scalar.value, radix: 16)
        out += "\\u" + String(repeating: "0", count: 4 - hex.count) + hex
      default: out.unicodeScalars.append(scalar)
      }
    }
    out += "\""
  }

  /// UTC, to the millisecond: `2026-12-03T15:04:05.123Z`.
  static func timestamp() -> String {
    var now = timespec()
    clock_gettime(CLOCK_REALTIME, &now)
    var seconds = time_t(now.tv_sec)
    var parts = tm()
    gmtime_r(&seconds, &parts)
    func two(_ value: Int32) -> String { value < 10 ? "0\(value)" : "\(value)" }
    let millis = Int(now.tv_nsec / 1_000_000)
    let milliText = millis < 10 ? "00\(millis)" : millis < 100 ? "0\(millis)" : "\(millis)"
    return "\(parts.tm_year + 1900)-\(two(parts.tm_mon + 1))-\(two(parts.tm_mday))T\(two(parts.tm_hour)):"
      + "\(two(parts.tm_min)):\(two(parts.tm_sec)).\(milliText)Z"
  }
}
