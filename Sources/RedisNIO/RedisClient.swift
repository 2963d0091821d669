public import Logging
public import NIOCore

/// Redis for a whole event-loop group: one multiplexed connection per event loop, so code
/// running on a loop (a channel handler) talks to Redis without a thread hop.
public final class RedisClient: Sendable {
  public let configuration: RedisConfiguration
  private let group: any EventLoopGroup
  private let connections: [RedisConnection]
  private let indexByLoop: [ObjectIdentifier: Int]

  public init(
    configuration: RedisConfiguration, eventLoopGroup: any EventLoopGroup,
    logger: Logger = .disabled
  ) {
    self.configuration = configuration
    self.group = eventLoopGroup
    var connections: [RedisConnection] = []
    var indexByLoop: [ObjectIdentifier: Int] = [:]
    for loop in eventLoopGroup.makeIterator() {
      indexByLoop[ObjectIdentifier(loop)] = connections.count
      connections.append(RedisConnection(configuration: configuration, eventLoop: loop, logger: logger))
    }
    self.connections = connections
    self.indexByLoop = indexByLoop
  }

  /// The connection of `eventLoop`, or of the group's next loop when `eventLoop` is not one of the group's.
  public func connection(on eventLoop: any EventLoop) -> RedisConnection {
    if let index = indexByLoop[ObjectIdentifier(eventLoop)] { return connections[index] }
    return connection(on: group.next())
  }

  /// The group's event loops, one connection each.
  public var eventLoops: [any EventLoop] { connections.map(\.eventLoop) }

  /// The connection of the current event loop when called on one, otherwise the next loop's.
  public var connection: RedisConnection {
    connection(on: group.any())
  }

  public func send(_ command: RedisCommand, timeout: TimeAmount? = nil) -> EventLoopFuture<RESPValue> {
    connection.send(command, timeout: timeout)
  }

  public func send(_ command: RedisCommand, timeout: TimeAmount? = nil) async throws -> RESPValue {
    try await connection.send(command, timeout: timeout).get()
  }

  public func send(pipeline commands: [RedisCommand], timeout: TimeAmount? = nil) async throws -> [RESPValue]
  {
    try await connection.send(pipeline: commands, timeout: timeout).get()
  }

  /// Closes every connection.
  public func close() async {
    for connection in connections { await connection.close() }
  }
}

extension Logger {
  /// The default of every Foyer library type: like other server libraries (AsyncHTTPClient,
  /// postgres-nio), a library logs only through a logger its owner passes in.
  public static let disabled = Logger(label: "foyer.disabled", factory: { _ in SwiftLogNoOpLogHandler() })
}
