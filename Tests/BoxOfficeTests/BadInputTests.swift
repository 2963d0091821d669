import BoxOffice
import Foundation
import FoyerCore
import FoyerTestSupport
import Testing

@Suite(.timeLimit(.minutes(2))) struct BadInputTests {
  @Test func everyMistakeIsA4xxWithAJSONError() async throws {
    let box = try await TestBoxOffice.start()
    defer { Task { await box.stop() } }
    let event = box.event.id
    let pass = box.pass()
    let seats = try await box.seatIds()
    let holds = "/events/\(event)/holds"
    let cases: [(String, String, String?, String?, Int, String)] = [
      ("POST", holds, pass, "{not json", 400, "invalid_json"),
      ("POST", holds, pass, "[1,2]", 400, "invalid_body"),
      ("POST", holds, pass, #"{"seatIds":"7"}"#, 400, "invalid_body"),
      ("POST", holds, pass, #"{"seatIds":[]}"#, 400, "no_seats"),
      ("POST", holds, pass, #"{"seatIds":[999999]}"#, 400, "unknown_seats"),
      ("POST", holds, pass, #"{"seatIds":[\#(seats[0]),\#(seats[0])]}"#, 400, "duplicate_seats"),
      (
        "POST", holds, pass, #"{"seatIds":[\#(seats.prefix(7).map(String.init).joined(separator: ","))]}"#,
        400,
        "too_many_seats"
      ),
      ("POST", holds, pass, #"{"section":"Floor","quantity":0}"#, 400, "invalid_quantity"),
      ("POST", holds, pass, #"{"section":"Floor","quantity":-3}"#, 400, "invalid_quantity"),
      ("POST", holds, pass, #"{"section":"Floor"}"#, 400, "invalid_hold_request"),
      ("POST", holds, pass, #"{"section":"Nowhere","quantity":2}"#, 404, "not_found"),
      ("POST", holds, pass, #"{"seatIds":[1],"section":"Floor","quantity":1}"#, 400, "invalid_hold_request"),
      (
        "POST", holds, pass, #"{"seatIds":[\#(String(repeating: "1,", count: 3_000))1]}"#, 413,
        "body_too_large"
      ),
      ("POST", "/events/not-a-uuid/holds", pass, #"{"seatIds":[1]}"#, 400, "invalid_id"),
      ("GET", "/holds/12345", pass, nil, 400, "invalid_id"),
      ("GET", "/orders/\(UUID())", pass, nil, 404, "not_found"),
      ("POST", holds, nil, #"{"seatIds":[\#(seats[0])]}"#, 401, "no_pass"),
      ("POST", holds, pass + "x", #"{"seatIds":[\#(seats[0])]}"#, 401, "invalid_pass"),
      ("POST", holds, box.pass(seconds: -5), #"{"seatIds":[\#(seats[0])]}"#, 401, "invalid_pass"),
      ("GET", "/orders", "v1.p.onsale.garbage", nil, 401, "invalid_pass"),
      ("GET", "/events?limit=1000", nil, nil, 400, "invalid_limit"),
      ("GET", "/events?from=yesterday", nil, nil, 400, "invalid_from"),
      ("PUT", "/events", nil, nil, 405, "method_not_allowed"),  // a known path asked with another method
      ("GET", "/nowhere", nil, nil, 404, "not_found"),
      ("POST", "/admin/events", nil, "{}", 401, "unauthorized"),
      ("GET", "/metrics", nil, nil, 401, "unauthorized"),
    ]
    for (method, path, pass, body, status, code) in cases {
      let reply = try await box.request(method, path, pass: pass, body: body)
      #expect(
        reply.status == status, "\(method) \(path) \(body?.prefix(60) ?? ""): \(reply.status) \(reply.text)")
      #expect(reply.json["error"] as? String == code, "\(method) \(path): \(reply.text.prefix(200))")
      #expect(reply.json["message"] is String)
    }
    // A pass for another room is not a pass here.
    let otherRoom = box.signer.sign(
      Token(
        kind: .pass, room: "elsewhere", visitor: .random(), time: Int64(Date().timeIntervalSince1970) + 60))
    #expect(try await box.request("GET", "/orders", pass: otherRoom).status == 401)
    // Checkout mistakes.
    let hold = try await box.request("POST", holds, pass: pass, body: #"{"seatIds":[\#(seats[1])]}"#)
    let id = try #require(hold.json["id"] as? String)
    for (body, code) in [
      ("{", "invalid_json"), (#"{"card":{}}"#, "invalid_card"),
      (#"{"card":{"number":"12"}}"#, "invalid_card"),
    ] {
      let reply = try await box.request(
        "POST", "/holds/\(id)/checkout", pass: pass, headers: ["Idempotency-Key": UUID().uuidString],
        body: body)
      #expect(reply.status == 400 && reply.json["error"] as? String == code, "\(body): \(reply.text)")
    }
    let luhn = try await box.request(
      "POST", "/holds/\(id)/checkout", pass: pass, headers: ["Idempotency-Key": "luhn"],
      body: #"{"card":{"number":"4242424242424241"}}"#)
    #expect(luhn.status == 402)
    let metrics = try await box.request(
      "GET", "/metrics", headers: ["Authorization": "Bearer boxoffice-test-admin-token"])
    #expect(metrics.status == 200 && metrics.text.contains("boxoffice_holds_created_total 1"))
    // Every BoxOffice series the shipped alert rules and dashboard read is exported.
    let shipped = try ShippedMonitoring.metricNames(prefix: "boxoffice_")
    #expect(shipped.count >= 8)
    #expect(
      ShippedMonitoring.missing(shipped, in: metrics.text).isEmpty,
      "not exported: \(ShippedMonitoring.missing(shipped, in: metrics.text))")
  }
}
