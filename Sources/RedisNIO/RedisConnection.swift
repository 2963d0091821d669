public import Logging
public import NIOCore
internal import NIOPosix

/// One multiplexed, self-healing connection to Redis, bound to one event loop.
///
/// Any number of commands may be in flight; their encodings written during one event-loop
/// tick go out in one flush. When the connection drops, queued commands fail with
/// `connectionClosed` and it reconnects at once; when a connect fails, commands fail fast
/// with `connectionFailed` while it retries with exponential backoff.
///
/// Thread safety: all mutable state is touched only on `eventLoop`; calls from elsewhere
/// hop onto it. Callers already on the loop (channel handlers) pay no hop.
public final class RedisConnection: @unchecked Sendable {
  public let eventLoop: any EventLoop
  public let configuration: RedisConfiguration
  private let logger: Logger

  // Loop-confined state.
  private var machine: RedisConnectionStateMachine<ReplyConsumer>
  private var channel: (any Channel)?
  private var outbound: ByteBuffer
  private var flushScheduled = false
  private var timer: Scheduled<Void>?
  private var reconnect: Scheduled<Void>?
  /// Why we closed the current channel ourselves, so queued commands fail with that reason.
  private var closeReason: RedisError?
  /// Made by the first `close()`, so a connection dropped without closing leaks no promise.
  private var closePromise: EventLoopPromise<Void>?
  private var isClosed = false

  public init(
    configuration: RedisConfiguration, eventLoop: any EventLoop, logger: Logger = .disabled
  ) {
    self.eventLoop = eventLoop
    self.configuration = configuration
    self.logger = logger
    self.machine = RedisConnectionStateMachine(
      backoff: .init(initial: configuration.initialBackoff, maximum: configuration.maximumBackoff))
    self.outbound = ByteBufferAllocator().buffer(capacity: 4096)
  }

  // MARK: Public API

  /// Sends one command. A top-level error reply fails the future with `.serverError`.
  public func send(_ command: RedisCommand, timeout: TimeAmount? = nil) -> EventLoopFuture<RESPValue> {
    let promise = eventLoop.makePromise(of: RESPValue.self)
    let deadline = NIODeadline.now() + (timeout ?? configuration.commandTimeout)
    if eventLoop.inEventLoop {
      enqueue(count: 1, consumer: .single(promise), deadline: deadline, encode: command.encode(into:))
    } else {
      eventLoop.execute {
        self.enqueue(count: 1, consumer: .single(promise), deadline: deadline, encode: command.encode(into:))
      }
    }
    return promise.futureResult
  }

  /// Sends `commands` back to back and answers with all replies in order. Error replies stay
  /// values (`.error`), since each command succeeds or fails on its own.
  public func send(
    pipeline commands: [RedisCommand], timeout: TimeAmount? = nil
  ) -> EventLoopFuture<[RESPValue]> {
    let promise = eventLoop.makePromise(of: [RESPValue].self)
    guard !commands.isEmpty else {
      promise.succeed([])
      return promise.futureResult
    }
    let deadline = NIODeadline.now() + (timeout ?? configuration.commandTimeout)
    if eventLoop.inEventLoop {
      enqueue(pipeline: commands, promise: promise, deadline: deadline)
    } else {
      eventLoop.execute { self.enqueue(pipeline: commands, promise: promise, deadline: deadline) }
    }
    return promise.futureResult
  }

  /// Sends the `count` commands that `encode` appends to the buffer and calls `completion`
  /// with their replies in order (error replies stay values, as with `send(pipeline:)`).
  ///
  /// For the gateway's per-request path, which is already on this connection's event loop:
  /// no promise, no future chain and no `RedisCommand` values. Must be called on `eventLoop`;
  /// `completion` runs there, exactly once, also when the commands fail or time out.
  public func send(
    count: Int, timeout: TimeAmount? = nil, encode: (inout ByteBuffer) -> Void,
    completion: @escaping (Result<[RESPValue], RedisError>) -> Void
  ) {
    eventLoop.preconditionInEventLoop()
    precondition(count > 0, "a pipeline of no commands has no replies to wait for")
    let deadline = NIODeadline.now() + (timeout ?? configuration.commandTimeout)
    let collector = PipelineCollector(expected: count, completion: .callback(completion))
    enqueue(count: count, consumer: .pipeline(collector), deadline: deadline, encode: encode)
  }

  public func send(_ command: RedisCommand, timeout: TimeAmount? = nil) async throws -> RESPValue {
    try await send(command, timeout: timeout).get()
  }

  public func send(pipeline commands: [RedisCommand], timeout: TimeAmount? = nil) async throws -> [RESPValue]
  {
    try await send(pipeline: commands, timeout: timeout).get()
  }

  /// Closes the connection; queued commands fail with `clientShutdown`. Idempotent.
  public func close() -> EventLoopFuture<Void> {
    eventLoop.flatSubmit { self.runClose() }
  }

  public func close() async {
    try? await close().get()
  }

  // MARK: Running the state machine

  private func enqueue(
    pipeline commands: [RedisCommand], promise: EventLoopPromise<[RESPValue]>, deadline: NIODeadline
  ) {
    let collector = PipelineCollector(expected: commands.count, completion: .promise(promise))
    enqueue(count: commands.count, consumer: .pipeline(collector), deadline: deadline) { buffer in
      for command in commands { command.encode(into: &buffer) }
    }
  }

  private func enqueue(
    count: Int, consumer: ReplyConsumer, deadline: NIODeadline, encode: (inout ByteBuffer) -> Void
  ) {
    let (action, reschedule) = machine.send(consumer, count: count, deadline: deadline)
    switch action {
    case .connectAndBuffer:
      encode(&outbound)
      startConnect()
    case .buffer:
      encode(&outbound)
    case .write:
      encode(&outbound)
      scheduleFlush()
    case .fail(let consumer, let error):
      consumer.fail(error)
    }
    if reschedule { rescheduleTimer() }
  }

  /// Coalesces every write of this tick into one flush.
  private func scheduleFlush() {
    guard !flushScheduled else { return }
    flushScheduled = true
    eventLoop.execute { self.flush() }
  }

  private func flush() {
    flushScheduled = false
    guard let channel, outbound.readableBytes > 0 else { return }
    let bytes = outbound
    outbound = channel.allocator.buffer(capacity: max(4096, bytes.readableBytes))
    channel.writeAndFlush(bytes, promise: nil)
  }

  func replyReceived(_ value: RESPValue, from channel: any Channel) {
    guard channel === self.channel else { return }
    switch machine.replyReceived(value) {
    case .deliver(let consumer, let value):
      consumer.deliver(value)
    case .none:
      break
    case .close(let error):
      logger.error("closing Redis connection", metadata: ["error": "\(error)"])
      closeReason = error
      channel.close(promise: nil)
    }
  }

  func protocolViolation(_ error: RedisError, on channel: any Channel) {
    guard channel === self.channel else { return }
    logger.error("Redis protocol error; closing the connection", metadata: ["error": "\(error.message)"])
    closeReason = error
    channel.close(promise: nil)
  }

  func channelInactive(_ channel: any Channel) {
    guard channel === self.channel else { return }
    self.channel = nil
    outbound.clear()
    let error = closeReason ?? RedisError(.connectionClosed, "the connection to Redis closed")
    closeReason = nil
    switch machine.channelClosed(error) {
    case .failAndReconnect(let consumers, let error):
      logger.warning(
        "Redis connection lost; reconnecting", metadata: ["failed_commands": "\(consumers.count)"])
      for consumer in consumers { consumer.fail(error) }
      startConnect()
    case .failAndScheduleReconnect(let consumers, let error, let delay):
      for consumer in consumers { consumer.fail(error) }
      scheduleReconnect(after: delay)
    case .failAndFinishClose(let consumers, let error):
      for consumer in consumers { consumer.fail(error) }
      finishClose()
    case .none:
      break
    }
  }

  private func startConnect() {
    let bootstrap = ClientBootstrap(group: eventLoop)
      .connectTimeout(configuration.connectTimeout)
      .channelOption(ChannelOptions.tcpOption(.tcp_nodelay), value: 1)
      .channelOption(ChannelOptions.socketOption(.so_keepalive), value: 1)
      .channelInitializer { channel in
        channel.eventLoop.makeCompletedFuture {
          try channel.pipeline.syncOperations.addHandler(RedisChannelHandler(connection: self))
        }
      }
    let future: EventLoopFuture<any Channel>
    switch configuration.endpoint {
    case .tcp(let host, let port): future = bootstrap.connect(host: host, port: port)
    case .unixSocket(let path): future = bootstrap.connect(unixDomainSocketPath: path)
    }
    future.hop(to: eventLoop).whenComplete { result in
      switch result {
      case .success(let channel): self.connected(channel)
      case .failure(let error): self.connectFailed(error)
      }
    }
  }

  private func connected(_ channel: any Channel) {
    let handshake = handshakeCommands()
    let deadline = NIODeadline.now() + configuration.connectTimeout
    let (action, reschedule) = machine.connected(handshakeSteps: handshake.count, handshakeDeadline: deadline)
    switch action {
    case .writeHandshakeAndBuffered:
      self.channel = channel
      if !handshake.isEmpty {
        var buffer = channel.allocator.buffer(capacity: 64)
        for command in handshake { command.encode(into: &buffer) }
        buffer.writeBuffer(&outbound)
        outbound = buffer
      }
      logger.debug("connected to Redis")
      flush()
    case .closeChannel:
      self.channel = channel
      channel.close(promise: nil)
    }
    if reschedule { rescheduleTimer() }
  }

  private func connectFailed(_ error: any Error) {
    outbound.clear()
    let redisError = RedisError(.connectionFailed, "cannot connect to Redis: \(error)")
    switch machine.connectFailed(redisError) {
    case .failAndScheduleReconnect(let consumers, let error, let delay):
      logger.warning(
        "Redis connect failed",
        metadata: ["error": "\(error.message)", "retry_ms": "\(delay.nanoseconds / 1_000_000)"])
      for consumer in consumers { consumer.fail(error) }
      scheduleReconnect(after: delay)
    case .failAndFinishClose(let consumers, let error):
      for consumer in consumers { consumer.fail(error) }
      finishClose()
    }
  }

  private func scheduleReconnect(after delay: TimeAmount) {
    reconnect = eventLoop.scheduleTask(in: delay) {
      self.reconnect = nil
      if self.machine.backoffElapsed() { self.startConnect() }
    }
  }

  private func rescheduleTimer() {
    timer?.cancel()
    guard let deadline = machine.timerDeadline else {
      timer = nil
      return
    }
    timer = eventLoop.scheduleTask(deadline: deadline) { self.timerFired() }
  }

  private func timerFired() {
    timer = nil
    let (expired, closeChannel) = machine.timerFired(now: .now())
    let error = RedisError(.timeout, "no reply from Redis within the command deadline")
    for consumer in expired { consumer.fail(error) }
    if closeChannel {
      logger.error("Redis handshake timed out; closing the connection")
      closeReason = RedisError(.timeout, "the Redis connection handshake timed out")
      channel?.close(promise: nil)
    }
    rescheduleTimer()
  }

  private func runClose() -> EventLoopFuture<Void> {
    if isClosed { return eventLoop.makeSucceededVoidFuture() }
    let promise = closePromise ?? eventLoop.makePromise()
    closePromise = promise
    switch machine.close() {
    case .closeChannel: channel?.close(promise: nil)
    case .finishClose: finishClose()
    case .none: break
    }
    return promise.futureResult
  }

  private func finishClose() {
    timer?.cancel()
    timer = nil
    reconnect?.cancel()
    reconnect = nil
    isClosed = true
    closePromise?.succeed(())
    closePromise = nil
  }

  private func handshakeCommands() -> [RedisCommand] {
    var commands: [RedisCommand] = []
    if let password = configuration.password {
      if let username = configuration.username {
        commands.append(RedisCommand("AUTH", username, password))
      } else {
        commands.append(RedisCommand("AUTH", password))
      }
    }
    if configuration.database != 0 {
      commands.append(RedisCommand("SELECT", String(configuration.database)))
    }
    return commands
  }
}

/// Who is waiting for a reply.
enum ReplyConsumer {
  case single(EventLoopPromise<RESPValue>)
  case pipeline(PipelineCollector)

  func deliver(_ value: RESPValue) {
    switch self {
    case .single(let promise):
      if case .error(let message) = value {
        promise.fail(RedisError(.serverError, message))
      } else {
        promise.succeed(value)
      }
    case .pipeline(let collector):
      collector.append(value)
    }
  }

  func fail(_ error: RedisError) {
    switch self {
    case .single(let promise): promise.fail(error)
    case .pipeline(let collector): collector.fail(error)
    }
  }
}

/// Gathers the replies of one pipelined batch; completes once, on the last reply or the
/// first failure. Touched only on the connection's event loop.
final class PipelineCollector {
  enum Completion {
    case promise(EventLoopPromise<[RESPValue]>)
    case callback((Result<[RESPValue], RedisError>) -> Void)
  }

  private let completion: Completion
  private let expected: Int
  private var values: [RESPValue]
  private var done = false

  init(expected: Int, completion: Completion) {
    self.completion = completion
    self.expected = expected
    self.values = []
    values.reserveCapacity(expected)
  }

  func append(_ value: RESPValue) {
    guard !done else { return }
    values.append(value)
    if values.count == expected { complete(.success(values)) }
  }

  func fail(_ error: RedisError) {
    guard !done else { return }
    complete(.failure(error))
  }

  private func complete(_ result: Result<[RESPValue], RedisError>) {
    done = true
    switch completion {
    case .promise(let promise): promise.completeWith(result.mapError { $0 as any Error })
    case .callback(let callback): callback(result)
    }
  }
}

/// Parses replies off the socket and hands them to the connection, on its event loop.
final class RedisChannelHandler: ChannelInboundHandler {
  typealias InboundIn = ByteBuffer

  private let parser = RESPParser()
  private let connection: RedisConnection
  private var failed = false

  init(connection: RedisConnection) {
    self.connection = connection
  }

  func channelRead(context: ChannelHandlerContext, data: NIOAny) {
    guard !failed else { return }
    let buffer = unwrapInboundIn(data)
    do {
      try parser.feed(buffer)
      while let value = try parser.next() {
        connection.replyReceived(value, from: context.channel)
      }
    } catch {
      failed = true
      connection.protocolViolation(error, on: context.channel)
    }
  }

  func channelInactive(context: ChannelHandlerContext) {
    connection.channelInactive(context.channel)
    context.fireChannelInactive()
  }

  func errorCaught(context: ChannelHandlerContext, error: any Error) {
    context.close(promise: nil)
  }
}
