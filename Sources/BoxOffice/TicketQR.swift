internal import CQRencode

/// A ticket code as a QR symbol, drawn as SVG: libqrencode chooses the version and the
/// modules (error correction M, byte mode); this only draws them, one square per dark module,
/// with the four-module quiet zone scanners need, black on white.
enum TicketQR {
  /// `moduleSize` pixels per module at the SVG's natural size (it scales: a phone at the
  /// gate shows it full width). `nil` only if the text cannot be encoded (far longer than a
  /// ticket code).
  static func svg(_ text: String, moduleSize: Int = 8) -> String? {
    guard let symbol = QRcode_encodeString(text, 0, QR_ECLEVEL_M, QR_MODE_8, 1) else { return nil }
    defer { QRcode_free(symbol) }
    let width = Int(symbol.pointee.width)
    let modules = symbol.pointee.data!
    let quiet = 4
    let size = width + 2 * quiet
    var path = ""
    path.reserveCapacity(width * width * 6)
    for y in 0..<width {
      var x = 0
      while x < width {
        // Bit 0 of each byte is the module's colour; a run of dark modules is one rectangle.
        guard modules[y * width + x] & 1 == 1 else {
          x += 1
          continue
        }
        var run = 1
        while x + run < width && modules[y * width + x + run] & 1 == 1 { run += 1 }
        path += "M\(x + quiet) \(y + quiet)h\(run)v1h-\(run)z"
        x += run
      }
    }
    let pixels = size * moduleSize
    return """
      <svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 \(size) \(size)" width="\(pixels)" height="\(pixels)" \
      shape-rendering="crispEdges"><rect width="\(size)" height="\(size)" fill="#fff"/><path fill="#000" d="\(path)"/></svg>
      """
  }
}
