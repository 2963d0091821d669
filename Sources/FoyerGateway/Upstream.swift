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

  public init(
    host: String, port: Int, connectTimeout: TimeAmount = .seconds(2),
    responseTimeout: TimeAmount = .seconds(30),
    maxIdlePerEventLoop: Int = 64
  ) {
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

/// One keep-alive connection to the upstream with the handlers that serve it: the raw relay
/// at the front (express-lane exchanges) and the NIOHTTP1 exchange handler at the back.
struct UpstreamConnection {
  let channel: any Channel
  let relay: UpstreamRelay
  let handler: UpstreamHandler
  /// Whether it served an exchange before. The upstream may close an idle keep-alive
  /// connection just as a request goes out; on a reused connection that failure is retried.
  var reused = false
}

/// Idle keep-alive connections to the upstream, one pool per event loop, so a request and
/// its upstream connection share a thread.
final class UpstreamPool {
  let eventLoop: any EventLoop
  let configuration: UpstreamConfiguration
  private var idle: [UpstreamConnection] = []

  init(eventLoop: any EventLoop, configuration: UpstreamConfiguration) {
    self.eventLoop = eventLoop
    self.configuration = configuration
  }

  /// An idle connection, or a new one.
  func acquire() -> EventLoopFuture<UpstreamConnection> {
    if let connection = takeIdle() { return eventLoop.makeSucceededFuture(connection) }
    return connect()
  }

  /// An idle connection that is still open, if there is one.
  func takeIdle() -> UpstreamConnection? {
    while var connection = idle.popLast() {
      if connection.channel.isActive {
        connection.reused = true
        return connection
      }
    }
    return nil
  }

  /// A new connection.
  func connect() -> EventLoopFuture<UpstreamConnection> {
    ClientBootstrap(group: eventLoop)
      .connectTimeout(configuration.connectTimeout)
      .channelOption(ChannelOptions.tcpOption(.tcp_nodelay), value: 1)
      // `UpstreamRelay` asks for reads itself.
      .channelOption(ChannelOptions.autoRead, value: false)
      .channelInitializer { channel in
        channel.eventLoop.makeCompletedFuture {
          try channel.pipeline.syncOperations.addHandler(UpstreamRelay())
          try channel.pipeline.syncOperations.addHTTPClientHandlers()
          try channel.pipeline.syncOperations.addHandler(UpstreamHandler())
        }
      }
      .connect(host: configuration.host, port: configuration.port)
      .assumeIsolated()
      .flatMapThrowing { channel in
        let handlers = channel.pipeline.syncOperations
        return UpstreamConnection(
          channel: channel, relay: try handlers.handler(type: UpstreamRelay.self),
          handler: try handlers.handler(type: UpstreamHandler.self))
      }
      .nonisolated()
  }

  /// Returns a connection whose exchange completed cleanly.
  func release(_ connection: UpstreamConnection) {
    guard connection.channel.isActive, idle.count < configuration.maxIdlePerEventLoop else {
      connection.channel.close(promise: nil)
      return
    }
    idle.append(connection)
  }
}

/// The front of every upstream connection. While an express-lane exchange owns the
/// connection, the upstream's bytes go to it undecoded and its request bytes go straight to
/// the socket; otherwise everything passes to the NIOHTTP1 handlers behind it. Holds back
/// reads while the express lane's client cannot take more.
final class UpstreamRelay: ChannelDuplexHandler {
  typealias InboundIn = ByteBuffer
  typealias InboundOut = ByteBuffer
  typealias OutboundIn = IOData
  typealias OutboundOut = IOData

  /// The express lane of the current exchange; `nil` for NIOHTTP1 exchanges and while idle.
  weak var delegate: ExpressLane?
  private var context: ChannelHandlerContext?
  private var gate = ReadGate()
  /// This read burst went to the express lane.
  private var expressBurst = false
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
    if let delegate {
      expressBurst = true
      delegate.relayRead(unwrapInboundIn(data))
    } else {
      context.fireChannelRead(data)
    }
  }

  func channelActive(context: ChannelHandlerContext) {
    context.fireChannelActive()
    context.pipeline.read()
  }

  func channelReadComplete(context: ChannelHandlerContext) {
    if expressBurst {
      // The answer may have ended (and the lane let go) inside the burst.
      expressBurst = false
      delegate?.relayReadComplete()
      // Straight to the socket (`autoRead` is off): NIO would ask through every handler.
      read(context: context)
    } else {
      context.fireChannelReadComplete()
      // Through the NIOHTTP1 handlers, which hold reads back for their exchange; idle in the
      // pool, reading on is how the upstream's close is noticed.
      context.pipeline.read()
    }
  }

  func channelInactive(context: ChannelHandlerContext) {
    delegate?.relayClosed()
    context.fireChannelInactive()
  }

  func read(context: ChannelHandlerContext) {
    if gate.read() { context.read() }
  }
}

/// Receives what the upstream answers and hands it to the client side; holds back reads
/// while the client cannot take more (backpressure).
final class UpstreamHandler: ChannelDuplexHandler {
  typealias InboundIn = HTTPClientResponsePart
  typealias OutboundIn = HTTPClientRequestPart
  typealias OutboundOut = HTTPClientRequestPart

  /// The client side of the current exchange; `nil` while idle in the pool.
  weak var delegate: GatewayHandler?
  private var context: ChannelHandlerContext?
  private var gate = ReadGate()
  var paused: Bool {
    get { gate.paused }
    set { if gate.pause(newValue) { context?.read() } }
  }

  func handlerAdded(context: ChannelHandlerContext) { self.context = context }
  func handlerRemoved(context: ChannelHandlerContext) { self.context = nil }

  func channelRead(context: ChannelHandlerContext, data: NIOAny) {
    delegate?.upstreamRead(unwrapInboundIn(data))
  }

  func channelReadComplete(context: ChannelHandlerContext) {
    delegate?.upstreamReadComplete()
    context.fireChannelReadComplete()
  }

  func channelWritabilityChanged(context: ChannelHandlerContext) {
    delegate?.upstreamWritabilityChanged(writable: context.channel.isWritable)
    context.fireChannelWritabilityChanged()
  }

  func channelInactive(context: ChannelHandlerContext) {
    delegate?.upstreamClosed()
    context.fireChannelInactive()
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
  /// Removes hop-by-hop headers, including those named in `Connection`. `Transfer-Encoding`
  /// and `Content-Length` are kept: NIO re-frames the body the same way on the next hop.
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

  /// The gateway's own cookies never reach the upstream. Raw `Cookie` values are used (not
  /// `canonicalForm`, which would split cookie values at commas). Works on UTF-8 bytes:
  /// `Character`-wise splitting was a tenth of the proxy path's time in `perf`.
  static func stripGatewayCookies(_ headers: inout HTTPHeaders) {
    guard
      headers.contains(where: {
        equalsLowercase($0.name.utf8, "cookie") && Cookies.hasGatewayCookie(inHeader: $0.value.utf8)
      })
    else { return }
    let cookies = headers["cookie"]
    headers.remove(name: "cookie")
    var kept = ""
    for header in cookies {
      for pair in Cookies.foreignPairs(inHeader: header.utf8) {
        if !kept.isEmpty { kept += "; " }
        kept += header[pair]
      }
    }
    if !kept.isEmpty { headers.add(name: "cookie", value: kept) }
  }
}

/// Holds back an upstream connection's reads while the client cannot take more, and lets the
/// held read through when it can: both upstream handlers gate this way.
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
