public import NIOCore

/// A Redis reply (RESP2), nested to any depth the parser accepts.
public enum RESPValue: Sendable, Hashable {
  case simpleString(String)
  /// An error reply. At the top level of a reply it fails the command with
  /// `RedisError.serverError`; inside an array (from `EVAL`, `EXEC`, a pipeline) it stays a value.
  case error(String)
  case integer(Int)
  case bulkString(ByteBuffer)
  case null
  case array([RESPValue])
}

extension RESPValue {
  /// Simple and bulk strings as text (bulk strings decoded as UTF-8, repaired if invalid).
  public var string: String? {
    switch self {
    case .simpleString(let text): text
    case .bulkString(let buffer): String(buffer: buffer)
    case .integer(let value): String(value)
    default: nil
    }
  }

  /// Integers, and bulk strings holding a decimal integer (as `HGET` returns).
  public var int: Int? {
    switch self {
    case .integer(let value): value
    case .bulkString(let buffer): buffer.withUnsafeReadableBytes(Self.decimal)
    case .simpleString(let text): Int(text)
    default: nil
    }
  }

  /// Bulk string bytes.
  public var bytes: [UInt8]? {
    switch self {
    case .bulkString(let buffer): Array(buffer.readableBytesView)
    case .simpleString(let text): Array(text.utf8)
    default: nil
    }
  }

  /// `Int(text)` over ASCII bytes, without making the text: a poll reads a 16-digit queue
  /// score, and a string that long would be allocated.
  static func decimal(_ bytes: UnsafeRawBufferPointer) -> Int? {
    var index = 0
    var negative = false
    if let sign = bytes.first, sign == UInt8(ascii: "-") || sign == UInt8(ascii: "+") {
      negative = sign == UInt8(ascii: "-")
      index = 1
    }
    guard index < bytes.count else { return nil }
    var value = 0
    while index < bytes.count {
      let digit = bytes[index] &- UInt8(ascii: "0")
      guard digit < 10 else { return nil }
      let (shifted, overflowA) = value.multipliedReportingOverflow(by: 10)
      let (next, overflowB) =
        negative
        ? shifted.subtractingReportingOverflow(Int(digit)) : shifted.addingReportingOverflow(Int(digit))
      guard !overflowA && !overflowB else { return nil }
      value = next
      index += 1
    }
    return value
  }

  public var array: [RESPValue]? {
    if case .array(let values) = self { values } else { nil }
  }

  public var isNull: Bool {
    if case .null = self { true } else { false }
  }
}

extension RESPValue: CustomStringConvertible {
  public var description: String {
    switch self {
    case .simpleString(let text): "+\(text)"
    case .error(let message): "-\(message)"
    case .integer(let value): ":\(value)"
    case .bulkString(let buffer): "$\"\(String(buffer: buffer))\""
    case .null: "(nil)"
    case .array(let values): "[\(values.map(\.description).joined(separator: ", "))]"
    }
  }
}
