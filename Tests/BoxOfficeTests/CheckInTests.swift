import BoxOffice
import Foundation
import FoyerCore
import FoyerTestSupport
import Testing

/// Issue #17 item 3: check-in at the door against the real BoxOffice and PostgreSQL.
@Suite(.timeLimit(.minutes(3))) struct CheckInTests {
  static func codes(_ order: HTTPReply) throws -> [String] {
    try #require(order.json["tickets"] as? [[String: Any]]).compactMap { $0["code"] as? String }
  }

  @Test func twoGatesScanningOneTicketAtOnceLetItInOnce() async throws {
    let box = try await TestBoxOffice.start()
    defer { Task { await box.stop() } }
    let code = try #require(try Self.codes(try await box.sell(1, pass: box.pass())).first)
    // Two gates × 100 scans of the same code, all in flight together.
    let replies = try await withThrowingTaskGroup(of: (String, HTTPReply).self) { group in
      for index in 0..<200 {
        let gate = index % 2 == 0 ? "North" : "South"
        group.addTask { (gate, try await box.scan(code, gate: gate)) }
      }
      return try await group.reduce(into: []) { $0.append($1) }
    }
    let admitted = replies.filter { $0.1.status == 200 }
    #expect(admitted.count == 1)
    let winner = try #require(admitted.first)
    let seat = try #require(winner.1.json["ticket"] as? [String: Any])
    #expect(seat["section"] as? String == "Balcony" && seat["row"] as? String == "A" && seat["number"] as? Int == 1)
    let refused = replies.filter { $0.1.status == 409 }
    #expect(refused.count == 199)
    // Every other scan names the gate and the moment of the one that got in.
    #expect(refused.allSatisfy { $0.1.json["error"] as? String == "already_used" && $0.1.json["gate"] as? String == winner.0 })
    #expect(Set(refused.compactMap { $0.1.json["checkedInAt"] as? String }).count == 1)
    #expect(try await box.integers("SELECT count(*) FROM tickets WHERE checked_in_at IS NOT NULL") == [1])
    #expect(try await box.metric(#"boxoffice_checkins_total{outcome="admitted"}"#) == 1)
    #expect(try await box.metric(#"boxoffice_checkins_total{outcome="already_used"}"#) == 199)
  }

  @Test func forgedDamagedAndTruncatedCodesAreRefused() async throws {
    let box = try await TestBoxOffice.start()
    defer { Task { await box.stop() } }
    let code = try #require(try Self.codes(try await box.sell(1, pass: box.pass())).first)
    let fields = code.split(separator: ".").map(String.init)
    let ticket = try #require(TicketCodes(keyRing: TestBoxOffice.keyRing).verify(code))
    // Another key ring with the same key id signs a lookalike: the published key refuses it.
    let forger = TicketCodes(keyRing: try KeyRing([SigningKey(id: "test", secret: Array(repeating: 7, count: 32))]))
    var forged: [String] = []
    for _ in 0..<300 { forged.append(forger.code(ticket: UUID(), seat: Int64.random(in: 1...40))) }
    forged.append(forger.code(ticket: ticket.ticket, seat: ticket.seat))
    // One byte changed, at every position, in turn.
    let bytes = Array(code.utf8)
    var position = 0
    while forged.count < 700 {
      var damaged = bytes
      let at = position % bytes.count
      damaged[at] = damaged[at] == UInt8(ascii: "A") ? UInt8(ascii: "B") : UInt8(ascii: "A")
      forged.append(String(decoding: damaged, as: UTF8.self))
      position += 1
    }
    // Cut short anywhere, and the seat moved to the next seat under the same signature.
    while forged.count < 990 { forged.append(String(code.prefix(Int.random(in: 0..<code.count)))) }
    forged.append([fields[0], fields[1], String(ticket.seat + 1), fields[3], fields[4]].joined(separator: "."))
    while forged.count < 1_000 { forged.append(code + "x") }
    let statuses = try await withThrowingTaskGroup(of: Int.self) { group in
      for (index, text) in forged.enumerated() where !text.isEmpty {
        group.addTask { try await box.scan(text, gate: "G\(index % 4)").status }
      }
      return try await group.reduce(into: [Int]()) { $0.append($1) }
    }
    #expect(statuses.count == forged.filter { !$0.isEmpty }.count)
    #expect(statuses.allSatisfy { $0 == 400 }, "\(Dictionary(grouping: statuses, by: { $0 }).mapValues(\.count))")
    #expect(try await box.integers("SELECT count(*) FROM tickets WHERE checked_in_at IS NOT NULL") == [0])
    // The genuine code still gets in after all that.
    #expect(try await box.scan(code, gate: "G0").status == 200)
  }

  @Test func theDoorTellsEveryOtherCase() async throws {
    let box = try await TestBoxOffice.start()
    defer { Task { await box.stop() } }
    let pass = box.pass()
    let order = try await box.sell(2, pass: pass)
    let codes = try Self.codes(order)
    let orderID = try #require(order.json["id"] as? String)

    // Without the staff token, or with another: nothing is checked.
    #expect(try await box.scan(codes[0], gate: "A", token: nil).status == 401)
    #expect(try await box.scan(codes[0], gate: "A", token: "boxoffice-test-staff-tokeN").status == 401)
    #expect(try await box.integers("SELECT count(*) FROM tickets WHERE checked_in_at IS NOT NULL") == [0])
    // A gate name that is empty or too long; a body that is not a scan.
    #expect(try await box.scan(codes[0], gate: "").json["error"] as? String == "invalid_gate")
    #expect(try await box.scan(codes[0], gate: String(repeating: "g", count: 65)).status == 400)
    let notJSON = try await box.request(
      "POST", "/checkin", headers: ["Authorization": "Bearer \(TestBoxOffice.staffToken)"], body: "{\"code\":1}")
    #expect(notJSON.status == 400)
    // A genuine signature over a ticket this box office never sold.
    let stranger = TicketCodes(keyRing: TestBoxOffice.keyRing).code(ticket: UUID(), seat: 1)
    #expect(try await box.scan(stranger, gate: "A").json["error"] as? String == "unknown_ticket")
    // A gate for another event turns the ticket away and does not use it.
    let wrong = try await box.scan(codes[0], gate: "A", event: UUID())
    #expect(wrong.status == 409 && wrong.json["error"] as? String == "wrong_event")
    let right = try await box.scan(codes[0], gate: "A", event: box.event.id)
    #expect(right.status == 200)

    // A used ticket stops the order being cancelled; its other ticket is still valid.
    let cancel = try await box.request("POST", "/orders/\(orderID)/cancel", pass: pass)
    #expect(cancel.status == 409 && cancel.json["error"] as? String == "checked_in")

    // Another order, cancelled: its tickets answer 410 at the door.
    let other = box.pass()
    let second = try await box.sell(1, pass: other)
    let secondCode = try #require(try Self.codes(second).first)
    let secondID = try #require(second.json["id"] as? String)
    #expect(try await box.request("POST", "/orders/\(secondID)/cancel", pass: other).status == 200)
    let revoked = try await box.scan(secondCode, gate: "B")
    #expect(revoked.status == 410 && revoked.json["error"] as? String == "revoked")

    // What the door saw, counted.
    #expect(try await box.metric(#"boxoffice_checkins_total{outcome="admitted"}"#) == 1)
    #expect(try await box.metric(#"boxoffice_checkins_total{outcome="revoked"}"#) == 1)
    #expect(try await box.metric(#"boxoffice_checkins_total{outcome="wrong_event"}"#) == 1)
    #expect(try await box.metric(#"boxoffice_checkins_total{outcome="unknown"}"#) == 1)

    // The staff page is served to anyone (it holds no secret), under the strict policy.
    let page = try await box.request("GET", "/checkin")
    #expect(page.status == 200 && page.text.contains("Staff token"))
    #expect(page.headers["content-security-policy"]?.contains("default-src 'none'") == true)
  }
}
