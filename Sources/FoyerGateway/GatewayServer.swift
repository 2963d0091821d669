internal import FoyerCore
public import Logging
internal import NIOConcurrencyHelpers
public import NIOCore
public import NIOExtras
internal import NIOHTTP1
internal import NIOPosix
internal import Prometheus
public import RedisNIO
internal import ServiceLifecycle
public import WaitingRoom

/// The public listener, as a `ListenerService`.
public final class GatewayServer: ListenerService, Sendable {
  public let configuration: GatewayConfiguration
  public let metrics: GatewayMetrics
  /// The rooms' traffic rules and their hit counts (the admin API shows them).
  public let trafficRules = TrafficRuleBook()
  public let eventLoopGroup: any EventLoopGroup
  public let quiescing: ServerQuiescingHelper
  public var drainTimeout: TimeAmount { configuration.drainTimeout }
  private let store: RoomStore
  private let logger: Logger

  public init(
    configuration: GatewayConfiguration, store: RoomStore, eventLoopGroup: any EventLoopGroup,
    metrics: GatewayMetrics = GatewayMetrics(), logger: Logger = .disabled
  ) {
    self.configuration = configuration
    self.store = store
    self.eventLoopGroup = eventLoopGroup
    self.metrics = metrics
    self.quiescing = ServerQuiescingHelper(group: eventLoopGroup)
    self.logger = logger
  }

  /// Binds and starts serving; returns the listening channel (its `localAddress` tells the
  /// port when `port` is 0).
  public func start() async throws -> any Channel {
    var signers: [ObjectIdentifier: NIOLoopBound<TokenSigner>] = [:]
    var pools: [ObjectIdentifier: NIOLoopBound<UpstreamPool>] = [:]
    var revocations: [ObjectIdentifier: NIOLoopBound<RevocationList>] = [:]
    for loop in eventLoopGroup.makeIterator() {
      revocations[ObjectIdentifier(loop)] = try await loop.submit {
        NIOLoopBound(RevocationList(), eventLoop: loop)
      }.get()
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
    let page = try configuration.waitingPageTemplate.map { try WaitingPage(template: $0) } ?? .builtIn
    let shared = GatewayContext(
      configuration: configuration, store: store, signers: signers, pools: pools, revocations: revocations,
      metrics: metrics,
      waitingPage: page, logger: logger, trafficRules: trafficRules,
      polls: PollDiscipline(percent: configuration.clients.minPollIntervalPercent))
    let metrics = self.metrics
    let quiescing = self.quiescing
    let limits = configuration.limits
    let openConnections = NIOLockedValueBox(0)
    let channel = try await ServerBootstrap(group: eventLoopGroup)
      .serverChannelInitializer { channel in
        channel.eventLoop.makeCompletedFuture {
          try channel.pipeline.syncOperations.addHandler(quiescing.makeServerChannelHandler(channel: channel))
        }
      }
      .serverChannelOption(ChannelOptions.backlog, value: configuration.backlog)
      .serverChannelOption(ChannelOptions.socketOption(.so_reuseaddr), value: 1)
      .childChannelOption(ChannelOptions.tcpOption(.tcp_nodelay), value: 1)
      .childChannelOption(ChannelOptions.maxMessagesPerRead, value: configuration.maxMessagesPerRead)
      // The express lane asks for reads itself (`ExpressLane.readMore`).
      .childChannelOption(ChannelOptions.autoRead, value: !configuration.expressLane)
      .childChannelInitializer { channel in
        // Over the connection limit: close at once, before any work.
        // One count: the limit reads it, the gauge shows it.
        let admitted = openConnections.withLockedValue { count -> Bool in
          guard count < limits.maxConnections else { return false }
          count += 1
          metrics.openConnections.set(Int64(count))
          return true
        }
        guard admitted else {
          metrics.connectionsRejected.increment()
          return channel.close()
        }
        channel.closeFuture.whenComplete { _ in
          openConnections.withLockedValue {
            $0 -= 1
            metrics.openConnections.set(Int64($0))
          }
        }
        return channel.eventLoop.makeCompletedFuture {
          var decoderLimits = NIOHTTPDecoderLimitConfiguration()
          decoderLimits.maxHeaderListSize = limits.maxHeaderBytes
          decoderLimits.maxHeaderFieldSize = limits.maxHeaderBytes
          // codec, then the guard (answers what never becomes a request), then pipelining
          // and draining, then the gateway; the raw writer and the express lane in front.
          let pipeline = channel.pipeline.syncOperations
          let connectionGuard = ConnectionGuard(limits: limits, bytesReported: shared.configuration.expressLane)
          try pipeline.addHandler(connectionGuard)
          try pipeline.configureHTTPServerPipeline(
            position: .first, withPipeliningAssistance: false, withErrorHandling: false,
            withEncoderConfiguration: .init(), withDecoderLimitConfiguration: decoderLimits)
          try pipeline.addHandler(RequestSequencer())
          // Below the codec: forwarded answers go out as the one response rewriter made them.
          let output = RawResponseWriter()
          try pipeline.addHandler(output, position: .first)
          try pipeline.addHandler(GatewayHandler(shared: shared, eventLoop: channel.eventLoop, output: output))
          // In front of the codec: the hot requests never reach it.
          if shared.configuration.expressLane {
            try pipeline.addHandler(
              ExpressLane(shared: shared, eventLoop: channel.eventLoop, connectionGuard: connectionGuard),
              position: .first)
          }
        }
      }
      .bind(host: configuration.host, port: configuration.port).get()
    let refreshLoop = eventLoopGroup.next()
    let (store, configuration, logger) = (self.store, self.configuration, self.logger)
    let refreshing = try await refreshLoop.submit {
      RevocationRefresher(
        store: store, rooms: configuration.rooms.map(\.id), lists: revocations,
        interval: configuration.revocationRefreshInterval, metrics: metrics, logger: logger,
        on: refreshLoop
      ).start()
    }.get()
    let rules = trafficRules.refresh(
      store: store, rooms: configuration.rooms.map(\.id), every: configuration.trafficRulesRefreshInterval,
      on: refreshLoop, logger: logger)
    channel.closeFuture.whenComplete { _ in
      refreshing.cancel()
      rules.cancel()
    }
    logger.info("gateway listening", metadata: ["address": "\(channel.localAddress.map { "\($0)" } ?? "?")"])
    return channel
  }

}
