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
}
