import Foundation
import FoyerCore
import FoyerTestSupport
import NIOCore
import NIOPosix
import RedisNIO
import Testing
import WaitingRoom

@testable import FoyerGateway

/// Issue #16 item 5: an invite-only room gives a place only for an enqueue token its
/// operator's site signed, and one account gets one place from any browser, address or
/// gateway. Real gateways on a real Redis.
@Suite(.serialized, .timeLimit(.minutes(3))) struct InviteOnlyTests {
  let group = MultiThreadedEventLoopGroup.singleton
  static let roomKey = Array("invite-only-room-key-0123456789ab".utf8)

  func gateway(_ redis: RedisServer, room: String, key: [UInt8]) async throws -> (String, any Channel) {
    let store = RoomStore(redis: RedisClient(configuration: redis.configuration, eventLoopGroup: group))
    var configuration = GatewayConfiguration(
      host: "127.0.0.1", port: 0, keyRing: StatusEndpointTests.keyRing,
      rooms: [RoomRoute(id: room, pathPrefix: "/shop")])
    configuration.enqueueKeys = [room: key]
    // Each gateway believes the loopback proxy, so a test can be "another address".
    configuration.clients = ClientPolicy(trustedProxies: [AddressBlock("127.0.0.1")!])
    // Back-to-back polls are this suite's business; PollDisciplineTests covers the discipline.
    configuration.clients.minPollIntervalPercent = 0
    let channel = try await GatewayServer(configuration: configuration, store: store, eventLoopGroup: group).start()
    return ("http://127.0.0.1:\(channel.localAddress!.port!)", channel)
  }

  static func token(room: String, account: String, key: [UInt8] = roomKey, seconds: Int64 = 600) throws -> String {
    try EnqueueToken(room: room, account: account, expiry: Int64(Date().timeIntervalSince1970) + seconds)
      .signed(key: key)
  }

  @Test func oneAccountOnePlaceAndNoPlaceWithoutAnInvitation() async throws {
    let redis = try await RedisServer.start()
    let room = "inv-" + UUID().uuidString.prefix(8)
    let store = RoomStore(redis: RedisClient(configuration: redis.configuration, eventLoopGroup: group))
    let startsAt = Int64(Date().timeIntervalSince1970 * 1_000) + 3_600_000
    try await store.createRoom(room, settings: RoomSettings(startsAtMilliseconds: startsAt))
    let (a, channelA) = try await gateway(redis, room: room, key: Self.roomKey)
    let (b, channelB) = try await gateway(redis, room: room, key: Self.roomKey)
    defer {
      channelA.close(promise: nil)
      channelB.close(promise: nil)
    }
    let json = ["Accept": "application/json"]
    let status = "/_foyer/status?room=\(room)"

    // No invitation: no place, no visitor id.
    let none = try await MultiGatewayTests.request(a + status, headers: json)
    #expect(none.status == 403 && none.json["error"] as? String == "enqueue_token_required")
    #expect(none.headers["set-cookie"] == nil)
    let page = try await MultiGatewayTests.request(a + "/shop/x", headers: ["Accept": "text/html"])
    #expect(page.status == 403 && page.body.contains("by invitation"))

    // Forged, foreign and stale invitations are refused, each without a place.
    let account = "c2hhMjU2LW9mLWFjY291bnQtNDI"
    let valid = try Self.token(room: room, account: account)
    var flipped = Array(valid.utf8)
    flipped[flipped.count - 3] = flipped[flipped.count - 3] == UInt8(ascii: "A") ? UInt8(ascii: "B") : UInt8(ascii: "A")
    let forged = [
      try Self.token(room: room, account: account, key: Array("another-key-of-32-bytes-000000000".utf8)),
      String(decoding: flipped, as: UTF8.self),
      try Self.token(room: room, account: account, seconds: -1),
      try Self.token(room: "elsewhere", account: account),
      String(valid.dropLast(5)),
      valid.replacingOccurrences(of: account, with: "c2hhMjU2LW9mLWFjY291bnQtNDM"),
      "garbage",
    ]
    for token in forged {
      let reply = try await MultiGatewayTests.request(a + status, headers: json.merging(["Foyer-Enqueue": token]) { $1 })
      #expect(reply.status == 403 && reply.json["error"] as? String == "invalid_enqueue_token", "\(token)")
      #expect(reply.headers["set-cookie"] == nil)
    }
    #expect(try await store.stats(room).waiting == 0)

    // The account joins on A from one address, then again on B from another browser and
    // address, with the token in the URL as a browser brings it: one place, the same one.
    let first = try await MultiGatewayTests.request(
      a + status, headers: json.merging(["Foyer-Enqueue": valid, "X-Forwarded-For": "198.51.100.1"]) { $1 })
    #expect(first.status == 200)
    let position = try #require(first.json["position"] as? Int)
    let second = try await MultiGatewayTests.request(
      b + status + "&foyer_enqueue=" + valid, headers: json.merging(["X-Forwarded-For": "203.0.113.9"]) { $1 })
    #expect(second.status == 200 && second.json["position"] as? Int == position)
    #expect(try await store.stats(room).waiting == 1)
    // Both browsers now hold the account's visitor id, and poll without the token.
    let cookie = try #require(MultiGatewayTests.cookie("foyer_v_\(room)", in: second))
    let firstCookie = try #require(MultiGatewayTests.cookie("foyer_v_\(room)", in: first))
    // The same visitor id (the tokens' issue seconds may differ).
    func visitor(_ token: String) -> Substring { token.split(separator: ".")[3] }
    #expect(visitor(cookie) == visitor(firstCookie))
    let polled = try await MultiGatewayTests.request(
      b + status, headers: json.merging(["Cookie": "foyer_v_\(room)=\(cookie)"]) { $1 })
    #expect(polled.status == 200 && polled.json["position"] as? Int == position)

    // Another account is another place.
    let other = try await MultiGatewayTests.request(
      b + status, headers: json.merging(["Foyer-Enqueue": try Self.token(room: room, account: "b3RoZXItYWNjb3VudC1oYXNo")]) { $1 })
    #expect(other.status == 200)
    #expect(try await store.stats(room).waiting == 2)
  }

  @Test func tokensVerifyOnlyInTheirCanonicalForm() throws {
    let key = try HMACSHA256(key: Self.roomKey)
    let now = Int64(Date().timeIntervalSince1970)
    let token = try EnqueueToken(room: "r", account: "0123456789abcdef", expiry: now + 60).signed(key: Self.roomKey)
    #expect(try EnqueueToken.verify(token, room: "r", key: key, now: now).get().account == "0123456789abcdef")
    #expect(EnqueueToken.verify(token, room: "r", key: key, now: now + 60) == .failure(.expired))
    #expect(EnqueueToken.verify(token, room: "s", key: key, now: now) == .failure(.wrongRoom))
    let padded = token.replacingOccurrences(of: ".\(now + 60).", with: ".0\(now + 60).")
    #expect(EnqueueToken.verify(padded, room: "r", key: key, now: now) == .failure(.malformed))
    #expect(EnqueueToken.verify(token + "x", room: "r", key: key, now: now) != .success(EnqueueToken(room: "r", account: "0123456789abcdef", expiry: now + 60)))
    #expect(EnqueueToken.verify("e1.r.short.1.AAAA", room: "r", key: key, now: now) == .failure(.malformed))
    // The account's visitor id is the same on every gateway with the key, and differs by account.
    let a = EnqueueToken(room: "r", account: "0123456789abcdef", expiry: 1)
    #expect(a.visitor(key: key) == a.visitor(key: try HMACSHA256(key: Self.roomKey)))
    #expect(a.visitor(key: key) != EnqueueToken(room: "r", account: "0123456789abcdeg", expiry: 1).visitor(key: key))
  }
}
