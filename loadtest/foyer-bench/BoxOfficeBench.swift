import ArgumentParser
import Foundation
import FoyerCore

#if canImport(FoundationNetworking)
import FoundationNetworking
#endif

/// Drives a running BoxOffice over HTTP (loadtest/bench-boxoffice starts it): holds on
/// distinct seats, a stampede on one seat against a server without and one with the Redis
/// hot-seat guard, and checkouts. Prints rates, latency percentiles and the database claim
/// attempts each stampede cost (from the servers' /metrics).
struct BoxOfficeBench: AsyncParsableCommand {
  static let configuration = CommandConfiguration(
    commandName: "boxoffice", abstract: "BoxOffice holds, hot-seat stampede and checkout throughput.")

  @Option(help: "BoxOffice without the guard.") var plain: String
  @Option(help: "BoxOffice with the Redis hot-seat guard (same database).") var guarded: String
  @Option(help: "Admin token of both (for /metrics).") var adminToken: String
  @Option(help: "Event id.") var event: String
  @Option(help: "Holds on distinct seats.") var holds = 4_000
  @Option(help: "Requests in each stampede on one seat.") var stampede = 5_000
  @Option(help: "Checkouts.") var checkouts = 1_000
  @Option(help: "Requests in flight at once.") var concurrency = 64

  func run() async throws {
    let client = try Client.fromEnvironment(connections: concurrency)

    // Seat ids of the event, from the public seat map.
    let map = try await client.send("GET", plain + "/events/\(event)/seats", pass: false)
    let seats =
      ((try JSONSerialization.jsonObject(with: map.body) as? [String: Any])?["seats"] as? [[String: Any]]
      ?? [])
      .compactMap { ($0["id"] as? Int).map(Int64.init) }
    guard seats.count >= holds + checkouts + 2 else {
      throw ValidationError("the event has \(seats.count) seats; need \(holds + checkouts + 2)")
    }

    // 1. Holds on distinct seats.
    let distinct = try await Self.measure(count: holds, concurrency: concurrency) { index in
      try await client.send(
        "POST", plain + "/events/\(event)/holds", body: #"{"seatIds":[\#(seats[index])]}"#)
    }
    print(distinct.line("holds on distinct seats"))
    guard distinct.statuses == [201: holds] else {
      throw ValidationError("unexpected answers: \(distinct.statuses)")
    }

    // 2. Stampedes on one seat each: without, then with the guard.
    var attempts: [String: Double] = [:]
    for (name, base, seat) in [
      ("stampede, no guard", plain, seats[holds]), ("stampede, Redis guard", guarded, seats[holds + 1]),
    ] {
      let before = try await client.claimAttempts(base, token: adminToken)
      let result = try await Self.measure(count: stampede, concurrency: concurrency * 4) { _ in
        try await client.send("POST", base + "/events/\(event)/holds", body: #"{"seatIds":[\#(seat)]}"#)
      }
      let cost = try await client.claimAttempts(base, token: adminToken) - before
      attempts[name] = cost
      print(result.line(name) + String(format: "   database claim attempts %.0f", cost))
      guard result.statuses[201] == 1,
        result.statuses[201, default: 0] + result.statuses[409, default: 0] == stampede
      else { throw ValidationError("\(name): expected one 201 and the rest 409, got \(result.statuses)") }
    }

    // 3. Checkouts: each on its own hold.
    let buyers = (0..<checkouts).map { _ in client.pass() }
    var holdIDs: [String] = []
    for (index, pass) in buyers.enumerated() {
      let reply = try await client.send(
        "POST", plain + "/events/\(event)/holds", body: #"{"seatIds":[\#(seats[holds + 2 + index])]}"#,
        pass: pass)
      guard reply.status == 201,
        let id = (try JSONSerialization.jsonObject(with: reply.body) as? [String: Any])?["id"] as? String
      else { throw ValidationError("hold for checkout failed: \(reply.status)") }
      holdIDs.append(id)
    }
    let ids = holdIDs
    let paid = try await Self.measure(count: checkouts, concurrency: concurrency) { index in
      try await client.send(
        "POST", plain + "/holds/\(ids[index])/checkout", body: #"{"card":{"number":"4242424242424242"}}"#,
        pass: buyers[index], headers: ["Idempotency-Key": "bench-\(index)"])
    }
    print(paid.line("checkouts"))
    guard paid.statuses == [201: checkouts] else {
      throw ValidationError("unexpected answers: \(paid.statuses)")
    }
    if let without = attempts["stampede, no guard"], let with = attempts["stampede, Redis guard"], with > 0 {
      print(
        String(
          format: "guard: %.0f vs %.0f database claim attempts for %d requests on one seat (%.0fx fewer)",
          with,
          without, stampede, without / with))
    }
  }

  struct Result {
    var statuses: [Int: Int] = [:]
    var latencies: [Double] = []
    var seconds: Double = 0

    func percentile(_ p: Double) -> Double {
      let sorted = latencies.sorted()
      return sorted.isEmpty ? 0 : sorted[min(sorted.count - 1, Int(Double(sorted.count) * p))]
    }

    func line(_ name: String) -> String {
      String(
        format: "%@ %7.0f per second   p50 %7.2f ms   p99 %7.2f ms   (%d requests: %@)",
        name.padding(toLength: 24, withPad: " ", startingAt: 0) as NSString,
        Double(latencies.count) / seconds, percentile(0.5) * 1_000, percentile(0.99) * 1_000, latencies.count,
        statuses.sorted { $0.key < $1.key }.map { "\($0.value)x\($0.key)" }.joined(separator: ", ")
          as NSString)
    }
  }

  /// Runs `count` requests, `concurrency` at a time.
  static func measure(
    count: Int, concurrency: Int, _ request: @escaping @Sendable (Int) async throws -> Client.Reply
  ) async throws -> Result {
    let started = ContinuousClock.now
    var result = Result()
    try await withThrowingTaskGroup(of: (Int, Double).self) { tasks in
      var next = 0
      func add() {
        let index = next
        next += 1
        tasks.addTask {
          let begin = ContinuousClock.now
          let reply = try await request(index)
          let took = ContinuousClock.now - begin
          return (reply.status, Double(took.components.attoseconds) / 1e18 + Double(took.components.seconds))
        }
      }
      while next < min(concurrency, count) { add() }
      while let (status, latency) = try await tasks.next() {
        result.statuses[status, default: 0] += 1
        result.latencies.append(latency)
        if next < count { add() }
      }
    }
    let elapsed = ContinuousClock.now - started
    result.seconds = Double(elapsed.components.seconds) + Double(elapsed.components.attoseconds) / 1e18
    return result
  }

  final class Client: Sendable {
    struct Reply: Sendable {
      let status: Int
      let body: Data
    }

    let session: URLSession
    let keyRing: KeyRing

    init(session: URLSession, keyRing: KeyRing) {
      self.session = session
      self.keyRing = keyRing
    }

    /// Signs passes with FOYER_KEYS / FOYER_KEYS_FILE; keeps no cookies.
    static func fromEnvironment(connections: Int) throws -> Client {
      let keyRing = try KeyRing.load(environment: ProcessInfo.processInfo.environment) {
        try String(contentsOfFile: $0, encoding: .utf8)
      }
      let configuration = URLSessionConfiguration.ephemeral
      configuration.httpMaximumConnectionsPerHost = connections
      configuration.timeoutIntervalForRequest = 120
      configuration.httpCookieStorage = nil
      return Client(session: URLSession(configuration: configuration), keyRing: keyRing)
    }

    func pass() -> String {
      try! TokenSigner(keyRing: keyRing).sign(
        Token(
          kind: .pass, room: "onsale", visitor: .random(), time: Int64(Date().timeIntervalSince1970) + 3_600))
    }

    func send(
      _ method: String, _ url: String, body: String? = nil, pass: String? = nil,
      headers: [String: String] = [:]
    ) async throws -> Reply {
      try await send(method, url, body: body, passHeader: pass ?? self.pass(), headers: headers)
    }

    func send(_ method: String, _ url: String, pass: Bool) async throws -> Reply {
      try await send(method, url, body: nil, passHeader: pass ? self.pass() : nil, headers: [:])
    }

    func send(
      _ method: String, _ url: String, body: String?, passHeader: String?, headers: [String: String]
    ) async throws -> Reply {
      var request = URLRequest(url: URL(string: url)!)
      request.httpMethod = method
      if let passHeader { request.setValue(passHeader, forHTTPHeaderField: "Foyer-Pass") }
      for (name, value) in headers { request.setValue(value, forHTTPHeaderField: name) }
      if let body {
        request.httpBody = Data(body.utf8)
        request.setValue("application/json", forHTTPHeaderField: "Content-Type")
      }
      let (data, response) = try await session.data(for: request)
      return Reply(status: (response as! HTTPURLResponse).statusCode, body: data)
    }

    /// `boxoffice_claim_attempts_total` from a server's metrics.
    func claimAttempts(_ base: String, token: String) async throws -> Double {
      let reply = try await send(
        "GET", base + "/metrics", body: nil, passHeader: nil,
        headers: [
          "Authorization": "Bearer \(token)"
        ])
      let text = String(decoding: reply.body, as: UTF8.self)
      for line in text.split(separator: "\n") where line.hasPrefix("boxoffice_claim_attempts_total ") {
        return Double(line.split(separator: " ").last ?? "") ?? 0
      }
      throw ValidationError("no boxoffice_claim_attempts_total in \(base)/metrics")
    }
  }
}
