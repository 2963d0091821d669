import BoxOffice
import Foundation
import FoyerCore
import FoyerTestSupport
import Logging
import NIOCore
import PostgresNIO
import ServiceLifecycle

#if canImport(FoundationNetworking)
import FoundationNetworking
#endif

/// A BoxOffice on a fresh database, serving on a free port, with a small event; stopped by
/// `stop()`.
final class TestBoxOffice: @unchecked Sendable {
  static let keyRing = try! KeyRing([SigningKey(id: "test", secret: Array(repeating: 9, count: 32))])
  static let staffToken = "boxoffice-test-staff-token"
  let server: BoxOfficeServer
  let base: String
  let event: Event
  private let boxOffice: InProcessBoxOffice
  let signer = try! TokenSigner(keyRing: TestBoxOffice.keyRing)
  let session: URLSession

  /// `expiryWorker: false` leaves expired holds to the lazy takeover alone.
  static func start(
    hold: Duration = .seconds(600), redisURL: String? = nil, payments: PaymentSettings = PaymentSettings(),
    expiryWorker: Bool = true, holdAttemptsPerMinute: Int? = 30, cancelCutoff: Duration = .seconds(3_600),
    startsIn: TimeInterval = 86_400, waitlistOffer: Duration = .seconds(900),
    sections: [EventSpec.Section] = [
      EventSpec.Section(name: "Floor", rows: 4, seatsPerRow: 10, priceCents: 5_000),
      EventSpec.Section(name: "Balcony", rows: 2, seatsPerRow: 10, priceCents: 2_500),
    ]
  ) async throws -> TestBoxOffice {
    var configuration = BoxOfficeConfiguration(
      host: "127.0.0.1", port: 0, databaseURL: try await PostgresDatabase.create(), databaseConnections: 10,
      redisURL: redisURL, holdDuration: hold, keyRing: keyRing, payments: payments)
    configuration.maxBodyBytes = 4_096
    configuration.holdAttemptsPerMinute = holdAttemptsPerMinute
    configuration.cancelCutoff = cancelCutoff
    configuration.waitlistOfferDuration = waitlistOffer
    configuration.staffToken = staffToken
    let boxOffice = try await InProcessBoxOffice.start(
      configuration, adminToken: "boxoffice-test-admin-token", expiryWorker: expiryWorker,
      event: EventSpec(
        name: "Test Night", category: "concert", city: "Lisbon", venue: "Test Hall",
        startsAt: Date().addingTimeInterval(startsIn), onSaleAt: Date(), sections: sections))
    return TestBoxOffice(boxOffice)
  }

  private init(_ boxOffice: InProcessBoxOffice) {
    self.boxOffice = boxOffice
    server = boxOffice.server
    base = "http://127.0.0.1:\(boxOffice.port)"
    event = boxOffice.event
    let configuration = URLSessionConfiguration.ephemeral
    configuration.httpMaximumConnectionsPerHost = 256
    configuration.timeoutIntervalForRequest = 60
    // Tests send cookies by hand: a checkout's buyer cookie must not ride along by itself.
    configuration.httpCookieStorage = nil
    configuration.httpShouldSetCookies = false
    session = URLSession(configuration: configuration)
  }

  func stop() async { await boxOffice.stop() }

  /// A scan at the door with the staff token.
  func scan(_ code: String, gate: String, event: UUID? = nil, token: String? = TestBoxOffice.staffToken)
    async throws -> Reply
  {
    var body: [String: String] = ["code": code, "gate": gate]
    if let event { body["eventId"] = event.uuidString }
    let json = String(decoding: try JSONSerialization.data(withJSONObject: body), as: UTF8.self)
    return try await request(
      "POST", "/checkin", headers: token.map { ["Authorization": "Bearer \($0)"] } ?? [:], body: json)
  }

  /// The value of a Prometheus series on `/metrics` (0 when absent).
  func metric(_ series: String) async throws -> Double {
    let text = try await request(
      "GET", "/metrics", headers: ["Authorization": "Bearer boxoffice-test-admin-token"]
    ).text
    for line in text.split(separator: "\n") where line.hasPrefix(series + " ") {
      return Double(line.dropFirst(series.count + 1)) ?? 0
    }
    return 0
  }

  /// A valid pass for a new (or the given) visitor. A signer per call: tests sign from many
  /// tasks at once, and a signer's OpenSSL context is not thread-safe.
  func pass(_ visitor: VisitorID = .random(), seconds: Int64 = 600) -> String {
    try! TokenSigner(keyRing: Self.keyRing).sign(
      Token(
        kind: .pass, room: "onsale", visitor: visitor, time: Int64(Date().timeIntervalSince1970) + seconds))
  }

  typealias Reply = HTTPReply

  func request(
    _ method: String, _ path: String, pass: String? = nil, headers: [String: String] = [:],
    body: String? = nil
  ) async throws -> Reply {
    var headers = headers
    if let pass { headers["Foyer-Pass"] = pass }
    if body != nil { headers["Content-Type"] = "application/json" }
    return try await httpRequest(
      method, base + path, headers: headers, body: body.map { Data($0.utf8) }, session: session)
  }

  /// Holds the first `count` available seats for `pass` and pays with a good card: the
  /// order's answer.
  func sell(_ count: Int, pass: String) async throws -> Reply {
    let seats = Array(
      try await server.inventory.seats(event: event.id, section: nil).filter { $0.status == "available" }
        .prefix(count).map(\.id))
    let hold = try await request(
      "POST", "/events/\(event.id)/holds", pass: pass,
      body: #"{"seatIds":[\#(seats.map(String.init).joined(separator: ","))]}"#)
    guard let id = hold.json["id"] as? String else {
      throw TestServiceError("the hold answered \(hold.status): \(hold.text)")
    }
    return try await request(
      "POST", "/holds/\(id)/checkout", pass: pass, headers: ["Idempotency-Key": UUID().uuidString],
      body: CheckoutTests.good)
  }

  /// The event's seat ids, in seat-map order.
  func seatIds() async throws -> [Int64] {
    try await server.inventory.seats(event: event.id, section: nil).map(\.id)
  }

  /// Runs `sql` and returns the rows' first column as integers.
  func integers(_ sql: String) async throws -> [Int64] {
    var values: [Int64] = []
    for try await value in try await server.postgres.query(PostgresQuery(unsafeSQL: sql)).decode(Int64.self) {
      values.append(value)
    }
    return values
  }
}
