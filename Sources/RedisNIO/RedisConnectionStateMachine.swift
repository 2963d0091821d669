internal import NIOCore

/// The protocol logic of one self-healing, pipelined Redis connection, with no I/O: events
/// in, actions out (DESIGN §8). `RedisConnection` runs the actions.
///
/// Replies match requests first-in first-out, so the queue holds one entry per command in
/// order, whether it is still unsent (while connecting) or in flight. A command that times
/// out keeps its entry with no consumer, so its late reply is read and dropped without
/// shifting every later reply onto the wrong caller.
///
/// Generic over the reply consumer so the machine is tested without an event loop.
struct RedisConnectionStateMachine<Consumer> {
  enum State {
    /// Never connected; the first command starts a connect.
    case idle
    /// A connect (TCP, then the handshake) is under way; commands queue up behind it.
    case connecting
    case connected
    /// The last connect failed; commands fail fast with that error until the retry.
    case backingOff(RedisError)
    /// `close()` was called while a channel existed; waiting for it to go.
    case closing
    case closed
  }

  struct Entry {
    /// `nil` once the command timed out or for handshake commands.
    var consumer: Consumer?
    var deadline: NIODeadline
    var isHandshake: Bool
  }

  struct Backoff {
    var initial: TimeAmount
    var maximum: TimeAmount
  }

  enum SendAction {
    /// Start connecting; buffer the encoded command until connected.
    case connectAndBuffer
    /// Buffer the encoded command; a connect is under way.
    case buffer
    /// Write the encoded command (flush at the end of the tick).
    case write
    /// Do not send: fail the consumer.
    case fail(Consumer, RedisError)
  }

  enum ReplyAction {
    case deliver(Consumer, RESPValue)
    /// The reply belonged to a command that timed out, or a handshake step that succeeded.
    case none
    /// A reply nobody asked for, or a failed handshake: close the channel.
    case close(RedisError)
  }

  enum ConnectedAction {
    /// Write the handshake, then everything buffered.
    case writeHandshakeAndBuffered
    /// `close()` came while connecting.
    case closeChannel
  }

  enum ConnectFailedAction {
    case failAndScheduleReconnect([Consumer], RedisError, delay: TimeAmount)
    case failAndFinishClose([Consumer], RedisError)
  }

  enum ClosedAction {
    /// Fail what was queued and connect again at once (the connection was healthy).
    case failAndReconnect([Consumer], RedisError)
    /// Fail what was queued and wait before retrying (the handshake was refused).
    case failAndScheduleReconnect([Consumer], RedisError, delay: TimeAmount)
    case failAndFinishClose([Consumer], RedisError)
    case none
  }

  enum CloseAction {
    case closeChannel
    case finishClose
    /// A connect is in flight; it will be closed when it completes.
    case none
  }

  private(set) var state: State = .idle
  private var queue = CircularBuffer<Entry>(initialCapacity: 64)
  private var failedConnects = 0
  /// Set when the server refused the handshake; the next close backs off instead of reconnecting at once.
  private var handshakeFailure: RedisError?
  /// The instant the connection's single timeout timer is set for, if any.
  private(set) var timerDeadline: NIODeadline?
  let backoff: Backoff

  init(backoff: Backoff) {
    self.backoff = backoff
  }

  var queuedCount: Int { queue.count }

  // MARK: Commands

  /// A command (or `count` pipelined commands sharing one consumer) to send. When the
  /// result says so, the caller (re)schedules its timer for `timerDeadline`.
  mutating func send(
    _ consumer: Consumer, count: Int = 1, deadline: NIODeadline
  ) -> (SendAction, rescheduleTimer: Bool) {
    let action: SendAction
    switch state {
    case .idle:
      state = .connecting
      action = .connectAndBuffer
    case .connecting:
      action = .buffer
    case .connected:
      action = .write
    case .backingOff(let error):
      return (.fail(consumer, error), false)
    case .closing, .closed:
      return (.fail(consumer, RedisError(.clientShutdown, "the Redis connection is closed")), false)
    }
    for _ in 0..<count {
      queue.append(Entry(consumer: consumer, deadline: deadline, isHandshake: false))
    }
    return (action, lowerTimer(to: deadline))
  }

  mutating func replyReceived(_ value: RESPValue) -> ReplyAction {
    guard case .connected = state else {
      if case .closing = state, let entry = queue.popFirst(), let consumer = entry.consumer {
        return .deliver(consumer, value)
      }
      return .none
    }
    guard let entry = queue.popFirst() else {
      return .close(RedisError(.protocolError, "the server sent a reply nobody asked for"))
    }
    if entry.isHandshake {
      if case .error(let message) = value {
        let error = RedisError(.connectionFailed, "the server refused the connection handshake: \(message)")
        handshakeFailure = error
        return .close(error)
      }
      return .none
    }
    guard let consumer = entry.consumer else { return .none }
    return .deliver(consumer, value)
  }

  /// The timer fired at `now`: fail what is overdue and say when to fire next.
  mutating func timerFired(now: NIODeadline) -> (expired: [Consumer], closeChannel: Bool) {
    timerDeadline = nil
    var expired: [Consumer] = []
    var closeChannel = false
    var next: NIODeadline?
    for index in queue.indices {
      let entry = queue[index]
      guard entry.consumer != nil || entry.isHandshake else { continue }
      if entry.deadline <= now {
        if entry.isHandshake {
          closeChannel = true
        } else if let consumer = entry.consumer {
          expired.append(consumer)
          queue[index].consumer = nil
        }
      } else if next == nil || entry.deadline < next! {
        next = entry.deadline
      }
    }
    timerDeadline = next
    return (expired, closeChannel)
  }

  // MARK: Connection lifecycle

  /// The socket is connected; `handshake` commands (AUTH, SELECT) go first.
  mutating func connected(
    handshakeSteps: Int, handshakeDeadline: NIODeadline
  ) -> (ConnectedAction, rescheduleTimer: Bool) {
    switch state {
    case .connecting:
      state = .connected
      handshakeFailure = nil
      for _ in 0..<handshakeSteps {
        queue.prepend(Entry(consumer: nil, deadline: handshakeDeadline, isHandshake: true))
      }
      return (.writeHandshakeAndBuffered, handshakeSteps > 0 && lowerTimer(to: handshakeDeadline))
    case .closing:
      return (.closeChannel, false)
    case .idle, .connected, .backingOff, .closed:
      preconditionFailure("connected in state \(state)")
    }
  }

  mutating func connectFailed(_ error: RedisError) -> ConnectFailedAction {
    let consumers = drainConsumers()
    switch state {
    case .connecting:
      failedConnects += 1
      state = .backingOff(error)
      return .failAndScheduleReconnect(consumers, error, delay: backoffDelay())
    case .closing:
      state = .closed
      return .failAndFinishClose(consumers, RedisError(.clientShutdown, "the Redis connection was closed"))
    case .idle, .connected, .backingOff, .closed:
      preconditionFailure("connect failed in state \(state)")
    }
  }

  mutating func backoffElapsed() -> Bool {
    guard case .backingOff = state else { return false }
    state = .connecting
    return true
  }

  /// The channel went away (server closed, network error, or we closed it).
  mutating func channelClosed(_ error: RedisError) -> ClosedAction {
    switch state {
    case .connected:
      let consumers = drainConsumers()
      if let failure = handshakeFailure {
        failedConnects += 1
        state = .backingOff(failure)
        return .failAndScheduleReconnect(consumers, failure, delay: backoffDelay())
      }
      failedConnects = 0
      state = .connecting
      return .failAndReconnect(consumers, error)
    case .closing:
      state = .closed
      return .failAndFinishClose(
        drainConsumers(), RedisError(.clientShutdown, "the Redis connection was closed"))
    case .idle, .connecting, .backingOff, .closed:
      return .none
    }
  }

  mutating func close() -> CloseAction {
    switch state {
    case .idle, .backingOff:
      state = .closed
      return .finishClose
    case .connecting:
      state = .closing
      return .none
    case .connected:
      state = .closing
      return .closeChannel
    case .closing, .closed:
      return .none
    }
  }

  // MARK: Helpers

  private mutating func lowerTimer(to deadline: NIODeadline) -> Bool {
    if let current = timerDeadline, current <= deadline { return false }
    timerDeadline = deadline
    return true
  }

  private mutating func drainConsumers() -> [Consumer] {
    var consumers: [Consumer] = []
    consumers.reserveCapacity(queue.count)
    while let entry = queue.popFirst() {
      if let consumer = entry.consumer { consumers.append(consumer) }
    }
    return consumers
  }

  /// Exponential backoff with full jitter, so many gateways do not reconnect in step.
  private func backoffDelay() -> TimeAmount {
    let exponent = min(failedConnects - 1, 20)
    let ceiling = min(backoff.initial.nanoseconds << Int64(max(exponent, 0)), backoff.maximum.nanoseconds)
    let floor = ceiling / 2
    return .nanoseconds(floor + Int64.random(in: 0...max(ceiling - floor, 0)))
  }
}
