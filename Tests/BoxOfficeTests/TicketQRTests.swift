import BoxOffice
import Foundation
import FoyerCore
import FoyerTestSupport
import Testing

/// Issue #17 item 2: every ticket is a QR symbol, proved by a real decoder: the SVG BoxOffice
/// serves → a raster (`rsvg-convert`) → `zbarimg` gives back exactly the code.
@Suite(.timeLimit(.minutes(3))) struct TicketQRTests {
  /// What `zbarimg` reads from an SVG: exactly one symbol's text.
  static func decode(svg: String) throws -> String {
    let found = try QRCodes.decode(svg: svg)
    guard found.count == 1 else { throw TestServiceError("zbarimg found \(found.count) symbols") }
    return found[0]
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
