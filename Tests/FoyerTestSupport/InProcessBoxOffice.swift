public import BoxOffice
public import Foundation
internal import Logging
internal import NIOCore
internal import ServiceLifecycle

/// A BoxOffice serving in this process on a free port, its schema migrated and one event
/// created; `stop()` shuts its services down gracefully.
public final class InProcessBoxOffice: @unchecked Sendable {
  public let server: BoxOfficeServer
  public let port: Int
  public let event: Event
  private let group: ServiceGroup
  private let task: Task<Void, any Error>

  /// `expiryWorker: false` leaves expired holds to the lazy takeover alone.
  public static func start(
    _ configuration: BoxOfficeConfiguration, adminToken: String? = nil, expiryWorker: Bool = true,
    event: EventSpec
  ) async throws -> InProcessBoxOffice {
    let logger = Logger(label: "test")
    let server = try BoxOfficeServer(configuration: configuration, adminToken: adminToken, logger: logger)
    let (ports, continuation) = AsyncStream<Int>.makeStream()
    let services = server.services(expiryWorker: expiryWorker) {
      continuation.yield($0.localAddress?.port ?? 0)
    }
    let group = ServiceGroup(configuration: .init(services: services, logger: logger))
    // The group ending before the server listens (a failed migration) ends the wait too.
    let task = Task {
      defer { continuation.finish() }
      try await group.run()
    }
    var iterator = ports.makeAsyncIterator()
    guard let port = await iterator.next() else {
      throw TestServiceError("BoxOffice did not start: \(await task.result)")
    }
    // The server listens only once the migrations are applied.
    let created = try await server.inventory.createEvent(event)
    return InProcessBoxOffice(server: server, port: port, event: created, group: group, task: task)
  }

  private init(
    server: BoxOfficeServer, port: Int, event: Event, group: ServiceGroup, task: Task<Void, any Error>
  ) {
    self.server = server
    self.port = port
    self.event = event
    self.group = group
    self.task = task
  }

  public func stop() async {
    await group.triggerGracefulShutdown()
    _ = try? await task.value
  }
}
