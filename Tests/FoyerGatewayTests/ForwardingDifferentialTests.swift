import Foundation
import FoyerCore
import FoyerTestSupport
import NIOConcurrencyHelpers
import NIOCore
import NIOHTTP1
import NIOPosix
import RedisNIO
import Testing
import WaitingRoom

@testable import FoyerGateway

/// An upstream that records every byte it receives, in arrival order, and answers each
/// request (as llhttp reads it) with the scripted raw bytes for its path.
final class WireUpstream: Sendable {
  let channel: any Channel
  var port: Int { channel.localAddress!.port! }
  private let log: NIOLockedValueBox<[UInt8]>

  /// Everything received so far, on every connection.
  var received: [UInt8] { log.withLockedValue { $0 } }

  /// `script[path]` is the raw answer; an answer ending in `close` closes after it.
  init(group: any EventLoopGroup, script: [String: (answer: String, close: Bool)]) async throws {
    let log = NIOLockedValueBox<[UInt8]>([])
    self.log = log
    channel = try await ServerBootstrap(group: group)
      .childChannelInitializer { channel in
        channel.eventLoop.makeCompletedFuture {
          let wire = WireRecorder(log: log)
          try channel.pipeline.syncOperations.addHandler(wire)
          try channel.pipeline.syncOperations.addHandler(ByteToMessageHandler(HTTPRequestDecoder()))
          try channel.pipeline.syncOperations.addHandler(ScriptedAnswers(wire: wire, script: script))
        }
      }
      .bind(host: "127.0.0.1", port: 0).get()
  }
}

private final class WireRecorder: ChannelDuplexHandler {
  typealias InboundIn = ByteBuffer
  typealias InboundOut = ByteBuffer
  typealias OutboundIn = ByteBuffer
  private let log: NIOLockedValueBox<[UInt8]>
  var context: ChannelHandlerContext?

  init(log: NIOLockedValueBox<[UInt8]>) { self.log = log }
  func handlerAdded(context: ChannelHandlerContext) { self.context = context }

  func channelRead(context: ChannelHandlerContext, data: NIOAny) {
    let bytes = unwrapInboundIn(data)
    log.withLockedValue { $0 += bytes.readableBytesView }
    context.fireChannelRead(data)
  }
}

private final class ScriptedAnswers: ChannelInboundHandler {
  typealias InboundIn = HTTPServerRequestPart
  private let wire: WireRecorder
  private let script: [String: (answer: String, close: Bool)]
  private var path = ""

  init(wire: WireRecorder, script: [String: (answer: String, close: Bool)]) {
    self.wire = wire
    self.script = script
  }

  func channelRead(context: ChannelHandlerContext, data: NIOAny) {
    switch unwrapInboundIn(data) {
    case .head(let head): path = String(head.uri.split(separator: "?").first ?? "")
    case .body: break
    case .end:
      guard let (answer, close) = script[path], let wire = wire.context else { return }
      let written = wire.writeAndFlush(NIOAny(ByteBuffer(string: answer)))
      if close { written.whenComplete { _ in wire.close(promise: nil) } }
    }
  }
}

/// Issue #15: one forwarding engine. Ordinary requests — bodies, chunked, pipelined, `HEAD`,
/// 1xx, trailers, close-delimited answers, large heads — give byte-identical upstream
/// requests and client answers whether the byte reader (express lane) or NIOHTTP1 read them.
@Suite(.timeLimit(.minutes(3))) struct ForwardingDifferentialTests {
  let group = MultiThreadedEventLoopGroup.singleton

  static let script: [String: (answer: String, close: Bool)] = [
    "/plain": ("HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 5\r\n\r\nhello", false),
    "/chunked": (
      "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nX-A: 1\r\n\r\n5\r\nhello\r\n6;ext=1\r\n world\r\n"
        + "0\r\nX-Trailer: t\r\n\r\n", false
    ),
    "/continue": ("HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok", false),
    "/hop": (
      "HTTP/1.1 200 OK\r\nConnection: X-Secret, keep-alive\r\nX-Secret: s\r\nKeep-Alive: timeout=5\r\n"
        + "Upgrade: h2c\r\nContent-Length: 2\r\n\r\nok", false
    ),
    "/big": (
      "HTTP/1.1 200 OK\r\nX-Big: \(String(repeating: "b", count: 12_000))\r\nContent-Length: 3\r\n\r\nbig",
      false
    ),
    "/empty": ("HTTP/1.1 204 No Content\r\nX-E: 1\r\n\r\n", false),
    "/close": ("HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n\r\nuntil the close", true),
    "/old": ("HTTP/1.0 200 OK\r\nContent-Length: 3\r\n\r\nold", true),
  ]

  /// Each request on a connection of its own; `{PASS}` is a pass for the gateway's room.
  static let corpus: [(name: String, request: String)] = [
    ("plain GET", "GET /plain HTTP/1.1\r\nHost: h\r\nX-Request-Id: d1\r\nAccept: */*\r\n\r\n"),
    ("HEAD", "HEAD /plain HTTP/1.1\r\nHost: h\r\nX-Request-Id: d2\r\n\r\n"),
    ("chunked answer with trailers", "GET /chunked HTTP/1.1\r\nHost: h\r\nX-Request-Id: d3\r\n\r\n"),
    ("1xx before the answer", "GET /continue HTTP/1.1\r\nHost: h\r\nX-Request-Id: d4\r\n\r\n"),
    ("hop-by-hop answer fields", "GET /hop HTTP/1.1\r\nHost: h\r\nX-Request-Id: d5\r\n\r\n"),
    (
      "large heads both ways",
      "GET /big HTTP/1.1\r\nHost: h\r\nX-Request-Id: d6\r\nX-Large: \(String(repeating: "a", count: 6_000))\r\n\r\n"
    ),
    ("204", "GET /empty HTTP/1.1\r\nHost: h\r\nX-Request-Id: d7\r\n\r\n"),
    (
      "a body with a length",
      "POST /plain HTTP/1.1\r\nHost: h\r\nX-Request-Id: d8\r\nContent-Type: text/plain\r\nContent-Length: 11\r\n\r\n"
        + "hello world"
    ),
    (
      "a chunked body with trailers",
      "POST /plain HTTP/1.1\r\nHost: h\r\nX-Request-Id: d9\r\nTransfer-Encoding: chunked\r\n\r\n"
        + "4\r\nwiki\r\n5\r\npedia\r\n0\r\nX-Checksum: 1\r\n\r\n"
    ),
    (
      "pipelined",
      "GET /plain HTTP/1.1\r\nHost: h\r\nX-Request-Id: d10\r\n\r\n"
        + "GET /chunked HTTP/1.1\r\nHost: h\r\nX-Request-Id: d11\r\n\r\n"
        + "HEAD /plain HTTP/1.1\r\nHost: h\r\nX-Request-Id: d12\r\n\r\n"
        + "POST /plain HTTP/1.1\r\nHost: h\r\nX-Request-Id: d13\r\nContent-Length: 2\r\n\r\nhi"
        + "GET /empty HTTP/1.1\r\nHost: h\r\nX-Request-Id: d14\r\n\r\n"
    ),
    (
      "a pass holder with cookies of its own",
      "GET /shop/seat HTTP/1.1\r\nHost: h\r\nX-Request-Id: d15\r\nCookie: theme=dark; foyer_p_{R}={PASS}; a=1\r\n"
        + "X-Forwarded-For: 10.1.1.1\r\nFoyer-Visitor: forged\r\n\r\n"
    ),
    ("a close-delimited answer", "GET /close HTTP/1.1\r\nHost: h\r\nX-Request-Id: d16\r\n\r\n"),
    ("an HTTP/1.0 answer", "GET /old HTTP/1.1\r\nHost: h\r\nX-Request-Id: d17\r\n\r\n"),
    ("the client closes", "GET /plain HTTP/1.1\r\nHost: h\r\nX-Request-Id: d18\r\nConnection: close\r\n\r\n"),
    ("an HTTP/1.0 client", "GET /chunked HTTP/1.0\r\nHost: h\r\nX-Request-Id: d19\r\n\r\n"),
  ]

  struct Run {
    var upstream: [[UInt8]] = []
    var client: [[UInt8]] = []
    var closed: [Bool] = []
  }

  func run(express: Bool, room: String, store: RoomStore, pass: String) async throws -> Run {
    let upstream = try await WireUpstream(group: group, script: Self.script)
    defer { upstream.channel.close(promise: nil) }
    let gateway = try await EdgeAttackTests().gateway(
      express: express, upstreamPort: upstream.port, store: store, room: room)
    defer { gateway.channel.close(promise: nil) }
    var run = Run()
    for (_, request) in Self.corpus {
      let before = upstream.received.count
      let text = request.replacingOccurrences(of: "{R}", with: room).replacingOccurrences(
        of: "{PASS}", with: pass)
      // As many answers as request lines (a 1xx only adds one): waited for, however slow.
      let requests = text.components(separatedBy: " HTTP/1.").count - 1
      let (bytes, closed) = await rawReply(port: gateway.port, send: Array(text.utf8), answers: requests)
      run.client.append(bytes)
      run.closed.append(closed)
      run.upstream.append(Array(upstream.received.dropFirst(before)))
    }
    return run
  }

  @Test func bothParsersForwardTheSameBytes() async throws {
    let tests = EdgeAttackTests()
    let store = RoomStore(
      redis: RedisClient(
        configuration: try RedisConfiguration(url: RedisServer.sharedURL()), eventLoopGroup: group),
      snapshotMaxAge: .zero)
    let room = "df-" + UUID().uuidString.prefix(8)
    try await store.createRoom(room, settings: RoomSettings(state: .paused))
    let pass = tests.pass(room)
    let express = try await run(express: true, room: room, store: store, pass: pass)
    let codec = try await run(express: false, room: room, store: store, pass: pass)
    for (index, (name, _)) in Self.corpus.enumerated() {
      let text = { (bytes: [UInt8]) in String(decoding: bytes, as: UTF8.self).prefix(2_000) }
      #expect(
        express.upstream[index] == codec.upstream[index],
        "\(name): upstream saw\n\(text(express.upstream[index]))\n---\n\(text(codec.upstream[index]))")
      #expect(
        express.client[index] == codec.client[index],
        "\(name): client got\n\(text(express.client[index]))\n---\n\(text(codec.client[index]))")
      #expect(express.closed[index] == codec.closed[index], "\(name): closed on one lane only")
      #expect(!express.client[index].isEmpty, "\(name): no answer")
    }
    // What both forwarded is what was meant, not merely the same.
    func upstream(_ name: String) -> String {
      String(decoding: codec.upstream[Self.corpus.firstIndex { $0.name == name }!], as: UTF8.self)
    }
    func client(_ name: String) -> String {
      String(decoding: codec.client[Self.corpus.firstIndex { $0.name == name }!], as: UTF8.self)
    }
    #expect(upstream("plain GET").hasPrefix("GET /plain HTTP/1.1\r\nHost: h\r\nAccept: */*\r\n"))
    #expect(upstream("plain GET").contains("x-forwarded-for: 127.0.0.1\r\n"))
    #expect(upstream("plain GET").hasSuffix("x-request-id: d1\r\n\r\n"))
    #expect(upstream("a body with a length").hasSuffix("\r\n\r\nhello world"))
    #expect(upstream("a body with a length").contains("content-length: 11\r\n"))
    #expect(
      upstream("a chunked body with trailers").hasSuffix(
        "\r\n\r\n4\r\nwiki\r\n5\r\npedia\r\n0\r\nX-Checksum: 1\r\n\r\n"))
    #expect(upstream("a chunked body with trailers").contains("transfer-encoding: chunked\r\n"))
    #expect(upstream("pipelined").components(separatedBy: "x-request-id: d1").count == 6)
    let holder = upstream("a pass holder with cookies of its own")
    #expect(holder.contains("Cookie: theme=dark; a=1\r\n") || holder.contains("cookie: theme=dark; a=1\r\n"))
    #expect(holder.contains("foyer-pass: \(pass)\r\n") && !holder.contains("forged"))
    #expect(holder.contains("x-forwarded-for: 10.1.1.1, 127.0.0.1\r\n"))
    #expect(client("chunked answer with trailers").contains("6;ext=1\r\n world\r\n0\r\nX-Trailer: t\r\n\r\n"))
    #expect(!client("1xx before the answer").contains("100 Continue"))
    #expect(client("1xx before the answer").hasSuffix("\r\n\r\nok"))
    #expect(!client("hop-by-hop answer fields").lowercased().contains("x-secret"))
    #expect(!client("hop-by-hop answer fields").lowercased().contains("upgrade"))
    #expect(client("a close-delimited answer").contains("connection: close\r\n"))
    #expect(client("a close-delimited answer").hasSuffix("until the close"))
    #expect(client("the client closes").contains("connection: close\r\n"))
    #expect(codec.closed[Self.corpus.firstIndex { $0.name == "the client closes" }!])
    // An HTTP/1.0 client's request goes on as HTTP/1.0, so the answer has no chunks it could
    // not read (this upstream chunks regardless; a conforming one would not).
    #expect(upstream("an HTTP/1.0 client").hasPrefix("GET /chunked HTTP/1.0\r\nHost: h\r\n"))
    #expect(client("an HTTP/1.0 client").contains("connection: close\r\n"))
    #expect(codec.closed[Self.corpus.firstIndex { $0.name == "an HTTP/1.0 client" }!])
    #expect(client("HEAD").hasSuffix("Content-Length: 5\r\n\r\n"))
  }
}
