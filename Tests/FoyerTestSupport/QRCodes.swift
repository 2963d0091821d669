public import Foundation

/// Reads QR symbols with a real decoder, `zbarimg` (Debian `zbar-tools`): what a door
/// scanner would see in an image.
public enum QRCodes {
  /// Every QR symbol's text in a PNG, one per symbol found (empty: none).
  public static func decode(png: URL) throws -> [String] {
    guard let zbar = findExecutable("zbarimg") else {
      throw TestServiceError("zbarimg is needed (make test installs zbar-tools)")
    }
    // Standard output alone: zbarimg also says on standard error that it found no D-Bus.
    let (status, output) = try runToEnd(
      zbar, ["--raw", "-q", "-Sdisable", "-Sqrcode.enable", png.path], separateErrors: true)
    // Status 4: no symbol found.
    guard status == 0 || status == 4 else { throw TestServiceError("zbarimg failed (\(status))") }
    return output.split(separator: "\n").map {
      $0.trimmingCharacters(in: .whitespaces)
    }.filter { !$0.isEmpty }
  }

  /// The symbols of an SVG, rasterised by `rsvg-convert` (Debian `librsvg2-bin`).
  public static func decode(svg: String) throws -> [String] {
    guard let rsvg = findExecutable("rsvg-convert") else {
      throw TestServiceError("rsvg-convert is needed (make test installs librsvg2-bin)")
    }
    let directory = FileManager.default.temporaryDirectory.appendingPathComponent("qr-\(UUID().uuidString)")
    try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
    defer { try? FileManager.default.removeItem(at: directory) }
    let svgFile = directory.appendingPathComponent("ticket.svg")
    let pngFile = directory.appendingPathComponent("ticket.png")
    try svg.write(to: svgFile, atomically: true, encoding: .utf8)
    let raster = try runToEnd(rsvg, [svgFile.path, "-o", pngFile.path])
    guard raster.status == 0 else { throw TestServiceError("rsvg-convert: \(raster.output)") }
    return try decode(png: pngFile)
  }
}
