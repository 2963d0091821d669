import BoxOffice
import Foundation
import FoyerCore
import FoyerTestSupport
import Testing

/// Issue #17 item 6: a checkout hands the buyer their own credential, and with it alone (the
/// pass given back) they see their orders and tickets, and nobody else's.
@Suite(.timeLimit(.minutes(3))) struct BuyerAccessTests {
  @Test func checkoutGivesTheBuyerACredentialForTheirOrdersOnly() async throws {
    let box = try await TestBoxOffice.start()
    defer { Task { await box.stop() } }
    let order = try await box.sell(2, pass: box.pass())
    #expect(order.status == 201)
    let id = try #require(order.json["id"] as? String)
    let token = try #require(order.headers["boxoffice-buyer"])
    let cookie = try #require(order.headers["set-cookie"])
    #expect(cookie.hasPrefix("boxoffice_buyer=\(token);"))
    #expect(cookie.contains("HttpOnly") && cookie.contains("SameSite=Lax") && cookie.contains("Path=/"))

    // No pass at all: the header, or the cookie, is enough.
    let byHeader = try await box.request("GET", "/orders", headers: ["BoxOffice-Buyer": token])
    #expect(byHeader.status == 200)
    #expect(((byHeader.json["orders"] as? [[String: Any]])?.first)?["id"] as? String == id)
    let byCookie = try await box.request("GET", "/orders/\(id)", headers: ["Cookie": "boxoffice_buyer=\(token)"])
    #expect(byCookie.status == 200 && byCookie.json["id"] as? String == id)
    let ticket = try #require((byCookie.json["tickets"] as? [[String: Any]])?.first?["id"] as? String)
    let qr = try await box.request(
      "GET", "/orders/\(id)/tickets/\(ticket)/qr.svg", headers: ["Cookie": "boxoffice_buyer=\(token)"])
    #expect(qr.status == 200 && qr.headers["content-type"] == "image/svg+xml")

    // Another buyer sees nothing of it, and cannot cancel it.
    let other = try #require(try await box.sell(1, pass: box.pass()).headers["boxoffice-buyer"])
    #expect(try await box.request("GET", "/orders/\(id)", headers: ["BoxOffice-Buyer": other]).status == 404)
    let theirs = try await box.request("GET", "/orders", headers: ["BoxOffice-Buyer": other])
    #expect((theirs.json["orders"] as? [[String: Any]])?.contains { $0["id"] as? String == id } == false)
    #expect(try await box.request("POST", "/orders/\(id)/cancel", headers: ["BoxOffice-Buyer": other]).status == 404)

    // Tampered, expired, or a pass in its place: refused, not treated as absent.
    var tampered = Array(token.utf8)
    tampered[3] = tampered[3] == UInt8(ascii: "A") ? UInt8(ascii: "B") : UInt8(ascii: "A")
    let signer = try TokenSigner(keyRing: TestBoxOffice.keyRing)
    let now = Int64(Date().timeIntervalSince1970)
    let visitor = String(token.split(separator: ".")[1])
    let expired = BuyerAccess(lifetime: .seconds(60), secureCookie: false).token(
      visitor: visitor, now: now - 120, signer: signer)
    for bad in [String(decoding: tampered, as: UTF8.self), expired, box.pass(), token + "x", "b1.\(visitor).9999999999"] {
      let reply = try await box.request("GET", "/orders", headers: ["BoxOffice-Buyer": bad])
      #expect(reply.status == 401 && reply.json["error"] as? String == "invalid_buyer_credential", "\(bad)")
    }
    // Nothing at all: 401 saying what is missing.
    #expect(try await box.request("GET", "/orders").json["error"] as? String == "no_buyer")
    // And the credential is no pass: it takes no seats.
    let hold = try await box.request(
      "POST", "/events/\(box.event.id)/holds", headers: ["Foyer-Pass": token], body: #"{"seatIds":[40]}"#)
    #expect(hold.status == 401)
  }
}
