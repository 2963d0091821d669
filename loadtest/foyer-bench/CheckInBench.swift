import ArgumentParser
import Foundation
import FoyerCore

#if canImport(FoundationNetworking)
import FoundationNetworking
#endif

/// Drives a running BoxOffice's door (loadtest/bench-checkin starts it): sells `tickets`
/// seats, then scans every code once from `gates` gates at once (first scans: the one
/// conditional update each), scans them all again (already used), and scans forged codes (the
/// signature check alone). Prints rates and latency percentiles beside a stadium's gate rush.
struct CheckInBench: AsyncParsableCommand {
  static let configuration = CommandConfiguration(
    commandName: "checkin", abstract: "Check-ins per second at the door.")

  @Option(help: "BoxOffice base URL.") var base: String
  @Option(help: "Staff token (BOXOFFICE_STAFF_TOKEN).") var staffToken: String
  @Option(help: "Event id.") var event: String
  @Option(help: "Tickets to sell and scan.") var tickets = 3_000
  @Option(help: "Gates scanning at once (requests in flight).") var gates = 32

  func run() async throws {
    let client = try BoxOfficeBench.Client.fromEnvironment(connections: max(gates, 32))

    let (base, staffToken, event) = (self.base, self.staffToken, self.event)
    // Sell: six seats an order, each order a new visitor.
    let map = try await client.send("GET", base + "/events/\(event)/seats", pass: false)
    let seats =
      ((try JSONSerialization.jsonObject(with: map.body) as? [String: Any])?["seats"] as? [[String: Any]] ?? [])
      .filter { $0["status"] as? String == "available" }.compactMap { ($0["id"] as? Int).map(Int64.init) }
    guard seats.count >= tickets else { throw ValidationError("the event has \(seats.count) free seats") }
    let orders = stride(from: 0, to: tickets, by: 6).map { Array(seats[$0..<min($0 + 6, tickets)]) }
    let codes = Codes()
    let sold = try await BoxOfficeBench.measure(count: orders.count, concurrency: 16) { index in
      let pass = client.pass()
      let hold = try await client.send(
        "POST", base + "/events/\(event)/holds",
        body: #"{"seatIds":[\#(orders[index].map(String.init).joined(separator: ","))]}"#, pass: pass)
      guard let id = (try? JSONSerialization.jsonObject(with: hold.body) as? [String: Any])?["id"] as? String else {
        return hold
      }
      let order = try await client.send(
        "POST", base + "/holds/\(id)/checkout", body: #"{"card":{"number":"4242424242424242"}}"#, pass: pass,
        headers: ["Idempotency-Key": UUID().uuidString])
      let sold = (try? JSONSerialization.jsonObject(with: order.body) as? [String: Any])?["tickets"] as? [[String: Any]]
      codes.add(sold?.compactMap { $0["code"] as? String } ?? [])
      return order
    }
    let all = codes.all
    guard all.count == tickets else {
      throw ValidationError("sold \(all.count) of \(tickets) tickets: \(sold.statuses)")
    }
    print("\(tickets) tickets sold in \(orders.count) orders; \(gates) gates scanning at once")

    @Sendable func scan(_ code: String, gate: Int) async throws -> BoxOfficeBench.Client.Reply {
      try await client.send(
        "POST", base + "/checkin", body: #"{"code":"\#(code)","gate":"gate \#(gate)"}"#, passHeader: nil,
        headers: ["Authorization": "Bearer \(staffToken)"])
    }
    let first = try await BoxOfficeBench.measure(count: all.count, concurrency: gates) {
      try await scan(all[$0], gate: $0 % gates)
    }
    print(first.line("first scans"))
    let again = try await BoxOfficeBench.measure(count: all.count, concurrency: gates) {
      try await scan(all[$0], gate: $0 % gates)
    }
    print(again.line("second scans"))
    // Forged: the right shape, a signature from nobody's key.
    let forged = all.map { code -> String in
      var fields = code.split(separator: ".").map(String.init)
      fields[4] = String(fields[4].reversed())
      return fields.joined(separator: ".")
    }
    let fakes = try await BoxOfficeBench.measure(count: forged.count, concurrency: gates) {
      try await scan(forged[$0], gate: $0 % gates)
    }
    print(fakes.line("forged codes"))
    guard first.statuses == [200: tickets], again.statuses == [409: tickets], fakes.statuses == [400: tickets] else {
      throw ValidationError("unexpected answers: \(first.statuses) \(again.statuses) \(fakes.statuses)")
    }
    // A stadium: 60,000 people through the gates in the last 45 minutes before the show.
    let rush = 60_000.0 / (45 * 60)
    let rate = Double(first.latencies.count) / first.seconds
    print(
      String(
        format: "stadium gate rush (60,000 in 45 min) %.0f per second; first scans measured %.0f per second: headroom x%.0f",
        rush, rate, rate / rush))
  }

  final class Codes: @unchecked Sendable {
    private let lock = NSLock()
    private var codes: [String] = []
    func add(_ more: [String]) { lock.withLock { codes += more } }
    var all: [String] { lock.withLock { codes } }
  }
}
