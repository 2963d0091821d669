/// Every failure of a Redis command or connection.
public struct RedisError: Error, Hashable, Sendable, CustomStringConvertible {
  public struct Code: Hashable, Sendable, CustomStringConvertible {
    private enum Base: String, Hashable, Sendable {
      case connectionClosed, connectionFailed, timeout, protocolError, serverError, unexpectedReply
      case invalidConfiguration, clientShutdown, notReplicated
    }
    private let base: Base
    private init(_ base: Base) { self.base = base }

    /// The connection closed while the command was queued or in flight.
    public static let connectionClosed = Code(.connectionClosed)
    /// No connection could be established (Redis down or refusing); sent commands fail fast.
    public static let connectionFailed = Code(.connectionFailed)
    /// The command's deadline passed before its reply arrived.
    public static let timeout = Code(.timeout)
    /// The server sent bytes that are not RESP; the connection is closed.
    public static let protocolError = Code(.protocolError)
    /// Redis answered with an error reply; `message` is that reply.
    public static let serverError = Code(.serverError)
    /// The reply had a shape the caller did not expect.
    public static let unexpectedReply = Code(.unexpectedReply)
    /// A URL or setting that cannot work.
    public static let invalidConfiguration = Code(.invalidConfiguration)
    /// The client was shut down.
    public static let clientShutdown = Code(.clientShutdown)
    /// A write ran but too few replicas confirmed it within the wait (`ReplicaWait`): it may
    /// not survive a failover. Retrying an idempotent write is safe.
    public static let notReplicated = Code(.notReplicated)

    public var description: String { base.rawValue }
  }

  public let code: Code
  public let message: String

  public init(_ code: Code, _ message: String) {
    self.code = code
    self.message = message
  }

  public var description: String { "redis \(code): \(message)" }

  /// For a server error, its prefix (`NOSCRIPT`, `WRONGTYPE`, `ERR` …).
  public var serverErrorPrefix: Substring? {
    code == .serverError ? message.prefix(while: { $0 != " " }) : nil
  }
}
