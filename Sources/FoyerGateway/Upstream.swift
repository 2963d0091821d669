public import NIOCore
internal import NIOHTTP1
internal import NIOPosix

/// Where the gateway forwards admitted traffic.
public struct UpstreamConfiguration: Sendable, Hashable {
  public var host: String
  public var port: Int
  /// Connect deadline; a refused or timed-out connect answers 502.
  public var connectTimeout: TimeAmount
  /// Deadline for the upstream's response head; past it the answer is 504.
  public var responseTimeout: TimeAmount
  /// Idle keep-alive connections kept per event loop.
  public var maxIdlePerEventLoop: Int
  /// Connections open per event loop at most (connecting, busy or idle); a request over it
  /// waits for one to be released.
  public var maxConnectionsPerEventLoop: Int
  /// How long such a request waits before it is answered `503 upstream_busy`.
  public var queueTimeout: TimeAmount
  /// An idle connection is closed after this long (before the upstream closes it on us).
  public var idleTimeout: TimeAmount

  public init(
    host: String, port: Int, connectTimeout: TimeAmount = .seconds(2),
    responseTimeout: TimeAmount = .seconds(30),
    maxIdlePerEventLoop: Int = 64, maxConnectionsPerEventLoop: Int = 1_024,
    queueTimeout: TimeAmount = .seconds(5), idleTimeout: TimeAmount = .seconds(30)
  ) {
    self.maxConnectionsPerEventLoop = maxConnectionsPerEventLoop
    self.queueTimeout = queueTimeout
    self.idleTimeout = idleTimeout
    self.host = host
    self.port = port
    self.connectTimeout = connectTimeout
    self.responseTimeout = responseTimeout
    self.maxIdlePerEventLoop = maxIdlePerEventLoop
  }

  /// Parses `http://host[:port]` (TLS to the upstream is not supported yet).
  public init(url: String) throws(GatewayConfigurationError) {
    guard url.hasPrefix("http://") else {
      throw GatewayConfigurationError("upstream must be http://host[:port] (got '\(url)')")
    }
    var rest = url.dropFirst("http://".count)
    if rest.hasSuffix("/") { rest = rest.dropLast() }
    if let colon = rest.lastIndex(of: ":") {
      guard let port = Int(rest[rest.index(after: colon)...]), (1...65535).contains(port) else {
        throw GatewayConfigurationError("upstream port must be 1-65535 (got '\(url)')")
      }
      self.init(host: String(rest[..<colon]), port: port)
    } else {
      self.init(host: String(rest), port: 80)
    }
    guard !host.isEmpty else { throw GatewayConfigurationError("upstream host is empty (got '\(url)')") }
  }
}

public struct GatewayConfigurationError: Error, CustomStringConvertible, Sendable {
  public let description: String
  init(_ description: String) { self.description = description }
}

/// One keep-alive connection to the upstream and the relay that serves it.
struct UpstreamConnection {
  let channel: any Channel
  let relay: UpstreamRelay
  /// Whether it served an exchange before. The upstream may close an idle keep-alive
  /// connection just as a request goes out; on a reused connection that failure is retried.
  var reused = false
}

/// The pool's rules, apart from the channels (DESIGN §8; async-http-client's
/// `HTTPConnectionPool.StateMachine` is the model): at most `maxConnections` open per event
/// loop (connecting, leased or idle), requests over that wait in order for a released
/// connection, and at most `maxIdle` idle ones are kept.
struct UpstreamPoolStateMachine {
  typealias Connection = ObjectIdentifier
  typealias Waiter = Int

  let maxConnections: Int
  let maxIdle: Int
  /// Connecting, leased and idle.
  private(set) var open = 0
  /// Most recently released last.
  private(set) var idle: [Connection] = []
  private var waiters = CircularBuffer<Waiter>()
  private var nextWaiter = 0

  init(maxConnections: Int, maxIdle: Int) {
    self.maxConnections = max(1, maxConnections)
    self.maxIdle = maxIdle
  }

  enum Acquire: Equatable {
    /// Use this idle connection (the caller checks it is still open; else `closed` it).
    case lease(Connection)
    case connect
    /// Over the cap: wait for a released connection (or a free place).
    case wait(Waiter)
  }

  /// `fresh` skips idle connections (the retry after a stale one) unless the cap is reached.
  mutating func acquire(fresh: Bool = false) -> Acquire {
    if !fresh, let connection = popIdle() { return .lease(connection) }
    if open < maxConnections {
      open += 1
      return .connect
    }
    if let connection = popIdle() { return .lease(connection) }
    let waiter = nextWaiter
    nextWaiter &+= 1
    waiters.append(waiter)
    return .wait(waiter)
  }

  /// The most recently released idle connection, taken for a lease.
  mutating func popIdle() -> Connection? { idle.popLast() }

  enum Release: Equatable {
    case hand(to: Waiter)
    case keepIdle
    case close
  }

  /// A leased connection whose exchange ended cleanly.
  mutating func released(_ connection: Connection) -> Release {
    if let waiter = waiters.popFirst() { return .hand(to: waiter) }
    guard idle.count < maxIdle else { return .close }
    idle.append(connection)
    return .keepIdle
  }

  enum Freed: Equatable {
    case none
    /// A place is free and someone waits: connect for them.
    case connect(for: Waiter)
  }

  /// A connection closed (wherever it was), or a connect failed.
  mutating func closed(_ connection: Connection?) -> Freed {
    open -= 1
    if let connection, let index = idle.lastIndex(of: connection) { idle.remove(at: index) }
    guard let waiter = waiters.popFirst() else { return .none }
    open += 1
    return .connect(for: waiter)
  }

  /// An idle connection should go (its idle time ran out): `true` if it was still idle.
  mutating func expire(_ connection: Connection) -> Bool {
    guard let index = idle.firstIndex(of: connection) else { return false }
    idle.remove(at: index)
    return true
  }

  /// A waiter's deadline passed: `true` if it was still waiting.
  mutating func timedOut(_ waiter: Waiter) -> Bool {
    guard let index = waiters.firstIndex(of: waiter) else { return false }
    waiters.remove(at: index)
    return true
  }

  var waiting: Int { waiters.count }
}

public enum UpstreamPoolError: Error, Hashable {
  /// Every allowed connection stayed busy for the whole wait.
  case busy
}

/// Keep-alive connections to the upstream, one pool per event loop, so a request and its
/// upstream connection share a thread. Carries out `UpstreamPoolStateMachine`.
final class UpstreamPool {
  let eventLoop: any EventLoop
  let configuration: UpstreamConfiguration
  private var machine: UpstreamPoolStateMachine
  private var idle: [ObjectIdentifier: (connection: UpstreamConnection, expiry: Scheduled<Void>)] = [:]
  private var waiters: [Int: (promise: EventLoopPromise<UpstreamConnection>, deadline: Scheduled<Void>)] = [:]

  init(eventLoop: any EventLoop, configuration: UpstreamConfiguration) {
    self.eventLoop = eventLoop
    self.configuration = configuration
    machine = UpstreamPoolStateMachine(
      maxConnections: configuration.maxConnectionsPerEventLoop, maxIdle: configuration.maxIdlePerEventLoop)
  }

  /// An idle connection, a new one, or (over the cap) the next one released.
  func acquire(fresh: Bool = false) -> EventLoopFuture<UpstreamConnection> {
    if !fresh, let connection = takeIdle() { return eventLoop.makeSucceededFuture(connection) }
    switch machine.acquire(fresh: fresh) {
    case .lease(let id):
      if let connection = lease(id) { return eventLoop.makeSucceededFuture(connection) }
      return acquire(fresh: fresh)
    case .connect:
      return connect()
    case .wait(let waiter):
      let promise = eventLoop.makePromise(of: UpstreamConnection.self)
      let deadline = eventLoop.assumeIsolated().scheduleTask(in: configuration.queueTimeout) {
        guard self.machine.timedOut(waiter), let entry = self.waiters.removeValue(forKey: waiter) else { return }
        entry.promise.fail(UpstreamPoolError.busy)
      }
      waiters[waiter] = (promise, deadline)
      return promise.futureResult
    }
  }

  /// An idle connection that is still open, if there is one (the express lane's fast path).
  func takeIdle() -> UpstreamConnection? {
    while let id = machine.popIdle() {
      if let connection = lease(id) { return connection }
    }
    return nil
  }

  private func lease(_ id: ObjectIdentifier) -> UpstreamConnection? {
    guard var entry = idle.removeValue(forKey: id) else { return nil }
    entry.expiry.cancel()
    // Closing already: its close is counted when it completes.
    guard entry.connection.channel.isActive else { return nil }
    entry.connection.reused = true
    return entry.connection
  }

  private func connect() -> EventLoopFuture<UpstreamConnection> {
    ClientBootstrap(group: eventLoop)
      .connectTimeout(configuration.connectTimeout)
      .channelOption(ChannelOptions.tcpOption(.tcp_nodelay), value: 1)
      // `UpstreamRelay` asks for reads itself.
      .channelOption(ChannelOptions.autoRead, value: false)
      .channelInitializer { channel in
        channel.eventLoop.makeCompletedFuture {
          try channel.pipeline.syncOperations.addHandler(UpstreamRelay())
        }
      }
      .connect(host: configuration.host, port: configuration.port)
      .assumeIsolated()
      .flatMapThrowing { channel in
        let id = ObjectIdentifier(channel)
        channel.closeFuture.assumeIsolated().whenComplete { _ in self.closed(id) }
        return UpstreamConnection(
          channel: channel, relay: try channel.pipeline.syncOperations.handler(type: UpstreamRelay.self))
      }
      .flatMapErrorThrowing { error in
        // Never opened: its place is free at once.
        self.freed(self.machine.closed(nil))
        throw error
      }
      .nonisolated()
  }

  /// Returns a connection whose exchange completed cleanly.
  func release(_ connection: UpstreamConnection) {
    guard connection.channel.isActive else { return }  // its close frees the place
    let id = ObjectIdentifier(connection.channel)
    switch machine.released(id) {
    case .hand(let waiter):
      guard let entry = waiters.removeValue(forKey: waiter) else { return release(connection) }
      entry.deadline.cancel()
      var connection = connection
      connection.reused = true
      entry.promise.succeed(connection)
    case .keepIdle:
      let expiry = eventLoop.assumeIsolated().scheduleTask(in: configuration.idleTimeout) {
        if self.machine.expire(id) { self.idle.removeValue(forKey: id)?.connection.channel.close(promise: nil) }
      }
      idle[id] = (connection, expiry)
    case .close:
      connection.channel.close(promise: nil)
    }
  }

  private func closed(_ id: ObjectIdentifier) {
    idle.removeValue(forKey: id)?.expiry.cancel()
    freed(machine.closed(id))
  }

  private func freed(_ action: UpstreamPoolStateMachine.Freed) {
    guard case .connect(let waiter) = action, let entry = waiters.removeValue(forKey: waiter) else {
      if case .connect = action { freed(machine.closed(nil)) }  // the waiter is gone
      return
    }
    entry.deadline.cancel()
    connect().cascade(to: entry.promise)
  }
}

/// The only handler of an upstream connection: the exchange that owns the connection gets
/// the upstream's bytes undecoded, and its request bytes go straight to the socket. Holds
/// back reads while the exchange's client cannot take more. Idle in the pool it reads on, to
/// notice the upstream's close; bytes it did not ask for close the connection.
final class UpstreamRelay: ChannelDuplexHandler {
  typealias InboundIn = ByteBuffer
  typealias OutboundIn = IOData
  typealias OutboundOut = IOData

  /// The exchange the connection serves; `nil` while idle in the pool. Strong (a weak
  /// reference costs each exchange an allocation): every way an exchange ends lets go.
  var exchange: ForwardingExchange?
  private var context: ChannelHandlerContext?
  private var gate = ReadGate()
  var paused: Bool {
    get { gate.paused }
    set { if gate.pause(newValue) { context?.read() } }
  }

  func handlerAdded(context: ChannelHandlerContext) { self.context = context }
  func handlerRemoved(context: ChannelHandlerContext) { self.context = nil }

  /// Sends a request's bytes as they are.
  func send(_ bytes: ByteBuffer) {
    context?.writeAndFlush(wrapOutboundOut(.byteBuffer(bytes)), promise: nil)
  }

  func channelRead(context: ChannelHandlerContext, data: NIOAny) {
    if let exchange {
      exchange.relayRead(unwrapInboundIn(data))
    } else {
      // Nobody asked: what the upstream means by it is unknown.
      context.close(promise: nil)
    }
  }

  func channelActive(context: ChannelHandlerContext) {
    context.fireChannelActive()
    context.read()
  }

  func channelReadComplete(context: ChannelHandlerContext) {
    // The answer may have ended (and the exchange let go) inside the burst.
    exchange?.relayReadComplete()
    // Straight to the socket (`autoRead` is off): NIO would ask through every handler.
    read(context: context)
  }

  func channelWritabilityChanged(context: ChannelHandlerContext) {
    exchange?.relayWritabilityChanged(writable: context.channel.isWritable)
  }

  func channelInactive(context: ChannelHandlerContext) {
    exchange?.relayClosed()
  }

  func errorCaught(context: ChannelHandlerContext, error: any Error) {
    context.close(promise: nil)
  }

  func read(context: ChannelHandlerContext) {
    if gate.read() { context.read() }
  }
}

/// Header rules for forwarding (RFC 9110 §7.6.1 and DESIGN §4). Each runs on every
/// forwarded request or response, so each is one pass over the headers that copies only
/// when something must go.
enum ForwardingHeaders {
  /// Removes hop-by-hop headers, including those named in `Connection` (trailers; the
  /// request head's rule is `UpstreamRequestHead`).
  static func stripHopByHop(_ headers: inout HTTPHeaders) {
    var listed: [Substring] = []
    for value in headers["connection"] {
      for token in value.split(separator: ",") {
        let name = token.drop(while: { $0 == " " })
        if dropsListedName(name.utf8) { listed.append(name) }
      }
    }
    func drop(_ name: String) -> Bool {
      isHopByHop(name) || listed.contains { equalsIgnoringCase(name[...], $0) }
    }
    guard headers.contains(where: { drop($0.name) }) else { return }
    var kept = HTTPHeaders()
    kept.reserveCapacity(headers.count)
    for (name, value) in headers where !drop(name) { kept.add(name: name, value: value) }
    headers = kept
  }

  /// Whether a name listed in `Connection` goes with the hop (both lanes ask): every one but
  /// the connection's own options (`close`, `keep-alive`) and the framing headers, which
  /// tell the next hop where the body ends.
  static func dropsListedName<Name: Collection<UInt8>>(_ name: Name) -> Bool {
    !equalsLowercase(name, "close") && !equalsLowercase(name, "keep-alive")
      && !equalsLowercase(name, "transfer-encoding") && !equalsLowercase(name, "content-length")
  }

  /// The fixed hop-by-hop names (RFC 9110 §7.6.1), matched by length first; on any UTF-8
  /// bytes, so both lanes use the one list.
  static func isHopByHop<Name: Collection<UInt8>>(_ name: Name) -> Bool {
    func named(_ candidate: StaticString) -> Bool { equalsLowercase(name, candidate) }
    switch name.count {
    case 2: return named("te")
    case 7: return named("upgrade") || named("trailer")
    case 10: return named("connection") || named("keep-alive")
    case 16: return named("proxy-connection")
    case 18: return named("proxy-authenticate")
    case 19: return named("proxy-authorization")
    default: return false
    }
  }

  static func isHopByHop(_ name: String) -> Bool { isHopByHop(name.utf8) }

  /// Whether `name` is the lowercase `candidate`, ASCII case-insensitively. Against a
  /// `StaticString`'s bytes: walking a `String`'s UTF-8 view here was 0.4% of the proxy loop.
  static func equalsLowercase<Name: Collection<UInt8>>(_ name: Name, _ candidate: StaticString) -> Bool {
    guard name.count == candidate.utf8CodeUnitCount else { return false }
    let expected = candidate.utf8Start
    var offset = 0
    for var byte in name {
      if byte >= UInt8(ascii: "A") && byte <= UInt8(ascii: "Z") { byte |= 0x20 }
      guard byte == expected[offset] else { return false }
      offset += 1
    }
    return true
  }

  /// ASCII case-insensitive comparison without allocating.
  static func equalsIgnoringCase(_ a: Substring, _ b: some StringProtocol) -> Bool {
    equalsIgnoringCase(a.utf8, b.utf8)
  }

  /// The same on any UTF-8 bytes (a `String`'s or a raw head's).
  static func equalsIgnoringCase<A: Collection<UInt8>, B: Collection<UInt8>>(_ a: A, _ b: B) -> Bool {
    guard a.count == b.count else { return false }
    return zip(a, b).allSatisfy { x, y in
      x == y || (x | 0x20 == y | 0x20 && (x | 0x20) >= UInt8(ascii: "a") && (x | 0x20) <= UInt8(ascii: "z"))
    }
  }

  /// The gateway's own headers come only from the gateway: a client's copies go.
  static func stripGatewayHeaders(_ headers: inout HTTPHeaders) {
    headers.remove(name: "foyer-visitor")
    headers.remove(name: "foyer-pass")
  }
}

/// Holds back an upstream connection's reads while the client cannot take more, and lets the
/// held read through when it can.
struct ReadGate {
  private(set) var paused = false
  private var pending = false

  /// Whether to read now; a read asked for while paused is kept for later.
  mutating func read() -> Bool {
    if paused { pending = true }
    return !paused
  }

  /// Sets the pause; `true` when a kept read should be issued now.
  mutating func pause(_ paused: Bool) -> Bool {
    self.paused = paused
    guard !paused, pending else { return false }
    pending = false
    return true
  }
}
