internal import NIOCore

/// Writes text into bytes reserved in a `ByteBuffer` beforehand, for answers made of many
/// small pieces. Each `ByteBuffer` write checks capacity and uniqueness and makes an
/// exclusivity-checked access to its storage; a status answer is about 30 pieces, and those
/// checks were about a tenth of the gateway's user time per poll. Here the buffer is touched
/// once, and each piece costs one bounds check (a piece past the reservation traps rather
/// than writes out of bounds).
struct ReservedWriter {
  private let bytes: UnsafeMutableRawBufferPointer
  private(set) var count = 0

  fileprivate init(_ bytes: UnsafeMutableRawBufferPointer) {
    self.bytes = bytes
  }

  private mutating func append(_ source: UnsafeRawBufferPointer) {
    precondition(source.count <= bytes.count - count, "wrote past the reserved bytes")
    if let from = source.baseAddress {
      (bytes.baseAddress! + count).copyMemory(from: from, byteCount: source.count)
    }
    count += source.count
  }

  mutating func write(_ text: StaticString) {
    append(UnsafeRawBufferPointer(start: text.utf8Start, count: text.utf8CodeUnitCount))
  }

  mutating func write(_ text: String) {
    // Native strings are contiguous UTF-8; copying one to call `withUTF8` would retain it.
    let done: Void? = text.utf8.withContiguousStorageIfAvailable { append(UnsafeRawBufferPointer($0)) }
    if done == nil { for byte in text.utf8 { withUnsafeBytes(of: byte) { append($0) } } }
  }

  mutating func write(_ buffer: ByteBuffer) {
    buffer.withUnsafeReadableBytes { append($0) }
  }

  /// `value` in decimal, without making a string.
  mutating func write(decimal value: Int) {
    var digits = 1
    var rest = value.magnitude
    while rest >= 10 {
      rest /= 10
      digits += 1
    }
    let length = digits + (value < 0 ? 1 : 0)
    precondition(length <= bytes.count - count, "wrote past the reserved bytes")
    var magnitude = value.magnitude
    for index in stride(from: count + length - 1, through: count + length - digits, by: -1) {
      bytes[index] = UInt8(ascii: "0") + UInt8(magnitude % 10)
      magnitude /= 10
    }
    if value < 0 { bytes[count] = UInt8(ascii: "-") }
    count += length
  }

  /// The most bytes `write(decimal:)` writes: `Int.min` is 20 characters.
  static let decimalLength = 20
}

extension ByteBuffer {
  /// Reserves `capacity` bytes, lets `body` write at most that many, and keeps what it wrote.
  @discardableResult
  mutating func writeReserved(capacity: Int, _ body: (inout ReservedWriter) -> Void) -> Int {
    writeWithUnsafeMutableBytes(minimumWritableBytes: capacity) { free in
      var writer = ReservedWriter(UnsafeMutableRawBufferPointer(rebasing: free[..<capacity]))
      body(&writer)
      return writer.count
    }
  }

  /// Appends `value` in decimal, in place and without making a string.
  @discardableResult
  mutating func writeDecimal(_ value: Int) -> Int {
    writeReserved(capacity: ReservedWriter.decimalLength) { $0.write(decimal: value) }
  }
}
