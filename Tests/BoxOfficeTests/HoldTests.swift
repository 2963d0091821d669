import BoxOffice
import Foundation
import FoyerCore
import FoyerTestSupport
import Testing

@Suite(.timeLimit(.minutes(3))) struct HoldTests {
  @Test func fiveHundredClientsOneSeatExactlyOneWins() async throws {
    let box = try await TestBoxOffice.start()
    defer { Task { await box.stop() } }
    let seat = try await box.seatIds()[0]
    let statuses = try await withThrowingTaskGroup(of: Int.self) { tasks in
      for _ in 0..<500 {
        tasks.addTask {
          try await box.request(
            "POST", "/events/\(box.event.id)/holds", pass: box.pass(), body: #"{"seatIds":[\#(seat)]}"#
          ).status
        }
      }
      return try await tasks.reduce(into: [Int: Int]()) { $0[$1, default: 0] += 1 }
    }
    #expect(statuses == [201: 1, 409: 499])
    #expect(try await box.integers("SELECT count(*) FROM holds WHERE status = 'active'") == [1])
  }

  /// One pass may not hoard the hall (#16): 200 concurrent one-seat holds by one visitor
  /// give it exactly the cap, and the rest are told why.
  @Test func oneVisitorHoldsAtMostTheSeatCap() async throws {
    // 200 attempts at once by one visitor: the attempt pacing is off here (its own test below).
    let box = try await TestBoxOffice.start(
      holdAttemptsPerMinute: nil,
      sections: [EventSpec.Section(name: "Floor", rows: 10, seatsPerRow: 20, priceCents: 5_000)])
    defer { Task { await box.stop() } }
    let seats = try await box.seatIds()
    let visitor = VisitorID.random()
    let pass = box.pass(visitor)
    let replies = try await withThrowingTaskGroup(of: TestBoxOffice.Reply.self) { tasks in
      for seat in seats.prefix(200) {
        tasks.addTask {
          try await box.request(
            "POST", "/events/\(box.event.id)/holds", pass: pass, body: #"{"seatIds":[\#(seat)]}"#)
        }
      }
      return try await tasks.reduce(into: []) { $0.append($1) }
    }
    let held = replies.filter { $0.status == 201 }
    let refused = replies.filter { $0.status == 409 }
    #expect(held.count == 8, "\(held.count) holds of 200")
    #expect(refused.count == 192 && refused.allSatisfy { $0.json["error"] as? String == "limit_reached" })
    #expect(refused.first?.text.contains("8 seats") == true, "\(refused.first?.text ?? "")")
    #expect(
      try await box.integers(
        "SELECT coalesce(sum(cardinality(seat_ids)), 0)::bigint FROM holds WHERE status = 'active' AND visitor = '\(visitor)'"
      ) == [8])
    // A released hold frees its seat for the same visitor's next hold; another visitor is
    // not counted against this one.
    let first = try #require(held.first?.json["id"] as? String)
    #expect(try await box.request("DELETE", "/holds/\(first)", pass: pass).status == 204)
    let again = try await box.request(
      "POST", "/events/\(box.event.id)/holds", pass: pass, body: #"{"section":"Floor","quantity":1}"#)
    #expect(again.status == 201, "\(again.text)")
    let over = try await box.request(
      "POST", "/events/\(box.event.id)/holds", pass: pass, body: #"{"section":"Floor","quantity":1}"#)
    #expect(over.status == 409 && over.json["error"] as? String == "limit_reached")
    let other = try await box.request(
      "POST", "/events/\(box.event.id)/holds", pass: box.pass(), body: #"{"section":"Floor","quantity":6}"#)
    #expect(other.status == 201, "\(other.text)")
  }

  /// #16 item 7: one pass cannot turn seat conflicts into a database load test. Past the
  /// burst, attempts are answered 429 with Retry-After before any claim runs; another visitor
  /// is not affected.
  @Test func holdAttemptsArePacedPerVisitor() async throws {
    let box = try await TestBoxOffice.start(holdAttemptsPerMinute: 5)
    defer { Task { await box.stop() } }
    let seats = try await box.seatIds()
    // Someone else holds the seat this visitor keeps trying for.
    #expect(
      try await box.request(
        "POST", "/events/\(box.event.id)/holds", pass: box.pass(), body: #"{"seatIds":[\#(seats[0])]}"#
      ).status == 201)
    let pass = box.pass()
    let claimsBefore = try await box.integers("SELECT count(*)::bigint FROM holds")
    var statuses: [Int] = []
    var refusal: TestBoxOffice.Reply?
    let started = ContinuousClock.now
    for _ in 0..<8 {
      let reply = try await box.request(
        "POST", "/events/\(box.event.id)/holds", pass: pass, body: #"{"seatIds":[\#(seats[0])]}"#)
      statuses.append(reply.status)
      if reply.status == 429 { refusal = reply }
    }
    // One attempt comes back every 12 s: on a machine busy with every other suite the eight
    // can take that long, and then one more is let through (and answered 409).
    let refills = Int((ContinuousClock.now - started).components.seconds / 12)
    #expect(Array(statuses.prefix(5)) == [409, 409, 409, 409, 409], "\(statuses)")
    let refused = statuses.filter { $0 == 429 }.count
    #expect(refused >= 3 - refills && statuses.allSatisfy { $0 == 409 || $0 == 429 }, "\(statuses)")
    #expect(refills >= 1 || statuses[5] == 429, "\(statuses)")
    #expect(refusal?.json["error"] as? String == "too_many_attempts")
    #expect(refusal?.text.contains("5 hold attempts a minute") == true, "\(refusal?.text ?? "")")
    let retryAfter = Int(refusal?.headers["retry-after"] ?? "") ?? 0
    #expect((1...12).contains(retryAfter), "Retry-After \(retryAfter)")
    #expect(try await box.integers("SELECT count(*)::bigint FROM holds") == claimsBefore)
    // Another visitor holds at once.
    #expect(
      try await box.request(
        "POST", "/events/\(box.event.id)/holds", pass: box.pass(), body: #"{"seatIds":[\#(seats[1])]}"#
      ).status == 201)
    let metrics = try await box.request(
      "GET", "/metrics", headers: ["Authorization": "Bearer boxoffice-test-admin-token"])
    #expect(metrics.text.contains("boxoffice_hold_attempts_refused_total \(refused)\n"))
  }

  @Test func overlappingHoldsNeverShareASeatAndTheAuditAgrees() async throws {
    let box = try await TestBoxOffice.start()
    defer { Task { await box.stop() } }
    let seats = try await box.seatIds()
    let statuses = try await withThrowingTaskGroup(of: Int.self) { tasks in
      for _ in 0..<1_000 {
        let wanted = Array(seats.shuffled().prefix(Int.random(in: 1...6)))
        let body = #"{"seatIds":[\#(wanted.map(String.init).joined(separator: ","))]}"#
        tasks.addTask {
          let pass = box.pass()
          let reply = try await box.request("POST", "/events/\(box.event.id)/holds", pass: pass, body: body)
          if reply.status == 401 {
            let local = try TokenSigner(keyRing: TestBoxOffice.keyRing).verify(
              pass, kind: .pass, room: "onsale", now: Int64(Date().timeIntervalSince1970))
            Issue.record("401: \(reply.text) for \(pass); locally \(local)")
          }
          if reply.status == 409 {
            // The answer names seats that really were not all free.
            let unavailable = reply.json["unavailableSeatIds"] as? [Int] ?? []
            #expect(!unavailable.isEmpty && Set(unavailable.map(Int64.init)).isSubset(of: wanted))
          }
          return reply.status
        }
      }
      return try await tasks.reduce(into: [Int: Int]()) { $0[$1, default: 0] += 1 }
    }
    #expect(Set(statuses.keys).isSubset(of: [201, 409]), "statuses: \(statuses)")
    #expect(statuses[201, default: 0] >= 1)
    // No seat in two live holds: every active hold's seats carry its id, and no seat appears
    // in two active holds.
    #expect(
      try await box.integers(
        """
        SELECT count(*) FROM (SELECT unnest(seat_ids) AS seat FROM holds WHERE status = 'active') s
        GROUP BY seat HAVING count(*) > 1
        """
      ).isEmpty)
    #expect(
      try await box.integers(
        """
        SELECT count(*) FROM holds h, unnest(h.seat_ids) AS seat
        JOIN seats s ON s.id = seat
        WHERE h.status = 'active' AND (s.hold_id IS DISTINCT FROM h.id OR s.status <> 'held')
        """) == [0])
    // The audit trail of every seat chains and ends in the seat's state.
    #expect(
      try await box.integers(
        """
        SELECT count(*) FROM (
          SELECT seat_id, from_status, lag(to_status) OVER (PARTITION BY seat_id ORDER BY id) AS previous
          FROM seat_audit) a
        WHERE from_status IS DISTINCT FROM previous
        """) == [0])
    #expect(
      try await box.integers(
        """
        SELECT count(*) FROM seats s
        WHERE s.status <> (SELECT to_status FROM seat_audit a WHERE a.seat_id = s.id ORDER BY id DESC LIMIT 1)
        """) == [0])
  }

  @Test func bestAvailablePrefersAdjacentSeats() async throws {
    let box = try await TestBoxOffice.start()
    defer { Task { await box.stop() } }
    // Take seats 3 and 8 of the front row: the first run of 4 free seats is 4-7.
    let front = Array(
      try await box.server.inventory.seats(event: box.event.id, section: "Floor").map(\.id).prefix(10))
    _ = try await box.request(
      "POST", "/events/\(box.event.id)/holds", pass: box.pass(),
      body: #"{"seatIds":[\#(front[2]),\#(front[7])]}"#)
    let reply = try await box.request(
      "POST", "/events/\(box.event.id)/holds", pass: box.pass(), body: #"{"section":"Floor","quantity":4}"#)
    #expect(reply.status == 201)
    let numbers = (reply.json["seats"] as? [[String: Any]] ?? []).compactMap { $0["number"] as? Int }
    let rows = Set((reply.json["seats"] as? [[String: Any]] ?? []).compactMap { $0["row"] as? String })
    #expect(numbers == [4, 5, 6, 7] && rows == ["A"])
    // More than a section has: 409.
    let tooMany = try await box.request(
      "POST", "/events/\(box.event.id)/holds", pass: box.pass(), body: #"{"section":"Balcony","quantity":6}"#)
    #expect(tooMany.status == 201)
    for _ in 0..<2 {
      _ = try await box.request(
        "POST", "/events/\(box.event.id)/holds", pass: box.pass(),
        body: #"{"section":"Balcony","quantity":6}"#)
    }
    let none = try await box.request(
      "POST", "/events/\(box.event.id)/holds", pass: box.pass(), body: #"{"section":"Balcony","quantity":6}"#)
    #expect(none.status == 409 && none.json["error"] as? String == "seats_unavailable")
  }

  @Test func oneSecondHoldsAreReleasedByTheWorker() async throws {
    let box = try await TestBoxOffice.start(hold: .seconds(1))
    defer { Task { await box.stop() } }
    let seats = Array(try await box.seatIds().prefix(3))
    let list = seats.map(String.init).joined(separator: ",")
    let reply = try await box.request(
      "POST", "/events/\(box.event.id)/holds", pass: box.pass(), body: #"{"seatIds":[\#(list)]}"#)
    #expect(reply.status == 201)
    // The worker's lag is measured in the database: from the hold's expiry to the release
    // the audit trail records (this machine's load does not skew it). The polling window
    // starts when the hold was answered, not before it was asked for: under the full suite
    // the request itself has taken over a second, and a window that counted it ran out
    // before a release that came well within the lag bound (`observed after 5.01 s`).
    let answered = ContinuousClock.now
    var lag: [Int64] = []
    while lag.isEmpty && ContinuousClock.now - answered < .seconds(1) + .milliseconds(2_500) + .seconds(3) {
      lag = try await box.integers(
        """
        SELECT (EXTRACT(EPOCH FROM max(a.at) - max(h.expires_at)) * 1000)::bigint
        FROM seat_audit a JOIN holds h ON h.id = a.hold_id
        WHERE a.to_status = 'available' AND a.seat_id IN (\(list))
        HAVING count(*) = 3
        """)
      if lag.isEmpty { try await Task.sleep(for: .milliseconds(20)) }
    }
    let took = ContinuousClock.now - answered
    // Alone the lag is about 1 ms (README); the bound leaves room for the rest of the suite
    // hammering the same two cores and database at the same time.
    #expect(
      lag.count == 1 && lag[0] >= 0 && lag[0] < 2_500,
      "released \(lag) ms after the expiry; polled for \(took)")
    // The hold itself is marked expired just after its seats.
    var expired: [Int64] = []
    for _ in 0..<100 where expired != [1] {
      expired = try await box.integers("SELECT count(*) FROM holds WHERE status = 'expired'")
      if expired != [1] { try await Task.sleep(for: .milliseconds(20)) }
    }
    #expect(expired == [1])
  }

  @Test func anExpiredHoldIsTakenOverBeforeAnyWorkerRuns() async throws {
    // 6 s holds: the second request must surely come before the first hold runs out, even on
    // a machine busy with every other suite.
    let box = try await TestBoxOffice.start(hold: .seconds(6), expiryWorker: false)
    defer { Task { await box.stop() } }
    let seat = try await box.seatIds()[0]
    let first = try await box.request(
      "POST", "/events/\(box.event.id)/holds", pass: box.pass(), body: #"{"seatIds":[\#(seat)]}"#)
    #expect(first.status == 201)
    let early = try await box.request(
      "POST", "/events/\(box.event.id)/holds", pass: box.pass(), body: #"{"seatIds":[\#(seat)]}"#)
    #expect(early.status == 409)
    try await Task.sleep(for: .milliseconds(6_100))
    #expect(
      try await box.integers("SELECT count(*) FROM seats WHERE status = 'held' AND id = \(seat)") == [1])
    let takeover = try await box.request(
      "POST", "/events/\(box.event.id)/holds", pass: box.pass(), body: #"{"seatIds":[\#(seat)]}"#)
    #expect(takeover.status == 201)
  }

  @Test func visitorsSeeOnlyTheirOwnHoldsAndCanReleaseThem() async throws {
    let box = try await TestBoxOffice.start()
    defer { Task { await box.stop() } }
    let seat = try await box.seatIds()[0]
    let mine = box.pass()
    let hold = try await box.request(
      "POST", "/events/\(box.event.id)/holds", pass: mine, body: #"{"seatIds":[\#(seat)]}"#)
    let id = try #require(hold.json["id"] as? String)
    #expect(try await box.request("GET", "/holds/\(id)", pass: mine).status == 200)
    #expect(try await box.request("GET", "/holds/\(id)", pass: box.pass()).status == 404)
    #expect(try await box.request("DELETE", "/holds/\(id)", pass: box.pass()).status == 404)
    #expect(try await box.request("DELETE", "/holds/\(id)", pass: mine).status == 204)
    #expect(try await box.request("DELETE", "/holds/\(id)", pass: mine).status == 404)
    let again = try await box.request(
      "POST", "/events/\(box.event.id)/holds", pass: box.pass(), body: #"{"seatIds":[\#(seat)]}"#)
    #expect(again.status == 201)
  }

  @Test func seatMapsCarryAnETag() async throws {
    let box = try await TestBoxOffice.start()
    defer { Task { await box.stop() } }
    let map = try await box.request("GET", "/events/\(box.event.id)/seats")
    #expect(map.status == 200 && (map.json["seats"] as? [Any])?.count == 60)
    let tag = try #require(map.headers["etag"])
    #expect(
      try await box.request("GET", "/events/\(box.event.id)/seats", headers: ["If-None-Match": tag]).status
        == 304)
    let seat = try await box.seatIds()[5]
    _ = try await box.request(
      "POST", "/events/\(box.event.id)/holds", pass: box.pass(), body: #"{"seatIds":[\#(seat)]}"#)
    let changed = try await box.request(
      "GET", "/events/\(box.event.id)/seats", headers: ["If-None-Match": tag])
    #expect(changed.status == 200 && changed.headers["etag"] != tag)
    let held = (changed.json["seats"] as? [[String: Any]] ?? []).filter { $0["status"] as? String == "held" }
    #expect(held.count == 1)
    let balcony = try await box.request("GET", "/events/\(box.event.id)/seats?section=Balcony")
    #expect((balcony.json["seats"] as? [Any])?.count == 20)
    #expect(try await box.request("GET", "/events/\(box.event.id)/seats?section=Roof").status == 404)
  }

  @Test func eventsAreSearchable() async throws {
    let box = try await TestBoxOffice.start()
    defer { Task { await box.stop() } }
    _ = try await box.server.inventory.createEvent(
      EventSpec(
        name: "Porto Jazz Night", category: "jazz", city: "Porto", venue: "Cave",
        startsAt: Date().addingTimeInterval(3 * 86_400), onSaleAt: Date(),
        sections: [EventSpec.Section(name: "Hall", rows: 1, seatsPerRow: 5, priceCents: 1_000)]))
    let all = try await box.request("GET", "/events")
    #expect(all.json["total"] as? Int == 2)
    #expect((try await box.request("GET", "/events?q=jazz").json["events"] as? [Any])?.count == 1)
    #expect((try await box.request("GET", "/events?city=porto").json["events"] as? [Any])?.count == 1)
    #expect((try await box.request("GET", "/events?category=concert").json["events"] as? [Any])?.count == 1)
    let later = ISO8601DateFormatter().string(from: Date().addingTimeInterval(2 * 86_400))
    #expect((try await box.request("GET", "/events?from=\(later)").json["events"] as? [Any])?.count == 1)
    let page = try await box.request("GET", "/events?limit=1&offset=1")
    #expect((page.json["events"] as? [Any])?.count == 1 && page.json["total"] as? Int == 2)
    #expect(try await box.request("GET", "/events/\(box.event.id)").json["seatsTotal"] as? Int == 60)
    #expect(try await box.request("GET", "/events/\(UUID())").status == 404)
  }

  @Test func browsersGetTheShopPageAndAppsTheAPI() async throws {
    let box = try await TestBoxOffice.start()
    defer { Task { await box.stop() } }
    for path in ["/events", "/events/\(box.event.id)", "/orders"] {
      let page = try await box.request("GET", path, headers: ["Accept": "text/html,application/xhtml+xml"])
      #expect(page.status == 200 && page.headers["content-type"]?.hasPrefix("text/html") == true, "\(path)")
      #expect(page.text.contains("function eventPage") && !page.text.contains("https://"))
      #expect(page.headers["content-security-policy"]?.contains("default-src 'none'") == true)
    }
    #expect(try await box.request("GET", "/events").json["total"] as? Int == 1)
    #expect(try await box.request("GET", "/orders").status == 401)
  }
}
