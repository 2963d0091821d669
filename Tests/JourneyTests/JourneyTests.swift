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
      settings: RoomSettings(ratePerMinute: 600, maxActive: 50), startsIn: 60)
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
    try await shot("5-confirmation")
    let codes = try await page.evaluate("document.querySelectorAll('code').length") as? Int
    #expect(codes == 2)
    var charges: [Int] = []
    for try await count in try await boxOffice.postgres.query(
      "SELECT count(*)::int FROM payments WHERE kind = 'charge'"
    )
    .decode(Int.self) {
      charges.append(count)
    }
    #expect(charges == [1])

    // 5. The operator's dashboard: live numbers, then a new rate applied to every gateway.
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
    try await dashboard.screenshot(to: Self.artifacts.appendingPathComponent("6-dashboard.png"))
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
