/// Base64url without padding (RFC 4648 §5), as tokens and visitor ids use it.
///
/// Written by hand rather than taken from Foundation: Foundation's `Data.base64EncodedString`
/// knows neither the URL alphabet nor unpadded input, and every call allocates. Token
/// verification decodes a 43-character MAC on every request, into caller-provided memory.
public enum Base64URL {
  @usableFromInline
  static let alphabet: [UInt8] = Array(
    "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_".utf8)

  /// 255 marks a byte outside the alphabet.
  @usableFromInline
  static let decodeTable: [UInt8] = {
    var table = [UInt8](repeating: 255, count: 256)
    for (index, byte) in alphabet.enumerated() { table[Int(byte)] = UInt8(index) }
    return table
  }()

  /// The length of the unpadded encoding of `count` bytes.
  @inlinable
  public static func encodedLength(of count: Int) -> Int { (count * 8 + 5) / 6 }

  /// Encodes `bytes` as unpadded base64url.
  public static func encode(_ bytes: some Sequence<UInt8>) -> String {
    let input = Array(bytes)
    return String(unsafeUninitializedCapacity: encodedLength(of: input.count)) { output in
      input.withUnsafeBufferPointer { encode($0, into: output) }
    }
  }

  /// Encodes into `output`, which must hold `encodedLength(of: input.count)` bytes; returns that length.
  @discardableResult
  public static func encode(
    _ input: UnsafeBufferPointer<UInt8>, into output: UnsafeMutableBufferPointer<UInt8>
  ) -> Int {
    alphabet.withUnsafeBufferPointer { table in
      var out = 0
      var index = 0
      while index + 3 <= input.count {
        let chunk = UInt32(input[index]) << 16 | UInt32(input[index + 1]) << 8 | UInt32(input[index + 2])
        output[out] = table[Int(chunk >> 18 & 63)]
        output[out + 1] = table[Int(chunk >> 12 & 63)]
        output[out + 2] = table[Int(chunk >> 6 & 63)]
        output[out + 3] = table[Int(chunk & 63)]
        out += 4
        index += 3
      }
      switch input.count - index {
      case 1:
        let chunk = UInt32(input[index]) << 16
        output[out] = table[Int(chunk >> 18 & 63)]
        output[out + 1] = table[Int(chunk >> 12 & 63)]
        out += 2
      case 2:
        let chunk = UInt32(input[index]) << 16 | UInt32(input[index + 1]) << 8
        output[out] = table[Int(chunk >> 18 & 63)]
        output[out + 1] = table[Int(chunk >> 12 & 63)]
        output[out + 2] = table[Int(chunk >> 6 & 63)]
        out += 3
      default:
        break
      }
      return out
    }
  }

  /// Decodes unpadded base64url; `nil` for any byte outside the alphabet, an impossible
  /// length, or non-zero trailing bits (so every encoding is canonical: one value, one text).
  public static func decode(_ text: some StringProtocol) -> [UInt8]? {
    let utf8 = Array(text.utf8)
    guard let length = decodedLength(of: utf8.count) else { return nil }
    var result = [UInt8](repeating: 0, count: length)
    let ok = utf8.withUnsafeBufferPointer { input in
      result.withUnsafeMutableBufferPointer { decode(input, into: $0) != nil }
    }
    return ok ? result : nil
  }

  /// The decoded length of `count` characters, or `nil` when no encoding has that length.
  @inlinable
  public static func decodedLength(of count: Int) -> Int? {
    count % 4 == 1 ? nil : count * 6 / 8
  }

  /// Decodes into `output` (at least `decodedLength(of: input.count)` bytes); returns the
  /// length, or `nil` when the input is not canonical unpadded base64url.
  public static func decode(
    _ input: UnsafeBufferPointer<UInt8>, into output: UnsafeMutableBufferPointer<UInt8>
  ) -> Int? {
    guard let length = decodedLength(of: input.count), output.count >= length else { return nil }
    return decodeTable.withUnsafeBufferPointer { table -> Int? in
      var accumulator: UInt32 = 0
      var bits = 0
      var out = 0
      for byte in input {
        let value = table[Int(byte)]
        if value == 255 { return nil }
        accumulator = accumulator << 6 | UInt32(value)
        bits += 6
        if bits >= 8 {
          bits -= 8
          output[out] = UInt8(truncatingIfNeeded: accumulator >> UInt32(bits))
          out += 1
        }
      }
      // Leftover bits must be zero, or two texts would decode to the same bytes.
      if bits > 0 && accumulator & ((1 << UInt32(bits)) - 1) != 0 { return nil }
      return out
    }
  }
}
