public import NIOCore
public import ServiceLifecycle

/// A service that owns one listening channel: `start()` binds it (tests call it directly
/// and read the port); under a service group, `run()` serves until graceful shutdown and then
/// stops accepting. Open connections are not yet drained with a deadline.
public protocol ListenerService: Service {
  func start() async throws -> any Channel
}

extension ListenerService {
  public func run() async throws {
    let channel = try await start()
    try? await gracefulShutdown()
    try? await channel.close()
  }
}
