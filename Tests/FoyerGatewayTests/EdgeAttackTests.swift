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

/// An upstream that records exactly which requests arrived, as an llhttp-based server (NIO's
/// decoder, as Hummingbird and BoxOffice use) reads them, and answers each with what it saw.
final class RecordingUpstream: Sendable {
  let channel: any Channel
  var port: Int { channel.localAddress!.port! }
  private let seen: NIOLockedValueBox<[String]>

  /// `METHOD target bodyLength`, plus ` cookie=…` when a Cookie header came.
  var requests: [String] { seen.withLockedValue { $0 } }

  init(group: any EventLoopGroup) async throws {
    let seen = NIOLockedValueBox<[String]>([])
    self.seen = seen
    channel = try await ServerBootstrap(group: group)
      .childChannelInitializer { channel in
        channel.eventLoop.makeCompletedFuture {
          try channel.pipeline.syncOperations.configureHTTPServerPipeline()
          try channel.pipeline.syncOperations.addHandler(RecordingHandler(seen: seen))
        }
      }
      .bind(host: "127.0.0.1", port: 0).get()
  }
}

private final class RecordingHandler: ChannelInboundHandler {
  typealias InboundIn = HTTPServerRequestPart
  typealias OutboundOut = HTTPServerResponsePart
  private var head: HTTPRequestHead?
  private var length = 0
  private let seen: NIOLockedValueBox<[String]>

  init(seen: NIOLockedValueBox<[String]>) { self.seen = seen }

  func channelRead(context: ChannelHandlerContext, data: NIOAny) {
    switch unwrapInboundIn(data) {
    case .head(let head):
      self.head = head
      length = 0
    case .body(let body):
      length += body.readableBytes
    case .end(let trailers):
      guard let head else { return }
      var line = "\(head.method.rawValue) \(head.uri) \(length)"
      let cookies = head.headers["cookie"]
      if !cookies.isEmpty { line += " cookie=" + cookies.joined(separator: "|") }
      if let trailers, !trailers.isEmpty { line += " trailers=" + trailers.map(\.name).joined(separator: ",") }
      seen.withLockedValue { $0.append(line) }
      var headers = HTTPHeaders()
      if head.uri.hasSuffix("/release") { headers.add(name: "foyer-release", value: "done") }
      let body = ByteBuffer(string: "seen " + line)
      headers.add(name: "content-length", value: String(body.readableBytes))
      context.write(wrapOutboundOut(.head(HTTPResponseHead(version: .http1_1, status: .ok, headers: headers))), promise: nil)
      context.write(wrapOutboundOut(.body(.byteBuffer(body))), promise: nil)
      context.writeAndFlush(wrapOutboundOut(.end(nil)), promise: nil)
    }
  }
}

/// Issue #15's attacks against a live gateway, on both lanes, in front of a recording
/// upstream: the upstream's own view says what got through.
@Suite(.timeLimit(.minutes(4))) struct EdgeAttackTests {
  let group = MultiThreadedEventLoopGroup.singleton
  let signer = try! TokenSigner(keyRing: StatusEndpointTests.keyRing)

  struct Gateway {
    let port: Int
    let room: String
    let store: RoomStore
    let channel: any Channel
    let metrics: GatewayMetrics
  }

  func gateway(
    express: Bool, upstreamPort: Int, settings: RoomSettings = RoomSettings(state: .paused),
    store existing: RoomStore? = nil, room existingRoom: String? = nil, prefix: String = "/shop"
  ) async throws -> Gateway {
    let redis = RedisClient(
      configuration: try RedisConfiguration(url: RedisServer.sharedURL()), eventLoopGroup: group)
    let store = existing ?? RoomStore(redis: redis, snapshotMaxAge: .zero)
    let room = existingRoom ?? "ea-" + UUID().uuidString.prefix(8)
    if existingRoom == nil { try await store.createRoom(room, settings: settings) }
    let metrics = GatewayMetrics()
    let configuration = GatewayConfiguration(
      host: "127.0.0.1", port: 0, keyRing: StatusEndpointTests.keyRing,
      rooms: [RoomRoute(id: room, pathPrefix: prefix)],
      upstream: UpstreamConfiguration(host: "127.0.0.1", port: upstreamPort, responseTimeout: .seconds(2)),
      expressLane: express)
    let channel = try await GatewayServer(
      configuration: configuration, store: store, eventLoopGroup: group, metrics: metrics
    ).start()
    return Gateway(port: channel.localAddress!.port!, room: room, store: store, channel: channel, metrics: metrics)
  }

  func pass(_ room: String, _ visitor: VisitorID = .random(), seconds: Int64 = 60) -> String {
    signer.sign(Token(kind: .pass, room: room, visitor: visitor, time: Int64(Date().timeIntervalSince1970) + seconds))
  }

  @Test(arguments: ProxyTests.lanes) func theAttackCorpusFailsOnBothLanes(express: Bool) async throws {
    #expect(EdgeAttack.corpus.count >= 40)
    let upstream = try await RecordingUpstream(group: group)
    defer { upstream.channel.close(promise: nil) }
    let gateway = try await gateway(express: express, upstreamPort: upstream.port)
    defer { gateway.channel.close(promise: nil) }
    let pass = pass(gateway.room)
    for attack in EdgeAttack.corpus {
      let before = upstream.requests.count
      let bytes = attack.bytes(prefix: "/shop", host: "127.0.0.1", room: gateway.room, pass: pass)
      switch attack.expect {
      case .refused(let statuses):
        let (answers, closed) = await rawAnswers(port: gateway.port, send: bytes, answers: 2)
        try await Task.sleep(for: .milliseconds(20))
        #expect(answers.count == 1 && statuses.contains(answers[0].status), "\(attack): \(answers)")
        #expect(closed, "\(attack): the connection stayed open")
        #expect(upstream.requests.count == before, "\(attack): forwarded \(upstream.requests.dropFirst(before))")
      case .queued:
        let (answers, _) = await rawAnswers(port: gateway.port, send: bytes, answers: 1)
        #expect(answers.count == 1 && answers.first?.status == 200, "\(attack): \(answers)")
        #expect(answers.first?.text.contains("\"room\":\"\(gateway.room)\"") == true, "\(attack): \(answers)")
        #expect(upstream.requests.count == before, "\(attack): forwarded \(upstream.requests.dropFirst(before))")
      case .forwarded(let expected):
        let expected = expected.map { $0.replacingOccurrences(of: "{P}", with: "/shop") }
        let (answers, _) = await rawAnswers(port: gateway.port, send: bytes, answers: expected.count)
        #expect(Array(upstream.requests.dropFirst(before)) == expected, "\(attack)")
        #expect(answers.map(\.text) == expected.map { "seen " + $0 }, "\(attack): \(answers)")
      }
    }
    let metrics = ProxyTests.metricsText(gateway.metrics)
    #expect(metrics.contains("foyer_refused_requests_total{reason=\"bad_target\"}"))
  }

  @Test(arguments: ProxyTests.lanes) func theAdmissionRedirectStaysOnTheSameOrigin(express: Bool) async throws {
    let upstream = try await RecordingUpstream(group: group)
    defer { upstream.channel.close(promise: nil) }
    // A room on `/`: `//evil.example/x` is in it, and its redirect must not leave the site.
    let gateway = try await gateway(
      express: express, upstreamPort: upstream.port, settings: RoomSettings(ratePerMinute: 60_000), prefix: "/")
    defer { gateway.channel.close(promise: nil) }
    let (answers, _) = await rawAnswers(
      port: gateway.port, send: Array("GET //evil.example/x/../y HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n".utf8),
      answers: 1)
    #expect(answers.first?.status == 307, "\(answers)")
    #expect(answers.first?.header("location") == "/evil.example/y")
    #expect(upstream.requests.isEmpty)
  }

  /// Mechanism 7: a client that pipelines without reading its answers is stopped (reads
  /// pause while its answers cannot be written), not answered into the gateway's memory.
  @Test(arguments: ProxyTests.lanes) func aClientThatNeverReadsIsStopped(express: Bool) async throws {
    let upstream = try await RecordingUpstream(group: group)
    defer { upstream.channel.close(promise: nil) }
    let gateway = try await gateway(express: express, upstreamPort: upstream.port)
    defer { gateway.channel.close(promise: nil) }
    let request = "GET /public/x HTTP/1.1\r\nHost: h\r\n\r\n"
    let taken = await bytesTakenFromAClientThatNeverReads(port: gateway.port, request: request)
    try await Task.sleep(for: .milliseconds(500))
    // The kernel's buffers take a few MiB of requests, but the gateway serves only as many as
    // its answers fill the way back (about 180 bytes each into a few MiB of socket buffers).
    let served = upstream.requests.count
    #expect(taken != nil, "the gateway kept reading past 32 MiB")
    #expect(served < 30_000, "served \(served) requests to a client that read none of them")
    // Answers the gateway makes itself (status polls of a known visitor) are held back too.
    let visitor = VisitorID.random()
    try await _ = gateway.store.join(room: gateway.room, visitor: visitor)
    let token = signer.sign(Token(kind: .visitor, room: gateway.room, visitor: visitor, time: Int64(Date().timeIntervalSince1970)))
    let poll = "GET /_foyer/status?room=\(gateway.room) HTTP/1.1\r\nHost: h\r\nCookie: foyer_v_\(gateway.room)=\(token)\r\n\r\n"
    let pollsTaken = await bytesTakenFromAClientThatNeverReads(port: gateway.port, request: poll)
    try await Task.sleep(for: .milliseconds(500))
    let polls = ProxyTests.metricsText(gateway.metrics).split(separator: "\n")
      .first { $0.hasPrefix("foyer_status_polls_total ") }.map { Int($0.split(separator: " ")[1]) ?? -1 } ?? -1
    #expect(pollsTaken != nil, "the gateway kept reading polls past 32 MiB")
    #expect(polls >= 0 && polls < 30_000, "answered \(polls) polls to a client that read none")
    // And it still serves everyone else.
    let (answers, _) = await rawAnswers(
      port: gateway.port, send: Array("GET /_foyer/healthz HTTP/1.1\r\nHost: h\r\n\r\n".utf8), answers: 1)
    #expect(answers.first?.status == 200)
  }

  @Test(arguments: ProxyTests.lanes) func passthroughRoomsForwardBodiesInStep(express: Bool) async throws {
    let upstream = try await RecordingUpstream(group: group)
    defer { upstream.channel.close(promise: nil) }
    let gateway = try await gateway(
      express: express, upstreamPort: upstream.port, settings: RoomSettings(state: .passthrough))
    defer { gateway.channel.close(promise: nil) }
    let request =
      "POST /shop/buy HTTP/1.1\r\nHost: h\r\nContent-Length: 5\r\n\r\nabcde"
      + "POST /shop/buy HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nxyz\r\n0\r\n\r\n"
      + "GET /after HTTP/1.1\r\nHost: h\r\n\r\n"
    let (answers, _) = await rawAnswers(port: gateway.port, send: Array(request.utf8), answers: 3)
    let expected = ["POST /shop/buy 5", "POST /shop/buy 3", "GET /after 0"]
    #expect(upstream.requests == expected)
    #expect(answers.map(\.text) == expected.map { "seen " + $0 })
    // Over the kept size, a body answered by the queue is refused rather than cut.
    let big = String(repeating: "b", count: GatewayHandler.localBodyLimit + 1)
    let (over, _) = await rawAnswers(
      port: gateway.port,
      send: Array("POST /shop/buy HTTP/1.1\r\nHost: h\r\nContent-Length: \(big.utf8.count)\r\n\r\n\(big)".utf8),
      answers: 1)
    #expect(over.first?.status == 413)
    #expect(upstream.requests == expected)
  }

  /// A pass given back by leave, by `Foyer-Release: done` or by an operator is refused by
  /// this gateway at once and by a second gateway on the same Redis at its next revocation
  /// refresh (250 ms; the test allows 3 s, as a loaded machine's parallel suites delay both
  /// gateways' loops and every probe's connection).
  @Test(arguments: ProxyTests.lanes) func passesGivenBackAreRefusedEverywhere(express: Bool) async throws {
    let upstream = try await RecordingUpstream(group: group)
    defer { upstream.channel.close(promise: nil) }
    let first = try await gateway(
      express: express, upstreamPort: upstream.port, settings: RoomSettings(ratePerMinute: 60_000))
    defer { first.channel.close(promise: nil) }
    let second = try await gateway(
      express: express, upstreamPort: upstream.port, store: first.store, room: first.room)
    defer { second.channel.close(promise: nil) }
    let admin = try await AdminServer(
      configuration: AdminConfiguration(host: "127.0.0.1", port: 0, token: "edge-token"), store: first.store,
      eventLoopGroup: group
    ).start()
    defer { admin.close(promise: nil) }
    let adminBase = "http://127.0.0.1:\(admin.localAddress!.port!)"

    func admitted() async throws -> (pass: String, visitor: String) {
      let reply = try await httpRequest(
        "GET", "http://127.0.0.1:\(first.port)/_foyer/status?room=\(first.room)")
      let pass = try #require(reply.json["pass"] as? String, "\(reply.text)")
      let cookie = try #require(reply.headers["set-cookie"])
      _ = cookie
      guard case .valid(let visitor, _) = signer.verify(
        pass, kind: .pass, room: first.room, now: Int64(Date().timeIntervalSince1970))
      else { throw CancellationError() }
      return (pass, visitor.description)
    }

    func forwardedBy(_ gateway: Gateway, _ pass: String) async -> Bool {
      let (answers, _) = await rawAnswers(
        port: gateway.port,
        send: Array("GET /shop/a HTTP/1.1\r\nHost: h\r\nCookie: foyer_p_\(gateway.room)=\(pass)\r\nAccept: application/json\r\n\r\n".utf8),
        answers: 1)
      return answers.first?.text.hasPrefix("seen ") == true
    }

    func refusedSoon(_ gateway: Gateway, _ pass: String) async throws -> Bool {
      let started = Date()
      while Date().timeIntervalSince(started) < 3.0 {
        if await !forwardedBy(gateway, pass) { return true }
        try await Task.sleep(for: .milliseconds(50))
      }
      return false
    }

    let ways: [(String, (String, String) async throws -> Void)] = [
      ("leave", { pass, _ in
        let reply = try await httpRequest(
          "POST", "http://127.0.0.1:\(first.port)/_foyer/leave?room=\(first.room)",
          headers: ["Cookie": "foyer_p_\(first.room)=\(pass)"])
        #expect(reply.json["result"] as? String == "released")
      }),
      ("Foyer-Release: done", { pass, _ in
        let (answers, _) = await rawAnswers(
          port: first.port,
          send: Array("POST /shop/release HTTP/1.1\r\nHost: h\r\nFoyer-Pass: \(pass)\r\nContent-Length: 0\r\n\r\n".utf8),
          answers: 1)
        #expect(answers.first?.text.hasPrefix("seen POST /shop/release") == true)
      }),
      ("an operator", { _, visitor in
        let reply = try await httpRequest(
          "DELETE", adminBase + "/rooms/\(first.room)/visitors/\(visitor)",
          headers: ["Authorization": "Bearer edge-token"])
        #expect(reply.status == 200 && reply.json["result"] as? String == "released", "\(reply.text)")
      }),
    ]
    for (way, giveBack) in ways {
      let (pass, visitor) = try await admitted()
      let fresh = (await forwardedBy(first, pass), await forwardedBy(second, pass))
      #expect(fresh == (true, true), "\(way): the fresh pass")
      try await giveBack(pass, visitor)
      if way != "an operator" {
        #expect(await !forwardedBy(first, pass), "\(way): the gateway that took it back still forwards it")
      }
      #expect(try await refusedSoon(first, pass), "\(way): still forwarded after 3 s")
      #expect(try await refusedSoon(second, pass), "\(way): the second gateway still forwards it after 3 s")
      // The refused pass ends the visit: its cookie is cleared and the answer says so.
      let (answers, _) = await rawAnswers(
        port: second.port,
        send: Array("GET /shop/a HTTP/1.1\r\nHost: h\r\nFoyer-Pass: \(pass)\r\nAccept: application/json\r\n\r\n".utf8),
        answers: 1)
      #expect(answers.first?.text.contains("\"state\":\"ended\"") == true, "\(way): \(answers)")
    }
    #expect(ProxyTests.metricsText(first.metrics).contains("foyer_pass_rejections_total{reason=\"revoked\"}"))
  }
}
