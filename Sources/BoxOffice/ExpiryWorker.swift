public import Foundation
public import Logging
internal import NIOConcurrencyHelpers
internal import Prometheus
public import ServiceLifecycle

/// Releases held seats the moment their hold runs out (DESIGN §6): it sleeps until the
/// earliest `held_until` the database knows, releases in batches, and is woken early when a
/// hold is created that runs out sooner than the planned wake-up. No minute-long cron drag.
///
/// With several BoxOffice processes, each runs one; a process only hears of its own new
/// holds, so the sleep is capped at `maximumSleep` and the lazy takeover in claims covers
/// the gap.
public final class ExpiryWorker: Service, Sendable {
  let inventory: Inventory
  let metrics: BoxOfficeMetrics
  /// Refunds left pending are finished on each pass.
  let refunds: Cancellation?
  /// Offers that ran out pass on, and freed seats are offered, on each pass.
  let waitlist: Waitlist?
  let logger: Logger
  let maximumSleep: Duration
  private let state = NIOLockedValueBox(State())

  struct State {
    /// When the worker plans to wake, and the sleep to cancel for an earlier hold.
    var wake: Date?
    var sleeper: Task<Void, any Error>?
    /// The earliest expiry announced since the worker last planned its sleep: a hold made
    /// while the worker was busy in the database (after its query, before its sleep) must
    /// still shorten that sleep.
    var announced: Date?
  }

  public init(
    inventory: Inventory, metrics: BoxOfficeMetrics, refunds: Cancellation? = nil, waitlist: Waitlist? = nil,
    maximumSleep: Duration = .seconds(5), logger: Logger
  ) {
    self.inventory = inventory
    self.metrics = metrics
    self.refunds = refunds
    self.waitlist = waitlist
    self.maximumSleep = maximumSleep
    self.logger = logger
  }

  /// Called for every new hold: wakes the worker if this hold runs out first.
  public func holdCreated(expiresAt: Date) {
    state.withLockedValue { state in
      state.announced = min(state.announced ?? expiresAt, expiresAt)
      if let wake = state.wake, expiresAt < wake { state.sleeper?.cancel() }
    }
  }

  public func run() async throws {
    try await cancelWhenGracefulShutdown {
      while !Task.isCancelled {
        var pause = self.maximumSleep
        do {
          var released = 0
          self.metrics.expiryLag.set(try await self.inventory.expiryLagSeconds())
          repeat {
            released = try await self.inventory.releaseExpired(limit: 500)
            self.metrics.seatsExpired.increment(by: Int64(released))
          } while released == 500
          try await self.waitlist?.advance()
          try await self.refunds?.retryPending()
          self.metrics.expiryLastPass.set(Date().timeIntervalSince1970)
          if let next = try await self.inventory.nextExpiry() { pause = min(pause, next) }
        } catch {
          self.logger.warning("expiry pass failed; retrying", metadata: ["error": "\(error)"])
          pause = .seconds(1)
        }
        let sleeper = self.state.withLockedValue { state -> Task<Void, any Error> in
          var sleep = pause
          if let announced = state.announced {
            sleep = min(sleep, .milliseconds(Int64(max(announced.timeIntervalSinceNow, 0) * 1_000)))
            state.announced = nil
          }
          let sleeper = Task { try await Task.sleep(for: sleep) }
          state.wake = Date().addingTimeInterval(
            Double(sleep.components.seconds) + Double(sleep.components.attoseconds) / 1e18)
          state.sleeper = sleeper
          return sleeper
        }
        _ = await withTaskCancellationHandler {
          await sleeper.result
        } onCancel: {
          sleeper.cancel()
        }
      }
    }
  }
}
