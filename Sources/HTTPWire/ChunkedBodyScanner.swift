/// Finds where a chunked body ends, byte by byte, so the relay can pass the chunks on as they
/// are and know when the response is over (RFC 9112 §7.1). Extensions and trailers are passed
/// on unread.
public struct ChunkedBodyScanner {
  private enum State {
    case size(value: Int, digits: Int)
    case extensions(value: Int)
    case sizeLF(value: Int)
    case data(remaining: Int)
    case dataCR
    case dataLF
    case trailerStart
    case trailer
    case trailerLF
    case finalLF
    case done
  }

  public enum Outcome: Equatable {
    /// All the bytes given belong to the body; it goes on.
    case needMore
    /// The body ends after this many of the bytes given.
    case ended(consumed: Int)
    case invalid
  }

  private var state = State.size(value: 0, digits: 0)

  public init() {}

  public mutating func scan(_ bytes: UnsafeRawBufferPointer) -> Outcome {
    var index = 0
    while index < bytes.count {
      if case .data(let remaining) = state {
        let step = min(remaining, bytes.count - index)
        index += step
        state = remaining == step ? .dataCR : .data(remaining: remaining - step)
        continue
      }
      let byte = bytes[index]
      index += 1
      switch state {
      case .size(let value, let digits):
        if let digit = Self.hexValue(byte) {
          guard digits < 15 else { return .invalid }
          state = .size(value: value << 4 | digit, digits: digits + 1)
        } else if digits > 0 && byte == RawHTTP.cr {
          state = .sizeLF(value: value)
        } else if digits > 0 && (byte == UInt8(ascii: ";") || byte == RawHTTP.space || byte == RawHTTP.tab) {
          state = .extensions(value: value)
        } else {
          return .invalid
        }
      case .extensions(let value):
        if byte == RawHTTP.cr {
          state = .sizeLF(value: value)
        } else if byte == RawHTTP.lf {
          return .invalid
        }
      case .sizeLF(let value):
        guard byte == RawHTTP.lf else { return .invalid }
        state = value == 0 ? .trailerStart : .data(remaining: value)
      case .dataCR:
        guard byte == RawHTTP.cr else { return .invalid }
        state = .dataLF
      case .dataLF:
        guard byte == RawHTTP.lf else { return .invalid }
        state = .size(value: 0, digits: 0)
      case .trailerStart:
        if byte == RawHTTP.cr {
          state = .finalLF
        } else if byte == RawHTTP.lf {
          return .invalid
        } else {
          state = .trailer
        }
      case .trailer:
        if byte == RawHTTP.cr {
          state = .trailerLF
        } else if byte == RawHTTP.lf {
          return .invalid
        }
      case .trailerLF:
        guard byte == RawHTTP.lf else { return .invalid }
        state = .trailerStart
      case .finalLF:
        guard byte == RawHTTP.lf else { return .invalid }
        state = .done
        return .ended(consumed: index)
      case .data, .done:
        return .invalid
      }
    }
    return .needMore
  }

  private static func hexValue(_ byte: UInt8) -> Int? {
    switch byte {
    case UInt8(ascii: "0")...UInt8(ascii: "9"): Int(byte - UInt8(ascii: "0"))
    case UInt8(ascii: "a")...UInt8(ascii: "f"): Int(byte - UInt8(ascii: "a") + 10)
    case UInt8(ascii: "A")...UInt8(ascii: "F"): Int(byte - UInt8(ascii: "A") + 10)
    default: nil
    }
  }
}
