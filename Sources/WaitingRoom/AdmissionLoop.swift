public import Logging
public import NIOCore
public import RedisNIO
public import ServiceLifecycle

/// How often the admission loop ticks.
public struct AdmissionLoopConfiguration: Sendable {
  /// Tick period while any room has visitors waiting.
  public var busyInterval: TimeAmount
  /// Tick period while every queue is empty (joins admit themselves then: rule 7).
  public var idleInterval: TimeAmount
  /// How often the list of rooms is read again.
  public var roomRefreshInterval: TimeAmount
  /// Most admissions per room per tick; keeps each script run well under a millisecond or two.
  public var batchLimit: Int

  /// The default `busyInterval`: how far apart admissions come while people wait.
  public static let busyTick = TimeAmount.milliseconds(100)

  public init(
    busyInterval: TimeAmount = busyTick, idleInterval: TimeAmount = .seconds(1),
    roomRefreshInterval: TimeAmount = .seconds(2), batchLimit: Int = 1_000
  ) {
    self.busyInterval = busyInterval
    self.idleInterval = idleInterval
    self.roomRefreshInterval = roomRefreshInterval
    self.batchLimit = batchLimit
  }
}

/// Ticks every room: fast while people wait, slowly otherwise. Safe to run in every gateway
/// at once — each tick is one atomic script, so N loops admit exactly as one would.
public struct AdmissionLoop: Service {
  private let store: RoomStore
  private let configuration: AdmissionLoopConfiguration
  private let logger: Logger
  private let onTick: (@Sendable (String, AdmissionTick) -> Void)?

  /// `onTick` sees every tick's outcome (metrics, tests).
  public init(
    store: RoomStore, configuration: AdmissionLoopConfiguration = .init(),
    logger: Logger = .disabled,
    onTick: (@Sendable (String, AdmissionTick) -> Void)? = nil
  ) {
    self.store = store
    self.configuration = configuration
    self.logger = logger
    self.onTick = onTick
  }

  public func run() async throws {
    do {
      try await cancelWhenGracefulShutdown {
        try await self.loop()
      }
    } catch is CancellationError {
      // Graceful shutdown cancels the sleep between ticks: a normal end, not a failure.
    }
  }

  private func loop() async throws {
    var rooms: [String] = []
    var roomsReadAt = ContinuousClock.now - .seconds(3_600)
    let refresh = Duration.nanoseconds(configuration.roomRefreshInterval.nanoseconds)
    while !Task.isCancelled {
      if ContinuousClock.now - roomsReadAt >= refresh {
        do {
          rooms = try await store.rooms()
          roomsReadAt = .now
        } catch {
          logger.warning("cannot read the room list", metadata: ["error": "\(error)"])
        }
      }
      var busy = false
      for room in rooms {
        do {
          let tick = try await store.admit(room: room, batch: configuration.batchLimit)
          onTick?(room, tick)
          if tick.waiting > 0 { busy = true }
        } catch let error as RoomStoreError where error.code == .noSuchRoom {
          roomsReadAt = ContinuousClock.now - refresh  // deleted: read the list again
        } catch {
          logger.warning("admission tick failed", metadata: ["room": "\(room)", "error": "\(error)"])
        }
      }
      let pause = busy ? configuration.busyInterval : configuration.idleInterval
      try await Task.sleep(for: .nanoseconds(pause.nanoseconds))
    }
  }
}
