internal import HTTPWire
internal import NIOCore

#if canImport(Glibc)
internal import Glibc
#elseif canImport(Darwin)
internal import Darwin
#endif

/// Copies ranges of one head's bytes into a buffer, joining ranges that touch into one
/// write: the fields a proxy keeps are mostly consecutive lines, and each `writeBytes` pays
/// an exclusivity and a capacity check (ByteBuffer writes were 1.3% of the proxy loop in
/// `perf` when every field took four).
struct RunWriter {
  let bytes: UnsafeRawBufferPointer
  private var run = 0..<0

  init(_ bytes: UnsafeRawBufferPointer) { self.bytes = bytes }

  /// Queues `range` for copying; call `flush` before writing anything else to `out`.
  mutating func copy(_ range: Range<Int>, to out: inout ByteBuffer) {
    if !run.isEmpty && run.upperBound == range.lowerBound {
      run = run.lowerBound..<range.upperBound
    } else {
      flush(&out)
      run = range
    }
  }

  mutating func flush(_ out: inout ByteBuffer) {
    guard !run.isEmpty else { return }
    out.writeBytes(UnsafeRawBufferPointer(rebasing: bytes[run]))
    run = 0..<0
  }
}

extension RawHTTP {
  /// ASCII case-insensitive comparison of `bytes[range]` with a lowercase name: the one
  /// comparison both lanes use (`ForwardingHeaders.equalsLowercase`), over the range rebased
  /// to a buffer of its own. A `Slice` of the raw buffer, with its checked subscripts, made a
  /// proxied request about 0.5 µs slower (this runs for every field of every head).
  static func equals(
    _ bytes: UnsafeRawBufferPointer, _ range: Range<Int>, lowercase name: StaticString
  ) -> Bool {
    ForwardingHeaders.equalsLowercase(UnsafeRawBufferPointer(rebasing: bytes[range]), name)
  }
}

extension RawHTTP {
  /// `slice` without the spaces and tabs around it (a list element of a field value).
  static func trim(_ slice: Slice<UnsafeRawBufferPointer>) -> Range<Int> {
    var range = slice.startIndex..<slice.endIndex
    while let first = range.first, slice.base[first] == RawHTTP.space || slice.base[first] == RawHTTP.tab {
      range = range.dropFirst()
    }
    while let last = range.last, slice.base[last] == RawHTTP.space || slice.base[last] == RawHTTP.tab {
      range = range.dropLast()
    }
    return range
  }
}
