import Foundation
import FoyerCore
import FoyerTestSupport
import NIOCore
import NIOPosix
import RedisNIO
import Testing
import WaitingRoom

@testable import FoyerGateway

/// Issue #16 item 4: a visitor who asks where it stands much sooner than its `pollAfterMs`
/// allowed gets `429` from the gateway's memory, on both lanes and on the waiting page,
/// without any Redis work (counted with `INFO commandstats`); one who waits as told is answered.
@Suite(.serialized, .timeLimit(.minutes(3))) struct PollDisciplineTests {
  let group = MultiThreadedEventLoopGroup.singleton
  static let json = ["Accept": "application/json"]

  struct Room {
    let id: String
    let port: Int
    let redis: RedisClient
    let channel: any Channel
    let server: RedisServer
    var base: String { "http://127.0.0.1:\(port)" }
    var status: String { base + "/_foyer/status?room=\(id)" }

    /// Calls of a Redis command so far.
    func calls(_ command: String) async throws -> Int { try await redisCalls(command, on: redis) }

    /// A raw keep-alive `GET` of the status endpoint as `cookie`'s visitor (the express lane).
    func rawPoll(cookie: String) -> String {
      "GET /_foyer/status?room=\(id) HTTP/1.1\r\nHost: t\r\nAccept: application/json\r\n"
        + "Cookie: foyer_v_\(id)=\(cookie)\r\n\r\n"
    }
  }

  /// A room whose sale starts in an hour, with `ahead` visitors already in line (written
  /// straight into the queue), behind a gateway asking for `percent`.
  func room(ahead: Int, percent: Int) async throws -> Room {
    let startsAt = Int64(Date().timeIntervalSince1970 * 1_000) + 3_600_000
    return try await Self.room(
      "poll", settings: RoomSettings(startsAtMilliseconds: startsAt), ahead: ahead, percent: percent, group: group)
  }

  /// A gateway and a Redis of their own, room `settings` with `ahead` entries in line first
  /// (written straight into the queue), polls allowed `percent` of `pollAfterMs` apart.
  static func room(
    _ prefix: String, settings: RoomSettings, ahead: Int, percent: Int, snapshotMaxAge: TimeAmount = .milliseconds(250),
    group: any EventLoopGroup
  ) async throws -> Room {
    let redis = try await RedisServer.start()
    let client = RedisClient(configuration: redis.configuration, eventLoopGroup: group)
    let store = RoomStore(redis: client, snapshotMaxAge: snapshotMaxAge)
    let id = prefix + "-" + UUID().uuidString.prefix(8)
    try await store.createRoom(id, settings: settings)
    var start = 0
    while start < ahead {
      var command = RedisCommand("ZADD", "foyer:{\(id)}:queue")
      for index in start..<min(start + 1_000, ahead) {
        command.append(String(index + 1))
        command.append("ahead-\(index)")
      }
      _ = try await client.send(command)
      start += 1_000
    }
    var configuration = GatewayConfiguration(
      host: "127.0.0.1", port: 0, keyRing: StatusEndpointTests.keyRing,
      rooms: [RoomRoute(id: id, pathPrefix: "/shop")])
    configuration.clients = ClientPolicy(minPollIntervalPercent: percent)
    let channel = try await GatewayServer(configuration: configuration, store: store, eventLoopGroup: group).start()
    return Room(id: id, port: channel.localAddress!.port!, redis: client, channel: channel, server: redis)
  }

  /// A new visitor's place: its cookie and the `pollAfterMs` it was told.
  func join(_ room: Room) async throws -> (cookie: String, pollAfter: Int, position: Int) {
    let reply = try await MultiGatewayTests.request(room.status, headers: Self.json)
    #expect(reply.status == 200 && reply.json["state"] as? String == "queue", "\(reply.status) \(reply.body)")
    return (
      try #require(MultiGatewayTests.cookie("foyer_v_\(room.id)", in: reply)),
      try #require(reply.json["pollAfterMs"] as? Int), try #require(reply.json["position"] as? Int)
    )
  }

  @Test func pollsSoonerThanToldAreRefusedFromMemoryOnEveryPath() async throws {
    // 100,000 ahead: the visitor is told to come back in about 15 s (and must wait all of it
    // here), far longer than this test's requests take on a loaded machine.
    let room = try await room(ahead: 100_000, percent: 100)
    defer { room.channel.close(promise: nil) }
    let (cookie, pollAfter, position) = try await join(room)
    #expect(position == 100_001)
    #expect(pollAfter >= 10_000, "told \(pollAfter) ms")
    let retryCeiling = (pollAfter + 999) / 1_000
    let ranks = try await room.calls("zrank")
    let scripts = try await room.calls("evalsha")

    // The express lane: 40 polls pipelined on one keep-alive connection, all answered.
    let pipelined = await rawAnswers(
      port: room.port, send: Array(String(repeating: room.rawPoll(cookie: cookie), count: 40).utf8), answers: 40,
      timeout: 10)
    #expect(pipelined.answers.count == 40)
    #expect(!pipelined.closed, "a too-soon poll does not close the connection")
    for answer in pipelined.answers {
      #expect(answer.status == 429, "\(answer)")
      #expect(answer.text.contains("\"error\":\"poll_too_soon\""), "\(answer)")
      let retry = try #require(Int(answer.header("retry-after") ?? ""))
      #expect((1...retryCeiling).contains(retry), "Retry-After \(retry), told \(pollAfter) ms")
    }
    // A new connection per poll meets the same memory (any of the gateway's event loops).
    for _ in 0..<10 {
      let reply = try await MultiGatewayTests.request(
        room.status, headers: Self.json.merging(["Cookie": "foyer_v_\(room.id)=\(cookie)"]) { $1 })
      #expect(reply.status == 429 && reply.json["error"] as? String == "poll_too_soon", "\(reply.status) \(reply.body)")
      #expect(reply.headers["set-cookie"] == nil)
    }
    // The waiting page reloaded: a page that says so, and polls again by itself.
    for _ in 0..<5 {
      let reply = try await MultiGatewayTests.request(
        room.base + "/shop/", headers: ["Accept": "text/html", "Cookie": "foyer_v_\(room.id)=\(cookie)"])
      #expect(reply.status == 429, "\(reply.status)")
      #expect(reply.headers["content-type"]?.hasPrefix("text/html") == true)
      #expect(reply.body.contains("your place is kept"))
      #expect(reply.headers["retry-after"] != nil)
    }
    // None of the 55 cost Redis a command of the poll path.
    #expect(try await room.calls("zrank") == ranks)
    #expect(try await room.calls("evalsha") == scripts)
    // Another visitor is not held back by this one.
    let other = try await join(room)
    #expect(other.position == 100_002 || other.position == 100_001, "the pre-queue is shuffled")
  }

  @Test func aVisitorWhoWaitsAsToldIsAnsweredAndTheNextEarlyPollIsNot() async throws {
    let room = try await room(ahead: 0, percent: 50)
    defer { room.channel.close(promise: nil) }
    let (cookie, pollAfter, _) = try await join(room)
    let headers = Self.json.merging(["Cookie": "foyer_v_\(room.id)=\(cookie)"]) { $1 }
    for round in 0..<2 {
      // As the waiting page does: wait what was told, then ask (keep-alive and new connections alike).
      try await Task.sleep(for: .milliseconds(pollAfter + 50))
      let ranks = try await room.calls("zrank")
      let reply =
        round == 0
        ? try await MultiGatewayTests.request(room.status, headers: headers)
        : await {
          let raw = await rawAnswers(port: room.port, send: Array(room.rawPoll(cookie: cookie).utf8), answers: 1)
          return MultiGatewayTests.Reply(
            status: raw.answers.first?.status ?? 0, headers: [:], body: raw.answers.first?.text ?? "")
        }()
      #expect(reply.status == 200 && reply.json["position"] as? Int == 1, "\(reply.status) \(reply.body)")
      #expect(try await room.calls("zrank") == ranks + 1, "an allowed poll asks Redis")
      let early = try await MultiGatewayTests.request(room.status, headers: headers)
      #expect(early.status == 429, "\(early.status) \(early.body)")
    }
  }

  @Test func zeroTurnsItOff() async throws {
    let room = try await room(ahead: 0, percent: 0)
    defer { room.channel.close(promise: nil) }
    let (cookie, _, _) = try await join(room)
    let ranks = try await room.calls("zrank")
    let answers = await rawAnswers(
      port: room.port, send: Array(String(repeating: room.rawPoll(cookie: cookie), count: 20).utf8), answers: 20)
    #expect(answers.answers.map(\.status) == Array(repeating: 200, count: 20))
    #expect(try await room.calls("zrank") == ranks + 20)
  }
}
