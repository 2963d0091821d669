import Foundation
import FoyerCore
import FoyerTestSupport
import NIOCore
import NIOPosix
import RedisNIO
import Testing
import WaitingRoom

@testable import FoyerGateway

/// Issue #16 item 3: in a room with `challenge_bits`, a place costs proof of work. Real
/// gateways on a real Redis; solutions come from `Challenge.solve`, the reference solver.
@Suite(.serialized, .timeLimit(.minutes(3))) struct ChallengeTests {
  let group = MultiThreadedEventLoopGroup.singleton
  static let json = ["Accept": "application/json"]

  struct Room {
    let id: String
    let base: String
    let store: RoomStore
    let redis: RedisClient
    let channel: any Channel
    /// Kept here: the server stops when it is let go.
    let server: RedisServer
    var status: String { base + "/_foyer/status?room=\(id)" }

    func solve(_ challenge: String, _ counter: String, cookie: String?) async throws -> MultiGatewayTests.Reply {
      var headers = ChallengeTests.json
      if let cookie { headers["Cookie"] = "foyer_v_\(id)=\(cookie)" }
      return try await MultiGatewayTests.request(
        base + "/_foyer/solve?room=\(id)&challenge=\(challenge)&solution=\(counter)", method: "POST", headers: headers)
    }

    /// `EVALSHA` calls so far: every queue script (join, status, claim) is one.
    func scriptCalls() async throws -> Int { try await redisCalls("evalsha", on: redis) }
  }

  func room(bits: Int, maxPlacesPerClient: Int = 20) async throws -> Room {
    let redis = try await RedisServer.start()
    let client = RedisClient(configuration: redis.configuration, eventLoopGroup: group)
    let store = RoomStore(redis: client)
    let id = "pow-" + UUID().uuidString.prefix(8)
    let startsAt = Int64(Date().timeIntervalSince1970 * 1_000) + 3_600_000
    try await store.createRoom(
      id,
      settings: RoomSettings(startsAtMilliseconds: startsAt, maxPlacesPerClient: maxPlacesPerClient, challengeBits: bits))
    var configuration = GatewayConfiguration(
      host: "127.0.0.1", port: 0, keyRing: StatusEndpointTests.keyRing, rooms: [RoomRoute(id: id, pathPrefix: "/shop")])
    // Back-to-back polls are this suite's business; PollDisciplineTests covers the discipline.
    configuration.clients.minPollIntervalPercent = 0
    let channel = try await GatewayServer(configuration: configuration, store: store, eventLoopGroup: group).start()
    return Room(
      id: id, base: "http://127.0.0.1:\(channel.localAddress!.port!)", store: store, redis: client, channel: channel,
      server: redis)
  }

  /// A new visitor's challenge and visitor cookie.
  func challenge(_ room: Room) async throws -> (challenge: String, bits: Int, cookie: String) {
    let reply = try await MultiGatewayTests.request(room.status, headers: Self.json)
    #expect(reply.status == 200 && reply.json["state"] as? String == "challenge", "\(reply.status) \(reply.body)")
    #expect(reply.json["position"] is NSNull)
    return (
      try #require(reply.json["challenge"] as? String), try #require(reply.json["bits"] as? Int),
      try #require(MultiGatewayTests.cookie("foyer_v_\(room.id)", in: reply))
    )
  }

  @Test func aSolutionBuysExactlyOnePlaceForItsOwnVisitor() async throws {
    let room = try await room(bits: 10)
    defer { room.channel.close(promise: nil) }
    let (challenge, bits, cookie) = try await challenge(room)
    #expect(bits == 10)
    #expect(try await room.store.stats(room.id).waiting == 0, "a challenge is no place")

    // Another visitor cannot use it, and nobody can without a visitor id.
    let (_, _, otherCookie) = try await self.challenge(room)
    let (counter, _) = Challenge.solve(challenge, bits: bits)
    for cookie in [otherCookie, nil] {
      let stolen = try await room.solve(challenge, counter, cookie: cookie)
      #expect(stolen.status == 400 && stolen.json["error"] as? String == "invalid_solution")
    }
    #expect(try await room.store.stats(room.id).waiting == 0)

    // Its own visitor gets a place; the same solution again is the same place.
    let solved = try await room.solve(challenge, counter, cookie: cookie)
    #expect(solved.status == 200 && solved.json["state"] as? String == "queue")
    let position = try #require(solved.json["position"] as? Int)
    let again = try await room.solve(challenge, counter, cookie: cookie)
    #expect(again.status == 200 && again.json["position"] as? Int == position)
    #expect(try await room.store.stats(room.id).waiting == 1)
    // Polls find the place without any new work.
    let poll = try await MultiGatewayTests.request(room.status, headers: Self.json.merging(["Cookie": "foyer_v_\(room.id)=\(cookie)"]) { $1 })
    #expect(poll.json["position"] as? Int == position && poll.json["challenge"] == nil)

    // Having left, the visitor cannot spend the same solution on a new place.
    _ = try await MultiGatewayTests.request(
      room.base + "/_foyer/leave?room=\(room.id)", method: "POST", headers: ["Cookie": "foyer_v_\(room.id)=\(cookie)"])
    #expect(try await room.store.stats(room.id).waiting == 0)
    let spent = try await room.solve(challenge, counter, cookie: cookie)
    #expect(spent.status == 200 && spent.json["state"] as? String == "challenge")
    #expect(try await room.store.stats(room.id).waiting == 0)
  }

  @Test func badSolutionsAreRefusedWithoutTouchingRedis() async throws {
    let room = try await room(bits: 10)
    defer { room.channel.close(promise: nil) }
    let (challenge, bits, cookie) = try await challenge(room)
    let signer = try TokenSigner(keyRing: StatusEndpointTests.keyRing)
    let visitor = try #require(
      signer.verify(cookie, kind: .visitor, room: room.id, now: Int64(Date().timeIntervalSince1970)).visitor)
    // A counter that does not do the work.
    var lazy = 0
    while Challenge.isSolved(challenge, counter: String(lazy), bits: bits, using: signer.sha256) { lazy += 1 }
    // A challenge past its expiry, properly solved; one for another room; a forged MAC;
    // one signed by a key the gateway does not have.
    let expired = Challenge(room: room.id, visitor: visitor, bits: bits, expiry: 1_000).signed(with: signer)
    let elsewhere = Challenge(room: "elsewhere", visitor: visitor, bits: bits, expiry: 4_000_000_000).signed(with: signer)
    let foreign = Challenge(room: room.id, visitor: visitor, bits: bits, expiry: 4_000_000_000).signed(
      with: try TokenSigner(keyRing: KeyRing([SigningKey(id: "test", secret: Array(repeating: 9, count: 32))])))
    var forged = Array(challenge.utf8)
    forged[forged.count - 2] = forged[forged.count - 2] == UInt8(ascii: "A") ? UInt8(ascii: "B") : UInt8(ascii: "A")
    let forgedText = String(decoding: forged, as: UTF8.self)
    let cases: [(String, String)] = [
      (challenge, String(lazy)), (expired, Challenge.solve(expired, bits: bits).counter),
      (elsewhere, Challenge.solve(elsewhere, bits: bits).counter), (foreign, Challenge.solve(foreign, bits: bits).counter),
      (forgedText, Challenge.solve(forgedText, bits: bits).counter), (challenge, "-1"), (challenge, "12345678901234567"),
      ("c1.x", "1"),
    ]
    let before = try await room.scriptCalls()
    for (text, counter) in cases {
      let reply = try await room.solve(text, counter, cookie: cookie)
      #expect(reply.status == 400 && reply.json["error"] as? String == "invalid_solution", "\(text) \(counter)")
    }
    #expect(try await room.scriptCalls() == before, "a bad solution cost Redis a script call")
    #expect(try await room.store.stats(room.id).waiting == 0)
  }

  @Test func raisingTheDifficultyAsksForNewWork() async throws {
    let room = try await room(bits: 6)
    defer { room.channel.close(promise: nil) }
    let (challenge, bits, cookie) = try await challenge(room)
    _ = try await room.store.update(room.id, changes: ["challenge_bits": "12"])
    let reply = try await room.solve(challenge, Challenge.solve(challenge, bits: bits).counter, cookie: cookie)
    #expect(reply.status == 200 && reply.json["bits"] as? Int == 12)
    let harder = try #require(reply.json["challenge"] as? String)
    let solved = try await room.solve(harder, Challenge.solve(harder, bits: 12).counter, cookie: cookie)
    #expect(solved.status == 200 && solved.json["position"] as? Int == 1)
    // A browser gets the waiting page with the challenge in it, to solve by itself.
    let page = try await MultiGatewayTests.request(room.base + "/shop/x", headers: ["Accept": "text/html"])
    #expect(page.status == 200 && page.body.contains("var challenge = \"c1.\(room.id)."))
  }

  /// A client out of places is told so before it is given work, and a solution is not spent
  /// on a join that is refused anyway.
  @Test func aClientOutOfPlacesIsRefusedBeforeAnyWork() async throws {
    let room = try await room(bits: 6, maxPlacesPerClient: 1)
    defer { room.channel.close(promise: nil) }
    let (first, bits, cookie) = try await challenge(room)
    // A second visitor from the same address gets its challenge while a place is left.
    let (second, _, secondCookie) = try await challenge(room)
    let solved = try await room.solve(first, Challenge.solve(first, bits: bits).counter, cookie: cookie)
    #expect(solved.status == 200 && solved.json["position"] as? Int == 1)
    // Now the address is out of places: the second solution is refused and kept unspent,
    let counter = Challenge.solve(second, bits: bits).counter
    let refused = try await room.solve(second, counter, cookie: secondCookie)
    #expect(refused.status == 429 && refused.json["error"] as? String == "too_many_places")
    // a third visitor gets no challenge at all,
    let third = try await MultiGatewayTests.request(room.status, headers: Self.json)
    #expect(third.status == 429 && third.json["challenge"] == nil)
    // and when the operator lifts the limit, the kept solution still buys its place.
    _ = try await room.store.update(room.id, changes: ["max_places_per_client": "0"])
    let later = try await room.solve(second, counter, cookie: secondCookie)
    #expect(later.status == 200 && later.json["position"] as? Int != nil)
    #expect(try await room.store.stats(room.id).waiting == 2)
  }
}
