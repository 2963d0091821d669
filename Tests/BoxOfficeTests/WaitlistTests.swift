import BoxOffice
import Foundation
import FoyerCore
import FoyerTestSupport
import PostgresNIO
import Testing

/// Issue #17 item 5: a sold-out event's waitlist, against the real BoxOffice and PostgreSQL.
@Suite(.timeLimit(.minutes(3))) struct WaitlistTests {
  static func join(_ box: TestBoxOffice, seats: Int, pass: String) async throws -> HTTPReply {
    try await box.request("POST", "/events/\(box.event.id)/waitlist", pass: pass, body: #"{"seats":\#(seats)}"#)
  }

  static func claim(_ box: TestBoxOffice, _ entry: String, buyer: String, key: String = UUID().uuidString)
    async throws -> HTTPReply
  {
    try await box.request(
      "POST", "/waitlist/\(entry)/checkout", headers: ["BoxOffice-Buyer": buyer, "Idempotency-Key": key],
      body: CheckoutTests.good)
  }

  @Test func freedSeatsAreOfferedInWaitlistOrder() async throws {
    let box = try await TestBoxOffice.start(
      sections: [EventSpec.Section(name: "Box", rows: 1, seatsPerRow: 4, priceCents: 1_000)])
    defer { Task { await box.stop() } }
    // Seats on sale: no waitlist yet.
    let early = try await Self.join(box, seats: 1, pass: box.pass())
    #expect(early.status == 409 && early.json["error"] as? String == "not_sold_out")
    let (a, b) = (box.pass(), box.pass())
    let orderA = try #require(try await box.sell(2, pass: a).json["id"] as? String)
    let orderB = try #require(try await box.sell(2, pass: b).json["id"] as? String)

    // Sold out: three join, in order; each gets a buyer credential to follow the offer with.
    var entries: [(id: String, buyer: String)] = []
    for seats in [2, 1, 2] {
      let joined = try await Self.join(box, seats: seats, pass: box.pass())
      #expect(joined.status == 201 && joined.json["status"] as? String == "waiting")
      #expect(joined.json["position"] as? Int == entries.count + 1)
      entries.append((try #require(joined.json["id"] as? String), try #require(joined.headers["boxoffice-buyer"])))
    }
    let (c, d, e) = (entries[0], entries[1], entries[2])
    #expect(try await Self.join(box, seats: 7, pass: box.pass()).json["error"] as? String == "invalid_seats")
    // One place per buyer and event.
    let again = try await box.request(
      "POST", "/events/\(box.event.id)/waitlist", headers: ["Foyer-Pass": box.pass()], body: #"{"seats":1}"#)
    #expect(again.status == 201)
    let twice = try await box.request(
      "POST", "/events/\(box.event.id)/waitlist", pass: a, body: #"{"seats":1}"#)
    #expect(twice.status == 201)
    #expect(try await Self.join(box, seats: 1, pass: a).json["error"] as? String == "already_waiting")

    // A cancels: its two seats are offered to C, the head of the line, in the same transaction.
    #expect(try await box.request("POST", "/orders/\(orderA)/cancel", pass: a).status == 200)
    let offered = try await box.request("GET", "/waitlist/\(c.id)", headers: ["BoxOffice-Buyer": c.buyer])
    #expect(offered.json["status"] as? String == "offered")
    let offer = try #require(offered.json["offer"] as? [String: Any])
    #expect((offer["seats"] as? [Any])?.count == 2 && offer["totalCents"] as? Int == 2_000)
    #expect(try await box.integers("SELECT count(*) FROM seats WHERE status = 'available'") == [0])
    // Nobody else can see or take it.
    #expect(try await box.request("GET", "/waitlist/\(c.id)", headers: ["BoxOffice-Buyer": d.buyer]).status == 404)
    #expect(try await Self.claim(box, c.id, buyer: d.buyer).status == 404)
    #expect(try await Self.claim(box, d.id, buyer: d.buyer).json["error"] as? String == "not_offered")
    // C buys it, outside the room (no pass); a retry answers the same order.
    let bought = try await Self.claim(box, c.id, buyer: c.buyer, key: "c-1")
    #expect(bought.status == 201, "\(bought.text)")
    #expect(try await Self.claim(box, c.id, buyer: c.buyer, key: "c-1").json["id"] as? String == bought.json["id"] as? String)
    let claimed = try await box.request("GET", "/waitlist", headers: ["BoxOffice-Buyer": c.buyer])
    #expect(((claimed.json["entries"] as? [[String: Any]])?.first)?["status"] as? String == "claimed")

    // B cancels: D (one seat) is offered one; E wants two and only one is left: E waits, and
    // nobody behind E is offered the free seat (it stays on sale).
    #expect(try await box.request("POST", "/orders/\(orderB)/cancel", pass: b).status == 200)
    #expect(try await box.request("GET", "/waitlist/\(d.id)", headers: ["BoxOffice-Buyer": d.buyer]).json["status"] as? String == "offered")
    let waiting = try await box.request("GET", "/waitlist/\(e.id)", headers: ["BoxOffice-Buyer": e.buyer])
    #expect(waiting.json["status"] as? String == "waiting" && waiting.json["position"] as? Int == 2)
    #expect(try await box.integers("SELECT count(*) FROM seats WHERE status = 'available'") == [1])
    // D leaves: its offered seat and the free one go to E.
    #expect(try await box.request("DELETE", "/waitlist/\(d.id)", headers: ["BoxOffice-Buyer": d.buyer]).status == 204)
    #expect(try await box.request("DELETE", "/waitlist/\(d.id)", headers: ["BoxOffice-Buyer": d.buyer]).status == 404)
    let eOffer = try await box.request("GET", "/waitlist/\(e.id)", headers: ["BoxOffice-Buyer": e.buyer])
    #expect(eOffer.json["status"] as? String == "offered")
    #expect(((eOffer.json["offer"] as? [String: Any])?["seats"] as? [Any])?.count == 2)
    #expect(try await box.integers("SELECT count(*) FROM seats WHERE status = 'available'") == [0])
  }

  @Test func anUnclaimedOfferPassesToTheNextInLine() async throws {
    let box = try await TestBoxOffice.start(
      waitlistOffer: .seconds(4), sections: [EventSpec.Section(name: "Box", rows: 1, seatsPerRow: 2, priceCents: 1_000)])
    defer { Task { await box.stop() } }
    let seller = box.pass()
    let order = try #require(try await box.sell(2, pass: seller).json["id"] as? String)
    let first = try await Self.join(box, seats: 2, pass: box.pass())
    let second = try await Self.join(box, seats: 2, pass: box.pass())
    let (firstID, secondID) = (try #require(first.json["id"] as? String), try #require(second.json["id"] as? String))
    let secondBuyer = try #require(second.headers["boxoffice-buyer"])
    #expect(try await box.request("POST", "/orders/\(order)/cancel", pass: seller).status == 200)
    // The first lets the offer run out; the expiry worker passes it to the second by itself.
    var status = ""
    // The first offer runs out after 4 s; the worker passes it on at its next pass (≤ 5 s).
    for _ in 0..<200 where status != "offered" {
      try await Task.sleep(for: .milliseconds(100))
      status = try await box.request("GET", "/waitlist/\(secondID)", headers: ["BoxOffice-Buyer": secondBuyer])
        .json["status"] as? String ?? ""
    }
    #expect(status == "offered")
    let firstBuyer = try #require(first.headers["boxoffice-buyer"])
    let lapsed = try await box.request("GET", "/waitlist/\(firstID)", headers: ["BoxOffice-Buyer": firstBuyer])
    #expect(lapsed.json["status"] as? String == "lapsed")
    #expect(try await Self.claim(box, firstID, buyer: firstBuyer).status == 410)
    #expect(try await Self.claim(box, secondID, buyer: secondBuyer).status == 201)
  }

  @Test func aThousandWaitingThroughCancellationsAndExpiries() async throws {
    let box = try await TestBoxOffice.start(
      holdAttemptsPerMinute: nil, waitlistOffer: .seconds(2),
      sections: [EventSpec.Section(name: "Hall", rows: 5, seatsPerRow: 20, priceCents: 1_500)])
    defer { Task { await box.stop() } }
    // Sold out in 50 orders of two seats.
    var orders: [(id: String, pass: String)] = []
    for _ in 0..<50 {
      let pass = box.pass()
      orders.append((try #require(try await box.sell(2, pass: pass).json["id"] as? String), pass))
    }
    // A thousand join, one or two seats each, in waves of 50 at once.
    var buyers: [String: String] = [:]
    for wave in 0..<20 {
      let joined = try await withThrowingTaskGroup(of: HTTPReply.self) { group in
        for _ in 0..<50 { group.addTask { try await Self.join(box, seats: Int.random(in: 1...2), pass: box.pass()) } }
        return try await group.reduce(into: [HTTPReply]()) { $0.append($1) }
      }
      for reply in joined {
        #expect(reply.status == 201, "wave \(wave): \(reply.text)")
        if let id = reply.json["id"] as? String { buyers[id] = reply.headers["boxoffice-buyer"] }
      }
    }
    #expect(buyers.count == 1_000)

    // Rounds: random orders cancelled; of the offers with time left, about half bought, the rest
    // let run out.
    var cancelled = 0
    for _ in 0..<6 {
      for _ in 0..<4 {
        let (id, pass) = orders.remove(at: Int.random(in: 0..<orders.count))
        #expect(try await box.request("POST", "/orders/\(id)/cancel", pass: pass).status == 200)
        cancelled += 1
      }
      var offered: [String] = []
      for try await id in try await box.server.postgres.query(
        """
        SELECT w.id FROM waitlist w JOIN holds h ON h.id = w.hold_id
        WHERE w.status = 'offered' AND h.expires_at > now() + interval '1 second'
        """
      ).decode(UUID.self) {
        offered.append(id.uuidString)
      }
      for id in offered where Bool.random() {
        let bought = try await Self.claim(box, id, buyer: try #require(buyers[id]))
        #expect(bought.status == 201, "\(bought.text)")
      }
      try await Task.sleep(for: .milliseconds(2_300))
    }
    try await box.server.waitlist.advance()

    // Strictly in waitlist order: offers were made as the line reads, and nobody still
    // waiting is ahead of anyone who was offered seats.
    #expect(
      try await box.integers(
        """
        SELECT count(*) FROM (
          SELECT place, lag(place) OVER (ORDER BY offered_at) AS before FROM waitlist WHERE offered_at IS NOT NULL
        ) offers WHERE place < before
        """) == [0])
    #expect(
      try await box.integers(
        """
        SELECT count(*) FROM waitlist w WHERE w.offered_at IS NOT NULL
          AND w.place > (SELECT min(place) FROM waitlist WHERE status = 'waiting')
        """) == [0])
    let offers = try await box.integers("SELECT count(*) FROM waitlist WHERE offered_at IS NOT NULL")[0]
    #expect(offers > 24, "\(offers) offers")
    // Every freed seat is offered or sold: what is free is less than the head of the line wants.
    #expect(
      try await box.integers(
        """
        SELECT count(*) FROM seats WHERE status = 'available'
          AND (SELECT count(*) FROM seats WHERE status = 'available')
            >= (SELECT seats FROM waitlist WHERE status = 'waiting' ORDER BY place LIMIT 1)
        """) == [0])
    // None sold twice: a sold seat has exactly one live ticket, any other none.
    #expect(
      try await box.integers(
        """
        SELECT count(*) FROM seats s
        WHERE (SELECT count(*) FROM tickets t WHERE t.seat_id = s.id AND t.live) <> (CASE WHEN s.status = 'sold' THEN 1 ELSE 0 END)
        """) == [0])
    // Every claimed place has its order; every offer was one hold for one place.
    #expect(
      try await box.integers(
        """
        SELECT count(*) FROM waitlist w WHERE w.status = 'claimed'
          AND NOT EXISTS (SELECT 1 FROM orders o WHERE o.hold_id = w.hold_id AND o.status = 'confirmed')
        """) == [0])
    #expect(try await box.integers("SELECT count(*) FROM orders WHERE status = 'cancelled'") == [Int64(cancelled)])
    #expect(try await CancelTests.auditChainsHold(box))
  }
}
