import BoxOffice
import Foundation
import FoyerTestSupport
import Testing

/// The Redis hot-seat guard on one Redis and on a Redis Cluster (its per-seat keys spread over
/// every primary, so a hold of several seats is a pipeline split across nodes).
@Suite(.timeLimit(.minutes(3))) struct HotSeatGuardTests {
  @Test(arguments: RedisBackend.allCases) func aStampedeCostsTheDatabaseAlmostNothing(_ backend: RedisBackend)
    async throws
  {
    let box = try await TestBoxOffice.start(redisURL: try await backend.sharedURL(), holdAttemptsPerMinute: nil)
    defer { Task { await box.stop() } }
    let seats = try await box.seatIds()
    // 300 visitors at once for one seat: one wins, and the guard turns nearly all the rest
    // away before the database.
    let statuses = try await withThrowingTaskGroup(of: Int.self) { group in
      for _ in 0..<300 {
        group.addTask {
          try await box.request(
            "POST", "/events/\(box.event.id)/holds", pass: box.pass(), body: #"{"seatIds":[\#(seats[0])]}"#
          ).status
        }
      }
      return try await group.reduce(into: [Int]()) { $0.append($1) }
    }
    #expect(statuses.filter { $0 == 201 }.count == 1)
    #expect(statuses.filter { $0 == 409 }.count == 299)
    let claims = try await box.metric("boxoffice_claim_attempts_total")
    let rejected = try await box.metric("boxoffice_guard_rejections_total")
    #expect(claims < 30 && rejected > 270, "claims \(claims), rejected by the guard \(rejected)")
    // Holds of six seats each, their keys on many slots: every one taken, none twice.
    let rest = Array(seats.dropFirst().prefix(36))
    let holds = try await withThrowingTaskGroup(of: Int.self) { group in
      for start in stride(from: 0, to: rest.count, by: 6) {
        let ids = rest[start..<start + 6].map(String.init).joined(separator: ",")
        group.addTask {
          try await box.request("POST", "/events/\(box.event.id)/holds", pass: box.pass(), body: #"{"seatIds":[\#(ids)]}"#).status
        }
      }
      return try await group.reduce(into: [Int]()) { $0.append($1) }
    }
    #expect(holds == Array(repeating: 201, count: 6))
    #expect(try await box.integers("SELECT count(*) FROM seats WHERE status = 'held'") == [37])
  }
}
