import Foundation
import FoyerTestSupport
import Testing

@testable import BoxOffice

/// The gate that holds BoxOffice's server and expiry worker back until the migrations ran.
@Suite struct StartupGateTests {
  @Test func waitersBeforeAndAfterTheOpeningGoOn() async {
    let gate = StartupGate()
    let early = Task { await gate.wait() }
    try? await Task.sleep(for: .milliseconds(50))  // most likely waiting by now; either way it must pass
    gate.open()
    #expect(await early.value)
    #expect(await gate.wait())
  }

  @Test func aCancelledWaiterStopsWaitingAndTheGateStillOpensForOthers() async {
    let gate = StartupGate()
    let cancelled = Task { await gate.wait() }
    let other = Task { await gate.wait() }
    try? await Task.sleep(for: .milliseconds(50))
    cancelled.cancel()
    #expect(await cancelled.value == false)
    gate.open()
    #expect(await other.value)
    // Cancelled before it waits: it does not wait.
    let late = Task {
      withUnsafeCurrentTask { $0?.cancel() }
      return await StartupGate().wait()
    }
    #expect(await late.value == false)
  }

  /// A migration that fails stops BoxOffice's start with the error, on a real database, rather
  /// than leaving the server waiting for a schema that never comes.
  @Test(.timeLimit(.minutes(1))) func aFailedMigrationStopsTheStart() async throws {
    let url = try await PostgresDatabase.create()
    // A table in the way of the first migration.
    try await PostgresDatabase.execute(url, "CREATE TABLE venues (x int)")
    let configuration = BoxOfficeConfiguration(
      host: "127.0.0.1", port: 0, databaseURL: url, databaseConnections: 2, keyRing: TestBoxOffice.keyRing)
    let error = await #expect(throws: TestServiceError.self) {
      _ = try await InProcessBoxOffice.start(
        configuration,
        event: EventSpec(
          name: "Never", category: "concert", city: "Lisbon", venue: "Hall", startsAt: Date(), onSaleAt: Date(),
          sections: []))
    }
    #expect(error?.description.contains("did not start") == true, "\(error.map { "\($0)" } ?? "")")
  }
}
