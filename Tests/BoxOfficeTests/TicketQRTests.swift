import BoxOffice
import Foundation
import FoyerCore
import FoyerTestSupport
import Testing

/// Issue #17 item 2: every ticket is a QR symbol, proved by a real decoder: the SVG BoxOffice
/// serves → a raster (`rsvg-convert`) → `zbarimg` gives back exactly the code.
@Suite(.timeLimit(.minutes(3))) struct TicketQRTests {
  /// What `zbarimg` reads from an SVG, through `rsvg-convert`.
  static func decode(svg: String) throws -> String {
    guard let rsvg = findExecutable("rsvg-convert"), let zbar = findExecutable("zbarimg") else {
      throw TestServiceError("rsvg-convert and zbarimg are needed (make test installs librsvg2-bin and zbar-tools)")
    }
    let directory = FileManager.default.temporaryDirectory.appendingPathComponent("qr-\(UUID().uuidString)")
    try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
    defer { try? FileManager.default.removeItem(at: directory) }
    let svgFile = directory.appendingPathComponent("ticket.svg")
    let pngFile = directory.appendingPathComponent("ticket.png")
    try svg.write(to: svgFile, atomically: true, encoding: .utf8)
    let raster = try runToEnd(rsvg, [svgFile.path, "-o", pngFile.path])
    guard raster.status == 0 else { throw TestServiceError("rsvg-convert: \(raster.output)") }
    // Standard output alone: zbarimg also says on standard error that it found no D-Bus.
    let process = Process()
    process.executableURL = URL(fileURLWithPath: zbar)
    process.arguments = ["--raw", "-q", "-Sdisable", "-Sqrcode.enable", pngFile.path]
    let output = Pipe()
    process.standardOutput = output
    process.standardError = FileHandle.nullDevice
    try process.run()
    let data = output.fileHandleForReading.readDataToEndOfFile()
    process.waitUntilExit()
    guard process.terminationStatus == 0 else { throw TestServiceError("zbarimg found no code (\(process.terminationStatus))") }
    return String(decoding: data, as: UTF8.self).trimmingCharacters(in: .whitespacesAndNewlines)
  }

  @Test func aSoldTicketsQRSymbolDecodesToItsCode() async throws {
    let box = try await TestBoxOffice.start()
    defer { Task { await box.stop() } }
    let pass = box.pass()
    let order = try await box.sell(2, pass: pass)
    let orderID = try #require(order.json["id"] as? String)
    let tickets = try #require(order.json["tickets"] as? [[String: Any]])
    #expect(tickets.count == 2)
    for ticket in tickets {
      let id = try #require(ticket["id"] as? String)
      let reply = try await box.request("GET", "/orders/\(orderID)/tickets/\(id)/qr.svg", pass: pass)
      #expect(reply.status == 200)
      #expect(reply.headers["content-type"] == "image/svg+xml")
      #expect(try Self.decode(svg: reply.text) == ticket["code"] as? String)
    }
    // Someone else's pass, an unknown ticket, a malformed id: no symbol.
    let id = try #require(tickets.first?["id"] as? String)
    #expect(try await box.request("GET", "/orders/\(orderID)/tickets/\(id)/qr.svg", pass: box.pass()).status == 404)
    #expect(try await box.request("GET", "/orders/\(orderID)/tickets/\(UUID())/qr.svg", pass: pass).status == 404)
    #expect(try await box.request("GET", "/orders/\(orderID)/tickets/nope/qr.svg", pass: pass).status == 400)
    #expect(try await box.request("GET", "/orders/\(orderID)/tickets/\(id)/qr.svg").status == 401)
  }

  @Test func everyCodeLengthSurvivesTheRoundTrip() throws {
    // Seat ids from 1 to 13 digits and key ids from 1 to 64 characters: codes of 101 to 176
    // characters, and so several QR versions.
    var lengths: Set<Int> = []
    for kid in ["k", "demo-2026", String(repeating: "K", count: 64)] {
      let codes = TicketCodes(keyRing: try KeyRing([SigningKey(id: kid, secret: Array(repeating: 6, count: 32))]))
      for digits in [1, 4, 7, 13] {
        let seat = Int64(String(repeating: "9", count: digits))!
        let code = codes.code(ticket: UUID(), seat: seat)
        lengths.insert(code.utf8.count)
        let svg = try #require(TicketCodes.qrSVG(code))
        let decoded = try Self.decode(svg: svg)
        #expect(decoded == code, "\(code.utf8.count) characters: read \(decoded.debugDescription)")
      }
    }
    #expect(lengths.count >= 8)
  }
}
