import BoxOffice
import Foundation
import FoyerCore
import FoyerGateway
import FoyerTestSupport
import Logging
import NIOCore
import NIOPosix
import PostgresNIO
import RedisNIO
import ServiceLifecycle
import Testing
import WaitingRoom

/// The visitor's journey and the operator's dashboard in a real headless Chromium: the
/// gateway in front of BoxOffice, both real, on a real Redis and PostgreSQL. Screenshots of
/// every step go to `test-artifacts/journey/` (look at them: they are what a visitor sees);
/// any console error or uncaught exception fails the test.
@Suite(.timeLimit(.minutes(3))) struct JourneyTests {
  static let artifacts = URL(fileURLWithPath: #filePath).deletingLastPathComponent()
    .appendingPathComponent("../../test-artifacts/journey").standardizedFileURL

  static let staffToken = "journey-staff-token-0123456789"

  /// Every ticket image on the page has loaded (a broken one has no natural width).
  static let ticketsLoaded =
    "document.querySelectorAll('.ticket img').length === 2 && Array.from(document.querySelectorAll('.ticket img')).every(function (i) { return i.complete && i.naturalWidth > 0; })"

  @Test func aVisitorWaitsBuysAndTheOperatorChangesTheRate() async throws {
    let keyRing = try KeyRing([SigningKey(id: "journey", secret: Array(repeating: 5, count: 32))])
    let adminToken = "journey-admin-token-0123456789"

    let room = "journey" + UUID().uuidString.prefix(6)

    // BoxOffice with a small hall behind the gateway; the pre-queue is open and the sale a
    // minute away, until the test opens it (below). A fixed few seconds raced Chromium's start
    // on a loaded machine: the visitor came after the start and never saw the countdown.
    let stack = try await OnSaleStack.start(
      room: room, keyRing: keyRing, adminToken: adminToken,
      sections: [EventSpec.Section(name: "Stalls", rows: 6, seatsPerRow: 12, priceCents: 4_200)],
      settings: RoomSettings(ratePerMinute: 600, maxActive: 50), startsIn: 60, staffToken: Self.staffToken)
    let (event, store, boxOffice, base, adminBase) = (
      stack.event, stack.store, stack.boxOffice, stack.base, stack.adminBase
    )

    let chromium = try Chromium.start()
    defer {
      Task {
        await chromium.stop()
        await stack.stop()
      }
    }
    let page = try await chromium.newPage()
    func shot(_ name: String) async throws {
      try await page.screenshot(to: Self.artifacts.appendingPathComponent(name + ".png"))
    }

    // 1. Before the sale: the waiting page with its countdown.
    try await page.navigate(base + "/events/\(event.id.uuidString.lowercased())")
    try await page.waitFor(
      "document.getElementById('countdown') && !document.getElementById('countdown-box').hidden")
    try await shot("1-waiting-room")
    // 2. The operator opens the sale a second from now; the page lets the visitor in by
    // itself; the seat map appears.
    let opensAt = Int64(Date().timeIntervalSince1970 * 1_000) + 1_000
    _ = try await store.update(room, changes: ["starts_at": String(opensAt)])
    try await page.waitFor("document.querySelector('svg.map circle')", timeout: .seconds(30))
    try await shot("2-seat-map")
    // 3. Two seats chosen, held, with a countdown.
    // Clicks go through the map's handler with the seat as target.
    for index in 0..<2 {
      try await page.evaluate(
        """
        (function () {
          var seat = document.querySelectorAll('svg.map circle[data-status="available"]')[\(index)];
          seat.dispatchEvent(new MouseEvent('click', {bubbles: true}));
        })()
        """)
    }
    try await page.waitFor("document.getElementById('hold') && !document.getElementById('hold').disabled")
    try await shot("3-seats-chosen")
    try await page.evaluate("document.getElementById('hold').click()")
    try await page.waitFor(
      "document.getElementById('countdown') && document.getElementById('countdown').textContent.length > 0")
    try await shot("4-hold")
    // 4. Pay (double click: one charge) → confirmation with two ticket codes.
    try await page.evaluate("var b = document.getElementById('paybutton'); b.click(); b.click(); true")
    try await page.waitFor("document.body.innerText.indexOf('Thank you') >= 0")
    // Each ticket as a QR symbol: a scanner reads the codes off the screen.
    try await page.waitFor(Self.ticketsLoaded)
    try await shot("5-confirmation")
    let codes = try await page.evaluate(
      "Array.from(document.querySelectorAll('.ticket code')).map(function (c) { return c.textContent; })") as? [String] ?? []
    #expect(codes.count == 2)
    let read = try QRCodes.decode(png: Self.artifacts.appendingPathComponent("5-confirmation.png"))
    #expect(Set(read) == Set(codes) && read.count == 2, "read \(read), shown \(codes)")
    // 5. The pass went back with the checkout; the buyer's own credential shows their orders
    // and tickets outside the room, with no queue.
    try await page.navigate(base + "/orders")
    try await page.waitFor(Self.ticketsLoaded)
    try await shot("6-my-orders")
    // 6. At the door: the staff page lets the ticket in once, then says it was used.
    let door = try await chromium.newPage()
    try await door.navigate(base + "/checkin")
    try await door.waitFor("document.getElementById('setup') && !document.getElementById('setup').hidden")
    try await door.evaluate(
      """
      document.getElementById('token').value = '\(Self.staffToken)';
      document.getElementById('gate').value = 'North 1';
      document.getElementById('setup').requestSubmit(); true
      """)
    try await door.waitFor("!document.getElementById('scan').hidden")
    func scan(_ code: String) async throws {
      try await door.evaluate(
        "document.getElementById('code').value = \(String(decoding: try JSONEncoder().encode(code), as: UTF8.self)); document.getElementById('scan').requestSubmit(); true")
    }
    let scanned = try #require(read.first)
    try await scan(scanned)
    try await door.waitFor("document.getElementById('answer').className === 'go'")
    try await door.screenshot(to: Self.artifacts.appendingPathComponent("7-checkin-valid.png"))
    #expect((try await door.evaluate("document.getElementById('answer').innerText") as? String)?.contains("Valid") == true)
    try await scan(scanned)
    try await door.waitFor(
      "document.getElementById('answer').className === 'stop' && document.getElementById('answer').innerText.indexOf('Already used') >= 0")
    try await door.screenshot(to: Self.artifacts.appendingPathComponent("8-checkin-used.png"))
    // My orders says so, and offers no cancelling any more.
    try await page.navigate(base + "/orders")
    try await page.waitFor(
      "document.body.innerText.indexOf('used at the door') >= 0 && document.body.innerText.indexOf('no longer cancellable') >= 0")
    #expect(try await page.evaluate("document.querySelectorAll('[data-cancel]').length") as? Int == 0)
    try await shot("9-my-orders-used")
    var charges: [Int] = []
    for try await count in try await boxOffice.postgres.query(
      "SELECT count(*)::int FROM payments WHERE kind = 'charge'"
    )
    .decode(Int.self) {
      charges.append(count)
    }
    #expect(charges == [1])

    // 7. The operator's dashboard: live numbers, then a new rate applied to every gateway.
    let dashboard = try await chromium.newPage()
    try await dashboard.navigate(adminBase + "/#token=\(adminToken)")
    try await dashboard.waitFor("document.getElementById('room-\(room)')")
    try await dashboard.evaluate(
      """
      (function () {
        var form = document.querySelector('#room-\(room) form');
        form.rate_per_minute.value = 1234;
        form.rate_per_minute.dispatchEvent(new Event('input', {bubbles: true}));
        form.querySelector('button').click();
      })()
      """)
    try await dashboard.waitFor("document.querySelector('#room-\(room) .result').textContent === 'Applied.'")
    try await dashboard.screenshot(to: Self.artifacts.appendingPathComponent("10-dashboard.png"))
    #expect(try await store.settings(room).ratePerMinute == 1_234)

    // The waiting page polled as it was told: the poll discipline never refused it.
    let metrics = try await httpRequest(
      "GET", adminBase + "/metrics", headers: ["Authorization": "Bearer \(adminToken)"])
    #expect(metrics.status == 200)
    #expect(metrics.text.contains("foyer_status_polls_total"))
    #expect(metrics.text.contains(#"foyer_refused_requests_total{reason="poll_too_soon"} 0"#))

    #expect(chromium.consoleErrors.isEmpty, "\(chromium.consoleErrors)")
  }
}

/// A buyer cancels from "My orders" in a real Chromium: the confirmation step, then the order
/// shown cancelled with its refund, its tickets revoked and its seats back on sale.
@Suite(.timeLimit(.minutes(3))) struct CancelJourneyTests {
  /// A stack with one small section, and a browser.
  static func start(_ name: String, seats: Int) async throws -> (OnSaleStack, Chromium, KeyRing) {
    let keyRing = try KeyRing([SigningKey(id: name, secret: Array(repeating: 4, count: 32))])
    let stack = try await OnSaleStack.start(
      room: name + UUID().uuidString.prefix(6), keyRing: keyRing, adminToken: "\(name)-admin-token-0123456789",
      sections: [EventSpec.Section(name: "Stalls", rows: 1, seatsPerRow: seats, priceCents: 3_000)],
      settings: RoomSettings())
    return (stack, try Chromium.start(), keyRing)
  }

  static func pass(_ stack: OnSaleStack, _ keyRing: KeyRing) throws -> String {
    try TokenSigner(keyRing: keyRing).sign(
      Token(kind: .pass, room: stack.room, visitor: .random(), time: Int64(Date().timeIntervalSince1970) + 600))
  }

  /// Two seats bought straight from BoxOffice with `pass`: the checkout's answer.
  static func buyTwo(_ stack: OnSaleStack, pass: String) async throws -> HTTPReply {
    let hold = try await httpRequest(
      "POST", stack.boxOfficeBase + "/events/\(stack.event.id)/holds",
      headers: ["Foyer-Pass": pass, "Content-Type": "application/json"], body: Data(#"{"section":"Stalls","quantity":2}"#.utf8))
    let holdID = try #require(hold.json["id"] as? String, "\(hold.text)")
    let order = try await httpRequest(
      "POST", stack.boxOfficeBase + "/holds/\(holdID)/checkout",
      headers: ["Foyer-Pass": pass, "Content-Type": "application/json", "Idempotency-Key": UUID().uuidString],
      body: Data(#"{"card":{"number":"4242424242424242"}}"#.utf8))
    #expect(order.status == 201, "\(order.text)")
    return order
  }

  static func setCookie(_ chromium: Chromium, _ name: String, _ value: String) async throws {
    try await chromium.send(
      "Storage.setCookies",
      ["cookies": [["name": name, "value": value, "domain": "127.0.0.1", "path": "/", "httpOnly": true]]])
  }

  @Test func aBuyerCancelsFromMyOrders() async throws {
    let (stack, chromium, keyRing) = try await Self.start("cancel", seats: 4)
    defer {
      Task {
        await chromium.stop()
        await stack.stop()
      }
    }
    // Bought straight from BoxOffice with a pass; the browser then holds only the buyer cookie.
    let order = try await Self.buyTwo(stack, pass: try Self.pass(stack, keyRing))
    try await Self.setCookie(chromium, "boxoffice_buyer", try #require(order.headers["boxoffice-buyer"]))
    let page = try await chromium.newPage()
    try await page.navigate(stack.boxOfficeBase + "/orders")
    try await page.waitFor(JourneyTests.ticketsLoaded)
    try await page.evaluate("document.querySelector('[data-cancel]').click(); true")
    // The confirmation step: nothing happens until it is answered.
    try await page.waitFor("document.querySelector('[data-yes]')")
    try await page.screenshot(to: JourneyTests.artifacts.appendingPathComponent("11-cancel-confirm.png"))
    try await page.evaluate("document.querySelector('[data-yes]').click(); true")
    try await page.waitFor(
      "document.querySelector('.badge.cancelled') && document.body.innerText.indexOf('Refund of') >= 0")
    try await page.screenshot(to: JourneyTests.artifacts.appendingPathComponent("12-cancelled.png"))
    #expect(try await page.evaluate("document.querySelectorAll('.ticket.revoked').length") as? Int == 2)
    #expect(try await page.evaluate("document.querySelectorAll('[data-cancel]').length") as? Int == 0)
    var available: [Int] = []
    for try await count in try await stack.boxOffice.postgres.query(
      "SELECT count(*)::int FROM seats WHERE status = 'available'"
    ).decode(Int.self) {
      available.append(count)
    }
    #expect(available == [4])
    #expect(chromium.consoleErrors.isEmpty, "\(chromium.consoleErrors)")
  }

  /// A sold-out event in Chromium: the shop offers the waitlist, My orders shows the place in
  /// line, then (an order cancelled elsewhere) the offer with its countdown, bought there.
  @Test func aWaitingBuyerJoinsAndBuysTheOffer() async throws {
    let (stack, chromium, keyRing) = try await Self.start("wait", seats: 2)
    defer {
      Task {
        await chromium.stop()
        await stack.stop()
      }
    }
    // Someone else buys the whole hall.
    let seller = try Self.pass(stack, keyRing)
    let orderID = try #require(try await Self.buyTwo(stack, pass: seller).json["id"] as? String)

    // The visitor, with a pass, finds the event sold out and joins its waitlist.
    try await Self.setCookie(chromium, "foyer_p_\(stack.room)", try Self.pass(stack, keyRing))
    let page = try await chromium.newPage()
    try await page.navigate(stack.boxOfficeBase + "/events/\(stack.event.id.uuidString.lowercased())")
    try await page.waitFor("document.getElementById('waitlist')")
    try await page.screenshot(to: JourneyTests.artifacts.appendingPathComponent("13-sold-out.png"))
    try await page.evaluate(
      "document.getElementById('wlseats').value = '2'; document.getElementById('waitlist').requestSubmit(); true")
    try await page.waitFor("document.body.innerText.indexOf('number 1 on the waitlist') >= 0")
    try await page.navigate(stack.boxOfficeBase + "/orders")
    try await page.waitFor("document.body.innerText.indexOf('number 1 in line') >= 0")

    // Seats come back; the offer appears with its countdown and is bought there.
    let cancelled = try await httpRequest(
      "POST", stack.boxOfficeBase + "/orders/\(orderID)/cancel", headers: ["Foyer-Pass": seller])
    #expect(cancelled.status == 200)
    try await page.navigate(stack.boxOfficeBase + "/orders")
    try await page.waitFor("document.querySelector('[data-pay]') && document.querySelector('[data-until]').textContent.length > 0")
    try await page.screenshot(to: JourneyTests.artifacts.appendingPathComponent("14-waitlist-offer.png"))
    try await page.evaluate("document.querySelector('[data-pay]').requestSubmit(); true")
    try await page.waitFor("document.body.innerText.indexOf('bought: see your order above') >= 0")
    try await page.waitFor(JourneyTests.ticketsLoaded)
    try await page.screenshot(to: JourneyTests.artifacts.appendingPathComponent("15-waitlist-bought.png"))
    #expect(chromium.consoleErrors.isEmpty, "\(chromium.consoleErrors)")
  }
}
