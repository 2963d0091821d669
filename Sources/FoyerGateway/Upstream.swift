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

/// Idle keep-alive connections to the upstream, one pool per event loop, so a request and
/// its upstream connection share a thread.
final class UpstreamPool {
  let eventLoop: any EventLoop
  let configuration: UpstreamConfiguration
  private var idle: [any Channel] = []

  init(eventLoop: any EventLoop, configuration: UpstreamConfiguration) {
    self.eventLoop = eventLoop
    self.configuration = configuration
  }

  /// An idle connection, or a new one.
  func acquire() -> EventLoopFuture<any Channel> {
    while let channel = idle.popLast() {
      if channel.isActive { return eventLoop.makeSucceededFuture(channel) }
    }
    return ClientBootstrap(group: eventLoop)
      .connectTimeout(configuration.connectTimeout)
      .channelOption(ChannelOptions.tcpOption(.tcp_nodelay), value: 1)
      .channelInitializer { channel in
        channel.eventLoop.makeCompletedFuture {
          try channel.pipeline.syncOperations.addHTTPClientHandlers()
          try channel.pipeline.syncOperations.addHandler(UpstreamHandler())
        }
      }
      .connect(host: configuration.host, port: configuration.port)
  }

  /// Returns a connection whose exchange completed cleanly.
  func release(_ channel: any Channel) {
    guard channel.isActive, idle.count < configuration.maxIdlePerEventLoop else {
      channel.close(promise: nil)
      return
    }
    idle.append(channel)
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
  private var readPending = false
  var paused = false {
    didSet {
      if !paused, readPending, let context {
        readPending = false
        context.read()
      }
    }
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
    if paused { readPending = true } else { context.read() }
  }
}

/// Header rules for forwarding (RFC 9110 §7.6.1 and DESIGN §4).
enum ForwardingHeaders {
  static let hopByHop: Set<String> = [
    "connection", "keep-alive", "proxy-connection", "te", "trailer", "upgrade", "proxy-authenticate",
    "proxy-authorization",
  ]

  /// Removes hop-by-hop headers, including those named in `Connection`. `Transfer-Encoding`
  /// is kept: NIO re-frames the body the same way on the next hop.
  static func stripHopByHop(_ headers: inout HTTPHeaders) {
    var named = hopByHop
    for value in headers[canonicalForm: "connection"] { named.insert(value.lowercased()[...].trimmingSpaces) }
    named.remove("transfer-encoding")
    named.remove("content-length")
    for name in named { headers.remove(name: name) }
  }

  /// The gateway's own cookies never reach the upstream.
  static func stripGatewayCookies(_ headers: inout HTTPHeaders) {
    let cookies = headers[canonicalForm: "cookie"]
    guard !cookies.isEmpty else { return }
    headers.remove(name: "cookie")
    let kept = cookies.flatMap { $0.split(separator: ";") }.map { $0.drop(while: { $0 == " " }) }
      .filter { !$0.hasPrefix("foyer_v_") && !$0.hasPrefix("foyer_p_") }
    if !kept.isEmpty { headers.add(name: "cookie", value: kept.joined(separator: "; ")) }
  }
}

extension Substring {
  fileprivate var trimmingSpaces: String {
    String(drop(while: { $0 == " " }).reversed().drop(while: { $0 == " " }).reversed())
  }
}
