import Foundation
import FoyerCore
import FoyerTestSupport
import NIOCore
import NIOPosix
import Prometheus
import RedisNIO
import Testing
import WaitingRoom

@testable import FoyerGateway

#if canImport(Glibc)
import Glibc
#endif

/// A raw TCP client: sends exactly the given bytes and reads what comes back until the
/// server closes or `timeout` passes (what a slowloris or a broken client would do).
/// A raw exchange, off the cooperative pool (see `offPool`).
func rawExchange(port: Int, send: [UInt8], timeout: Double = 3) async -> String {
  await offPool { rawExchangeBlocking(port: port, send: send, timeout: timeout) }
}

func rawExchangeBlocking(port: Int, send: [UInt8], timeout: Double = 3) -> String {
  guard let fd = connectLoopback(port: port) else { return "" }
  defer { close(fd) }
  var wait = timeval(
    tv_sec: Int(timeout), tv_usec: Int(timeout.truncatingRemainder(dividingBy: 1) * 1_000_000))
  setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &wait, socklen_t(MemoryLayout<timeval>.size))
  if !send.isEmpty {
    _ = send.withUnsafeBytes { Glibc.send(fd, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL)) }
  }
  var received: [UInt8] = []
  var buffer = [UInt8](repeating: 0, count: 65_536)
  while true {
    let count = recv(fd, &buffer, buffer.count, 0)
    if count <= 0 { break }
    received += buffer[0..<count]
  }
  return String(decoding: received, as: UTF8.self)
}

@Suite(.timeLimit(.minutes(2))) struct LimitsTests {
  let group = MultiThreadedEventLoopGroup.singleton

  func gateway(
    limits: GatewayLimits, upstreamPort: Int? = nil, metrics: GatewayMetrics = GatewayMetrics()
  ) async throws -> (port: Int, channel: any Channel) {
    let redis = RedisClient(
      configuration: try RedisConfiguration(url: RedisServer.sharedURL()), eventLoopGroup: group)
    let configuration = GatewayConfiguration(
      host: "127.0.0.1", port: 0, keyRing: StatusEndpointTests.keyRing, rooms: [],
      upstream: upstreamPort.map { UpstreamConfiguration(host: "127.0.0.1", port: $0) }, limits: limits)
    let channel = try await GatewayServer(
      configuration: configuration, store: RoomStore(redis: redis), eventLoopGroup: group, metrics: metrics
    )
    .start()
    return (channel.localAddress!.port!, channel)
  }

  @Test func oversizedHeadersGet431() async throws {
    let (port, channel) = try await gateway(limits: GatewayLimits(maxHeaderBytes: 4_096))
    defer { channel.close(promise: nil) }
    let request =
      "GET /_foyer/healthz HTTP/1.1\r\nHost: x\r\nX-Big: \(String(repeating: "a", count: 8_000))\r\n\r\n"
    let answer = await rawExchange(port: port, send: Array(request.utf8))
    #expect(answer.hasPrefix("HTTP/1.1 431"))
    #expect(
      await rawExchange(port: port, send: Array("NOT HTTP AT ALL\r\n\r\n".utf8)).hasPrefix("HTTP/1.1 400"))
  }

  @Test func slowHeadsGet408() async throws {
    let (port, channel) = try await gateway(limits: GatewayLimits(headerTimeout: .milliseconds(300)))
    defer { channel.close(promise: nil) }
    let started = Date()
    let answer = await rawExchange(
      port: port, send: Array("GET /_foyer/healthz HTTP/1.1\r\nHost: x\r\n".utf8))
    #expect(answer.hasPrefix("HTTP/1.1 408"))
    #expect(Date().timeIntervalSince(started) < 2.5)
  }

  @Test func aConnectionThatSaysNothingIsClosedWithoutAnAnswer() async throws {
    // A client's pool may open a connection and use it later: an unasked-for 408 on it would
    // be read as the answer to that later request. Silent connections just close.
    let (port, channel) = try await gateway(limits: GatewayLimits(headerTimeout: .milliseconds(300)))
    defer { channel.close(promise: nil) }
    let started = Date()
    let (answers, closed) = await rawAnswers(port: port, send: [], answers: 1, timeout: 5)
    #expect(closed, "the gateway keeps a silent connection open")
    #expect(answers.isEmpty, "\(answers)")
    #expect(Date().timeIntervalSince(started) < 4)
  }

  @Test func idleKeepAliveConnectionsAreClosed() async throws {
    let (port, channel) = try await gateway(limits: GatewayLimits(idleTimeout: .milliseconds(300)))
    defer { channel.close(promise: nil) }
    let started = Date()
    // One request, then silence: the gateway ends the connection well before the client's
    // own 10 s read timeout (the bound is loose: the machine running the suite is busy).
    let answer = await rawExchange(
      port: port, send: Array("GET /_foyer/healthz HTTP/1.1\r\nHost: x\r\n\r\n".utf8), timeout: 10)
    #expect(answer.hasPrefix("HTTP/1.1 200"))
    #expect(Date().timeIntervalSince(started) < 6)
  }

  @Test func bodiesOverTheLimitGet413() async throws {
    let upstream = try await TestUpstream(group: group)
    defer { upstream.channel.close(promise: nil) }
    let (port, channel) = try await gateway(
      limits: GatewayLimits(maxBodyBytes: 1_000), upstreamPort: upstream.port)
    defer { channel.close(promise: nil) }
    let body = String(repeating: "b", count: 5_000)
    let request = "POST /upload HTTP/1.1\r\nHost: x\r\nContent-Length: \(body.utf8.count)\r\n\r\n\(body)"
    #expect(await rawExchange(port: port, send: Array(request.utf8)).hasPrefix("HTTP/1.1 413"))
    let small =
      "POST /upload HTTP/1.1\r\nHost: x\r\nContent-Length: 10\r\nConnection: close\r\n\r\n0123456789"
    #expect(await rawExchange(port: port, send: Array(small.utf8)).hasPrefix("HTTP/1.1 200"))
  }

  @Test func connectionsOverTheLimitAreClosed() async throws {
    let metrics = GatewayMetrics()
    let (port, channel) = try await gateway(limits: GatewayLimits(maxConnections: 2), metrics: metrics)
    defer { channel.close(promise: nil) }
    // Closed exactly once, below: a second close could hit a descriptor NIO reused.
    let holders = (0..<2).compactMap { _ in connectLoopback(port: port) }
    #expect(holders.count == 2)
    // Both are counted once the gateway has set them up (on a busy machine that takes a
    // moment; a third connection set up first would take a holder's slot).
    for _ in 0..<100 where !metrics.registry.emitToString().contains("foyer_open_connections 2.0\n") {
      try await Task.sleep(for: .milliseconds(50))
    }
    #expect(metrics.registry.emitToString().contains("foyer_open_connections 2.0\n"))
    // The third connection is accepted by the kernel and closed by the gateway at once.
    #expect(
      await rawExchange(port: port, send: Array("GET /_foyer/healthz HTTP/1.1\r\nHost: x\r\n\r\n".utf8)) == ""
    )
    for fd in holders { close(fd) }
    // The gateway frees the slots when it sees the closes; on a loaded machine that can take
    // a moment, so ask until it answers (or 5 s pass).
    var answer = ""
    for _ in 0..<50 where !answer.hasPrefix("HTTP/1.1 200") {
      try await Task.sleep(for: .milliseconds(100))
      answer = await rawExchange(
        port: port, send: Array("GET /_foyer/healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n".utf8))
    }
    #expect(
      answer.hasPrefix("HTTP/1.1 200"),
      "\(metrics.registry.emitToString().split(separator: "\n").filter { $0.hasPrefix("foyer_") && !$0.hasSuffix(" 0") })"
    )
  }
}
