extension Collection<UInt8> {
  /// `starts(with: text.utf8)`, through the string's contiguous UTF-8: the generic version
  /// walks the `String.UTF8View` one checked element at a time, which was 0.5% of the proxy
  /// loop (room prefixes, the gateway's cookie names, `/_foyer/`).
  func hasPrefix(utf8 text: String) -> Bool {
    text.utf8.withContiguousStorageIfAvailable { hasPrefix($0) } ?? starts(with: text.utf8)
  }

  /// `elementsEqual(text.utf8)`, the same way (room ids, methods).
  func equals(utf8 text: String) -> Bool {
    text.utf8.withContiguousStorageIfAvailable { count == $0.count && hasPrefix($0) }
      ?? elementsEqual(text.utf8)
  }

  /// `starts(with:)` on a buffer of bytes.
  func hasPrefix(_ prefix: UnsafeBufferPointer<UInt8>) -> Bool {
    var index = startIndex
    for byte in prefix {
      guard index != endIndex, self[index] == byte else { return false }
      formIndex(after: &index)
    }
    return true
  }

  /// `hasPrefix(utf8:)` with ASCII letters compared without case (room path prefixes: an
  /// upstream may route `/EVENTS` as `/events`).
  func hasPrefixIgnoringCase(utf8 text: String) -> Bool {
    let length = text.utf8.count
    return count >= length && ForwardingHeaders.equalsIgnoringCase(prefix(length), text.utf8)
  }
}
