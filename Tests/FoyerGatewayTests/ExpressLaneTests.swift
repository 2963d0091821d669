import Foundation
import FoyerCore
import FoyerTestSupport
import HTTPWire
import NIOConcurrencyHelpers
import NIOCore
import NIOPosix
import Prometheus
import RedisNIO
import Testing
import WaitingRoom

@testable import FoyerGateway

/// The byte-level reader behind the express lane: what it takes, and what it leaves to NIOHTTP1.
@Suite struct RawHTTPTests {
  func request(_ text: String) -> RawHeadResult {
    Array(text.utf8).withUnsafeBytes { RawHTTP.request($0) }
  }

  func response(_ text: String) -> RawHeadResult {
    Array(text.utf8).withUnsafeBytes { RawHTTP.response($0) }
  }

  func fields(_ text: String) -> [String]? {
    let bytes = Array(text.utf8)
    guard case .head(let head) = request(text) else { return nil }
    return head.fields.map {
      String(decoding: bytes[$0.name], as: UTF8.self) + "=" + String(decoding: bytes[$0.value], as: UTF8.self)
    }
  }

  @Test func cleanHeadsAreRead() {
    let text = "GET /shop/a?b=1 HTTP/1.1\r\nHost: x\r\nCookie:  a=1; b=2 \r\nEmpty:\r\n\r\nrest"
    guard case .head(let head) = request(text) else {
      Issue.record("not read")
      return
    }
    #expect(head.length == text.utf8.count - 4)
    #expect(fields(text) == ["Host=x", "Cookie=a=1; b=2", "Empty="])
    let bytes = Array(text.utf8)
    #expect(String(decoding: bytes[head.start.1], as: UTF8.self) == "/shop/a?b=1")
  }

  /// Field lines are kept whole, and the run writer joins the ones that touch.
  @Test func fieldLinesCopyAsTheyCame() {
    let text = "GET /a HTTP/1.1\r\nHost: x\r\nA:  1 \r\nDrop: me\r\nB:2\r\n\r\n"
    let bytes = Array(text.utf8)
    guard case .head(let head) = request(text) else {
      Issue.record("not read")
      return
    }
    #expect(
      head.fields.map { String(decoding: bytes[$0.line], as: UTF8.self) } == [
        "Host: x\r\n", "A:  1 \r\n", "Drop: me\r\n", "B:2\r\n",
      ])
    var out = ByteBuffer()
    bytes.withUnsafeBytes { raw in
      var copier = RunWriter(raw)
      copier.copy(0..<(head.start.2.upperBound + 2), to: &out)
      for field in head.fields where !RawHTTP.equals(raw, field.name, lowercase: "drop") {
        copier.copy(field.line, to: &out)
      }
      copier.flush(&out)
      out.writeStaticString("\r\n")
      copier.flush(&out)  // nothing left: writes nothing
    }
    #expect(String(buffer: out) == "GET /a HTTP/1.1\r\nHost: x\r\nA:  1 \r\nB:2\r\n\r\n")
  }

  @Test func utf8PrefixesAndEquality() {
    let bytes = Array("/shop/caf\u{e9}?x".utf8)
    bytes.withUnsafeBytes { raw in
      let all = raw[...]
      for (prefix, expected) in [
        ("", true), ("/", true), ("/shop", true), ("/shop/caf\u{e9}", true), ("/shop/cafe", false),
        ("/shop/caf\u{e9}?x", true), ("/shop/caf\u{e9}?xy", false), ("shop", false),
      ] {
        #expect(all.hasPrefix(utf8: prefix) == expected, "\(prefix)")
        #expect(all.hasPrefix(utf8: prefix) == all.starts(with: prefix.utf8))
        #expect(all.equals(utf8: prefix) == all.elementsEqual(prefix.utf8), "\(prefix)")
      }
      #expect(raw[0..<3].equals(utf8: "/sh"))
      #expect(!raw[0..<3].equals(utf8: "/s"))
    }
  }

  @Test func partialHeadsWait() {
    for text in ["GET /a HTTP/1.1\r\nHost: x\r\n", "GET /a HTTP/1.1\r\nHost: x\r", "GET /a HT", ""] {
      guard case .incomplete = request(text) else {
        Issue.record("'\(text)' was not incomplete")
        continue
      }
    }
  }

  /// Whatever this reader does not take is NIOHTTP1's to judge (and answer, 400 or otherwise).
  @Test func anythingUnusualIsLeftToNIOHTTP1() {
    let cases = [
      "GET /a HTTP/1.1\nHost: x\n\n",  // bare LF
      "GET /a HTTP/1.1\r\nHost: x\r\n folded\r\n\r\n",  // obs-fold
      "GET /a HTTP/1.1\r\nHost : x\r\n\r\n",  // space before the colon
      "GET /a HTTP/1.1\r\nHo\rst: x\r\n\r\n",  // bare CR
      "GET /a HTTP/2.0\r\nHost: x\r\n\r\n",
      "GET  /a HTTP/1.1\r\n\r\n",
      "GET /a\r\n\r\n",
      "GET /a HTTP/1.1\r\nX: a\u{0}b\r\n\r\n",
      "G(T /a HTTP/1.1\r\n\r\n",
    ]
    for text in cases {
      guard case .unsupported = request(text) else {
        Issue.record("'\(text.debugDescription)' was taken")
        continue
      }
    }
    // obs-text is a value byte (RFC 9110 §5.5) llhttp takes too: a head NIOHTTP1 read is
    // read again here on its way upstream (`UpstreamRequestHead.serialize`).
    guard case .head(let head) = request("GET /a HTTP/1.1\r\nX: caf\u{e9}\r\n\r\n"), head.fields.count == 1
    else {
      Issue.record("obs-text in a value was not read")
      return
    }
  }

  @Test func statusLines() {
    for (text, ok) in [
      ("HTTP/1.1 200 OK\r\n\r\n", true), ("HTTP/1.0 404 Not Found\r\n\r\n", true),
      ("HTTP/1.1 204\r\n\r\n", true),
      ("HTTP/1.1 20 OK\r\n\r\n", false), ("HTTP/1.1 2000 OK\r\n\r\n", false),
      ("HTTP/2 200 OK\r\n\r\n", false),
      ("ICY 200 OK\r\n\r\n", false),
    ] {
      if case .head = response(text) {
        #expect(ok, "\(text.debugDescription)")
      } else {
        #expect(!ok, "\(text.debugDescription)")
      }
    }
  }

  func scan(_ parts: [String]) -> [ChunkedBodyScanner.Outcome] {
    var scanner = ChunkedBodyScanner()
    return parts.map { part in Array(part.utf8).withUnsafeBytes { scanner.scan($0) } }
  }

  @Test func chunkedBodiesEndWhereTheyEnd() {
    let body =
      "5;name=value\r\nhello\r\n1A\r\n\(String(repeating: "z", count: 26))\r\n0\r\nX-Trailer: 1\r\n\r\n"
    #expect(scan([body + "NEXT"]) == [.ended(consumed: body.utf8.count)])
    // Split at every byte: the end is found in the right part, at the right place.
    let bytes = Array(body.utf8)
    for split in 1..<bytes.count {
      let first = String(decoding: bytes[..<split], as: UTF8.self)
      let second = String(decoding: bytes[split...], as: UTF8.self)
      #expect(
        scan([first, second + "X"]) == [.needMore, .ended(consumed: bytes.count - split)], "split at \(split)"
      )
    }
    #expect(scan(["0\r\n\r\n"]) == [.ended(consumed: 5)])
  }

  @Test func brokenChunkingIsRefused() {
    for body in ["x\r\n", "5\r\nhelloX", "\r\n", "5\nhello", "0\r\nX\n", "10000000000000000\r\n", ";x\r\n"] {
      #expect(scan([body]) == [.invalid], "\(body.debugDescription)")
    }
  }
}

/// An upstream that answers each request head it reads with the next scripted action.
final class ScriptedUpstream: Sendable {
  enum Action: Sendable {
    case answer(String)
    case answerAndClose(String)
    case close
  }

  let channel: any Channel
  private let state: NIOLockedValueBox<(script: [Action], heads: [String], connections: Int)>
  var port: Int { channel.localAddress!.port! }
  var heads: [String] { state.withLockedValue { $0.heads } }
  var connections: Int { state.withLockedValue { $0.connections } }

  init(group: any EventLoopGroup, script: [Action]) async throws {
    let state = NIOLockedValueBox<(script: [Action], heads: [String], connections: Int)>((script, [], 0))
    self.state = state
    channel = try await ServerBootstrap(group: group)
      .childChannelInitializer { channel in
        state.withLockedValue { $0.connections += 1 }
        return channel.eventLoop.makeCompletedFuture {
          try channel.pipeline.syncOperations.addHandler(ScriptedUpstreamHandler(state: state))
        }
      }
      .bind(host: "127.0.0.1", port: 0).get()
  }
}

final class ScriptedUpstreamHandler: ChannelInboundHandler {
  typealias InboundIn = ByteBuffer
  typealias OutboundOut = ByteBuffer
  private var received = ""
  private let state: NIOLockedValueBox<(script: [ScriptedUpstream.Action], heads: [String], connections: Int)>

  init(state: NIOLockedValueBox<(script: [ScriptedUpstream.Action], heads: [String], connections: Int)>) {
    self.state = state
  }

  func channelRead(context: ChannelHandlerContext, data: NIOAny) {
    received += String(buffer: unwrapInboundIn(data))
    while let end = received.range(of: "\r\n\r\n") {
      let head = String(received[..<end.lowerBound])
      received = String(received[end.upperBound...])
      let action = state.withLockedValue { state -> ScriptedUpstream.Action in
        state.heads.append(head)
        return state.script.isEmpty ? .close : state.script.removeFirst()
      }
      switch action {
      case .answer(let text):
        context.writeAndFlush(wrapOutboundOut(ByteBuffer(string: text)), promise: nil)
      case .answerAndClose(let text):
        context.writeAndFlush(wrapOutboundOut(ByteBuffer(string: text))).assumeIsolated().whenComplete { _ in
          context.close(promise: nil)
        }
      case .close:
        context.close(promise: nil)
        return
      }
    }
  }
}

/// The express lane against upstreams that answer in every framing HTTP/1.1 allows, and
/// some it does not.
@Suite(.timeLimit(.minutes(2))) struct ExpressLaneTests {
  let group = MultiThreadedEventLoopGroup.singleton

  func gateway(
    upstreamPort: Int, metrics: GatewayMetrics = GatewayMetrics(), express: Bool = true
  ) async throws -> any Channel {
    let configuration = GatewayConfiguration(
      host: "127.0.0.1", port: 0, keyRing: StatusEndpointTests.keyRing,
      upstream: UpstreamConfiguration(host: "127.0.0.1", port: upstreamPort, responseTimeout: .seconds(2)),
      expressLane: express)
    let redis = RedisClient(
      configuration: try RedisConfiguration(url: RedisServer.sharedURL()), eventLoopGroup: group)
    let server = GatewayServer(
      configuration: configuration, store: RoomStore(redis: redis), eventLoopGroup: group, metrics: metrics)
    return try await server.start()
  }

  /// Sends `request` on `fd` and reads until `marker`.
  func exchange(_ fd: Int32, _ request: String, until marker: String) async -> String {
    ProxyTests.write(fd, request)
    return await ProxyTests.receive(fd, until: marker)
  }

  @Test func everyFramingIsRelayedAndTheConnectionReused() async throws {
    let chunked =
      "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nConnection: keep-alive, x-hop\r\nX-Hop: 1\r\n\r\n"
      + "5;ext=1\r\nhello\r\n6\r\n world\r\n0\r\nX-Trailer: t\r\n\r\n"
    let upstream = try await ScriptedUpstream(
      group: group,
      script: [
        .answer(chunked),
        .answer(
          "HTTP/1.1 103 Early Hints\r\nLink: </a.css>\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nhi"),
        .answer("HTTP/1.1 204 No Content\r\nX-Seen: 1\r\n\r\n"),
        .answer("HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\n"),  // for a HEAD: no body follows
        .answerAndClose("HTTP/1.0 200 OK\r\nContent-Type: text/plain\r\n\r\nuntil the close"),
      ])
    defer { upstream.channel.close(promise: nil) }
    let metrics = GatewayMetrics()
    let channel = try await gateway(upstreamPort: upstream.port, metrics: metrics)
    defer { channel.close(promise: nil) }
    let fd = try #require(connectLoopback(port: channel.localAddress!.port!))
    defer { close(fd) }

    let first = await exchange(fd, "GET /a HTTP/1.1\r\nHost: x\r\n\r\n", until: "X-Trailer: t\r\n\r\n")
    #expect(first.hasPrefix("HTTP/1.1 200 OK\r\n"))
    #expect(first.hasSuffix("\r\n\r\n5;ext=1\r\nhello\r\n6\r\n world\r\n0\r\nX-Trailer: t\r\n\r\n"))
    #expect(!first.lowercased().contains("x-hop") && !first.lowercased().contains("connection:"))

    let second = await exchange(fd, "GET /b HTTP/1.1\r\nHost: x\r\n\r\n", until: "hi")
    #expect(second == "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nhi")

    let third = await exchange(fd, "GET /c HTTP/1.1\r\nHost: x\r\n\r\n", until: "\r\n\r\n")
    #expect(third == "HTTP/1.1 204 No Content\r\nX-Seen: 1\r\n\r\n")

    let fourth = await exchange(fd, "HEAD /d HTTP/1.1\r\nHost: x\r\n\r\n", until: "\r\n\r\n")
    #expect(fourth == "HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\n")
    #expect(upstream.connections == 1, "four keep-alive exchanges on one upstream connection")

    // Delimited by the upstream's close: passed on, then the client's connection closes too.
    let fifth = await exchange(fd, "GET /e HTTP/1.1\r\nHost: x\r\n\r\n", until: "never")
    #expect(fifth.hasPrefix("HTTP/1.1 200 OK\r\n") && fifth.contains("connection: close\r\n"))
    #expect(fifth.hasSuffix("\r\n\r\nuntil the close"))
    #expect(ProxyTests.metricsText(metrics).contains("foyer_express_requests_total 5\n"))
    #expect(upstream.heads.allSatisfy { $0.contains("\r\nx-forwarded-for: 127.0.0.1\r\n") })
  }

  /// `Connection` may list hop-by-hop names to drop, but never the framing headers: the
  /// client needs them to know where the answer ends (both lanes keep them).
  @Test(arguments: ProxyTests.lanes) func framingHeadersListedInConnectionStay(express: Bool) async throws {
    let answer =
      "HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: content-length, x-hop\r\nX-Hop: 1\r\n\r\nok"
    let upstream = try await ScriptedUpstream(group: group, script: [.answer(answer), .answer(answer)])
    defer { upstream.channel.close(promise: nil) }
    let channel = try await gateway(upstreamPort: upstream.port, express: express)
    defer { channel.close(promise: nil) }
    let fd = try #require(connectLoopback(port: channel.localAddress!.port!))
    defer { close(fd) }
    for path in ["/a", "/b"] {
      let reply = await exchange(fd, "GET \(path) HTTP/1.1\r\nHost: x\r\n\r\n", until: "ok")
      #expect(reply.lowercased().contains("content-length: 2\r\n"), "\(reply)")
      #expect(!reply.lowercased().contains("x-hop") && reply.hasSuffix("\r\n\r\nok"), "\(reply)")
    }
  }

  @Test func invalidUpstreamAnswersAre502() async throws {
    for answer in [
      "HTTP/1.1 200 OK\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
      "HTTP/1.1 200 OK\r\nContent-Length: 3\r\nContent-Length: 4\r\n\r\nabcd",
      "HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip, chunked\r\n\r\n",
      "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n\r\n",
      "SSH-2.0-OpenSSH\r\n\r\n",
    ] {
      let upstream = try await ScriptedUpstream(group: group, script: [.answer(answer)])
      defer { upstream.channel.close(promise: nil) }
      let channel = try await gateway(upstreamPort: upstream.port)
      defer { channel.close(promise: nil) }
      let base = "http://127.0.0.1:\(channel.localAddress!.port!)"
      let (status, _, body) = try await ProxyTests.send("GET", base + "/x")
      #expect(status == 502, "\(answer.debugDescription)")
      #expect(String(decoding: body, as: UTF8.self).contains("upstream_unavailable"))
    }
  }

  /// The upstream closed a kept-alive connection as the next request went out: a GET is sent
  /// once more on a new connection (as nginx does) instead of failing with 502.
  @Test func aStaleKeptAliveConnectionIsRetriedOnce() async throws {
    let ok = "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"
    let upstream = try await ScriptedUpstream(
      group: group, script: [.answer(ok), .close, .answer(ok), .close, .close])
    defer { upstream.channel.close(promise: nil) }
    let channel = try await gateway(upstreamPort: upstream.port)
    defer { channel.close(promise: nil) }
    let fd = try #require(connectLoopback(port: channel.localAddress!.port!))
    defer { close(fd) }
    #expect(await exchange(fd, "GET /1 HTTP/1.1\r\nHost: x\r\n\r\n", until: "ok").hasSuffix("\r\n\r\nok"))
    #expect(await exchange(fd, "GET /2 HTTP/1.1\r\nHost: x\r\n\r\n", until: "ok").hasSuffix("\r\n\r\nok"))
    #expect(upstream.heads.count == 3 && upstream.connections == 2)
    // Only once: a fresh connection that fails is a 502.
    let third = await exchange(fd, "GET /3 HTTP/1.1\r\nHost: x\r\n\r\n", until: "}")
    #expect(third.hasPrefix("HTTP/1.1 502 Bad Gateway\r\n"), "\(third)")
  }
}

/// Request smuggling: a body the express lane's reader does not frame itself must never be
/// read as the next request, on either lane.
@Suite(.timeLimit(.minutes(2))) struct SmugglingTests {
  let group = MultiThreadedEventLoopGroup.singleton

  @Test(arguments: ProxyTests.lanes) func bodiesAreNeverReadAsRequests(express: Bool) async throws {
    let upstream = try await TestUpstream(group: group)
    defer { upstream.channel.close(promise: nil) }
    let redis = RedisClient(
      configuration: try RedisConfiguration(url: RedisServer.sharedURL()), eventLoopGroup: group)
    let server = GatewayServer(
      configuration: GatewayConfiguration(
        host: "127.0.0.1", port: 0, keyRing: StatusEndpointTests.keyRing,
        upstream: UpstreamConfiguration(host: "127.0.0.1", port: upstream.port), expressLane: express),
      store: RoomStore(redis: redis), eventLoopGroup: group)
    let channel = try await server.start()
    defer { channel.close(promise: nil) }
    let inner = "GET /smuggled HTTP/1.1\r\nHost: x\r\n\r\n"
    let chunk = String(inner.utf8.count, radix: 16)
    for framing in [
      "Content-Length: \(inner.utf8.count)\r\n\r\n\(inner)",
      "Transfer-Encoding: chunked\r\n\r\n\(chunk)\r\n\(inner)\r\n0\r\n\r\n",
    ] {
      let requests =
        "GET /first HTTP/1.1\r\nHost: x\r\n" + framing
        + "GET /last HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
      let answer = await rawExchange(port: channel.localAddress!.port!, send: Array(requests.utf8))
      #expect(answer.components(separatedBy: "HTTP/1.1 200 OK").count == 3, "\(answer.prefix(400))")
      #expect(answer.contains("\"received\":\"\(inner.utf8.count)\""), "\(answer.prefix(400))")
    }
    #expect(!upstream.requests.contains("/smuggled"), "\(upstream.requests)")
    #expect(upstream.requests.filter { $0 == "/first" }.count == 2)
    #expect(upstream.requests.filter { $0 == "/last" }.count == 2)
  }
}
