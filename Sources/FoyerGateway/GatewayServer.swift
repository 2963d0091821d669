internal import FoyerCore
public import Logging
public import NIOCore
internal import NIOHTTP1
internal import NIOPosix
public import RedisNIO
public import ServiceLifecycle
public import WaitingRoom

/// The public listener, as a service-lifecycle `Service`: it stops accepting on graceful
/// shutdown and closes once open connections are done.
public final class GatewayServer: Service, Sendable {
  public let configuration: GatewayConfiguration
  private let store: RoomStore
  private let group: any EventLoopGroup
  private let logger: Logger

  public init(
    configuration: GatewayConfiguration, store: RoomStore, eventLoopGroup: any EventLoopGroup,
    logger: Logger = .disabled
  ) {
    self.configuration = configuration
    self.store = store
    self.group = eventLoopGroup
    self.logger = logger
  }

  /// Binds and starts serving; returns the listening channel (its `localAddress` tells the
  /// port when `port` is 0).
  public func start() async throws -> any Channel {
    var signers: [ObjectIdentifier: NIOLoopBound<TokenSigner>] = [:]
    var pools: [ObjectIdentifier: NIOLoopBound<UpstreamPool>] = [:]
    for loop in group.makeIterator() {
      let keyRing = configuration.keyRing
      signers[ObjectIdentifier(loop)] = try await loop.submit {
        NIOLoopBound(try TokenSigner(keyRing: keyRing), eventLoop: loop)
      }.get()
      if let upstream = configuration.upstream {
        pools[ObjectIdentifier(loop)] = try await loop.submit {
          NIOLoopBound(UpstreamPool(eventLoop: loop, configuration: upstream), eventLoop: loop)
        }.get()
      }
    }
    let shared = GatewayContext(
      configuration: configuration, store: store, signers: signers, pools: pools, logger: logger)
    let channel = try await ServerBootstrap(group: group)
      .serverChannelOption(ChannelOptions.backlog, value: configuration.backlog)
      .serverChannelOption(ChannelOptions.socketOption(.so_reuseaddr), value: 1)
      .childChannelOption(ChannelOptions.tcpOption(.tcp_nodelay), value: 1)
      .childChannelOption(ChannelOptions.maxMessagesPerRead, value: configuration.maxMessagesPerRead)
      .childChannelInitializer { channel in
        channel.eventLoop.makeCompletedFuture {
          try channel.pipeline.syncOperations.configureHTTPServerPipeline(withErrorHandling: true)
          try channel.pipeline.syncOperations.addHandler(GatewayHandler(shared: shared))
        }
      }
      .bind(host: configuration.host, port: configuration.port).get()
    logger.info("gateway listening", metadata: ["address": "\(channel.localAddress.map { "\($0)" } ?? "?")"])
    return channel
  }

  public func run() async throws {
    let channel = try await start()
    try? await gracefulShutdown()
    logger.info("gateway stopping: no new connections")
    try? await channel.close()
  }
}
