internal import NIOCore

/// A timer for a deadline that moves on with every exchange of a keep-alive connection (the
/// idle timeout, the upstream's answer timeout), kept as one scheduled task rather than one
/// per exchange: scheduling and cancelling a task for each showed in profiles.
///
/// The `check` last given runs when the task fires (an earlier task kept for a later
/// deadline runs the newer check). It looks at the deadline as it is by then and either acts
/// or calls `ensure` again for the later deadline.
final class DeadlineTimer {
  private var scheduled: (task: Scheduled<Void>, at: NIODeadline)?
  private var check: (() -> Void)?

  /// Makes sure `check` runs no later than `deadline`: a task already due by then is kept.
  /// Owners pass a closure that captures only themselves, which costs no allocation.
  func ensure(by deadline: NIODeadline, on eventLoop: any EventLoop, check: @escaping () -> Void) {
    self.check = check
    if let scheduled {
      if scheduled.at <= deadline { return }
      scheduled.task.cancel()
    }
    let task = eventLoop.assumeIsolated().scheduleTask(deadline: deadline) {
      self.scheduled = nil
      self.check.take()?()
    }
    scheduled = (task, deadline)
  }

  func cancel() {
    scheduled?.task.cancel()
    scheduled = nil
    check = nil
  }
}
