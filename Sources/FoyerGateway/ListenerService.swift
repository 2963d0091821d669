public import NIOCore
public import NIOExtras
public import ServiceLifecycle

/// A service that owns one listening channel: `start()` binds it (tests call it directly
/// and read the port); under a service group, `run()` serves until graceful shutdown and then
/// drains: it stops accepting, lets every open connection finish the request it is serving
/// (idle keep-alive connections close at once), and gives up waiting after `drainTimeout`.
///
/// Draining is NIO's `ServerQuiescingHelper`: it sends `ChannelShouldQuiesceEvent` to each
/// connection, which `RequestSequencer` turns into "close after this response".
public protocol ListenerService: Service {
  func start() async throws -> any Channel
  /// Collects accepted connections; its handler must be on the server channel.
  var quiescing: ServerQuiescingHelper { get }
  /// How long in-flight requests get to finish once shutdown starts.
  var drainTimeout: TimeAmount { get }
  var eventLoopGroup: any EventLoopGroup { get }
}

extension ListenerService {
  public func run() async throws {
    _ = try await start()
    try? await gracefulShutdown()
    _ = await drain()
  }

  /// Stops accepting and waits (up to `drainTimeout`) for open connections to finish their
  /// current request. Returns `false` if some were still busy when time ran out.
  @discardableResult
  public func drain() async -> Bool {
    let loop = eventLoopGroup.next()
    let quiesced = loop.makePromise(of: Void.self)
    let finished = loop.makePromise(of: Bool.self)
    quiesced.futureResult.whenComplete { _ in finished.succeed(true) }
    let timer = loop.scheduleTask(in: drainTimeout) { finished.succeed(false) }
    quiescing.initiateShutdown(promise: quiesced)
    let drained = (try? await finished.futureResult.get()) ?? false
    timer.cancel()
    return drained
  }
}
