internal import NIOConcurrencyHelpers
public import ServiceLifecycle

/// A start-up step that other services wait for: BoxOffice's HTTP server and expiry worker
/// must not touch the schema before the migrations are applied.
///
/// Written by hand because a `ServiceGroup` starts all its services at once (its order is
/// only the shutdown order) and service-lifecycle has no dependencies between services.
/// Without it the server listened, and the worker queried, tens of milliseconds before the
/// tables existed: early requests failed and the worker logged `relation "seats" does not
/// exist`. If the step fails, its service throws and the group cancels every waiter.
final class StartupGate: Sendable {
  private struct State {
    var isOpen = false
    var waiters: [Int: CheckedContinuation<Bool, Never>] = [:]
    var nextID = 0
  }

  private let state = NIOLockedValueBox(State())

  /// Lets every waiter, present and future, go on.
  func open() {
    let waiters = state.withLockedValue { state in
      state.isOpen = true
      defer { state.waiters = [:] }
      return Array(state.waiters.values)
    }
    for waiter in waiters { waiter.resume(returning: true) }
  }

  /// `true` once the gate is open; `false` if the task is cancelled first.
  func wait() async -> Bool {
    let id = state.withLockedValue { state in
      state.nextID += 1
      return state.nextID
    }
    return await withTaskCancellationHandler {
      await withCheckedContinuation { continuation in
        // Under the lock: a cancellation either finds the continuation stored or is seen here.
        let answer: Bool? = state.withLockedValue { state in
          if state.isOpen { return true }
          if Task.isCancelled { return false }
          state.waiters[id] = continuation
          return nil
        }
        if let answer { continuation.resume(returning: answer) }
      }
    } onCancel: {
      state.withLockedValue { $0.waiters.removeValue(forKey: id) }?.resume(returning: false)
    }
  }
}

/// Runs `service` once `gate` opens; if a graceful shutdown or cancellation comes first, it
/// returns without running it.
struct AfterGate<Wrapped: Service>: Service {
  let service: Wrapped
  let gate: StartupGate

  func run() async throws {
    let gate = self.gate
    guard await cancelWhenGracefulShutdown({ await gate.wait() }) else { return }
    try await service.run()
  }
}
