import Foundation
import FoyerCore
import FoyerTestSupport
import NIOCore
import NIOPosix
import RedisNIO
import Testing
import WaitingRoom

@testable import FoyerGateway

#if canImport(FoundationNetworking)
import FoundationNetworking
#endif

/// The gateway's own endpoints over real HTTP, with a real redis-server.
@Suite(.timeLimit(.minutes(2))) struct StatusEndpointTests {
  let group = MultiThreadedEventLoopGroup.singleton
  static let keyRing = try! KeyRing([SigningKey(id: "test", secret: Array(repeating: 7, count: 32))])

  struct Gateway {
    let channel: any Channel
    let store: RoomStore
    let room: String
    var base: String { "http://127.0.0.1:\(channel.localAddress!.port!)" }
  }

  func gateway(redisURL: String? = nil, settings: RoomSettings, express: Bool = true) async throws -> Gateway
  {
    let url = try redisURL ?? RedisServer.sharedURL()
    let redis = RedisClient(configuration: try RedisConfiguration(url: url), eventLoopGroup: group)
    let store = RoomStore(redis: redis, snapshotMaxAge: .zero)
    let room = "gw-" + UUID().uuidString.prefix(8)
    try await store.createRoom(room, settings: settings)
    var configuration = GatewayConfiguration(
      host: "127.0.0.1", port: 0, keyRing: Self.keyRing, rooms: [RoomRoute(id: room, pathPrefix: "/shop")],
      expressLane: express)
    // Back-to-back polls are this suite's business; PollDisciplineTests covers the discipline.
    configuration.clients.minPollIntervalPercent = 0
    let server = GatewayServer(configuration: configuration, store: store, eventLoopGroup: group)
    return Gateway(channel: try await server.start(), store: store, room: room)
  }

  /// One request without any cookie jar: cookies are passed and read by hand.
  func get(
    _ url: String, cookies: [String: String] = [:]
  ) async throws -> (Int, [String: String], [String: String], String) {
    let cookie = cookies.map { "\($0.key)=\($0.value)" }.joined(separator: "; ")
    let reply = try await httpRequest("GET", url, headers: cookies.isEmpty ? [:] : ["Cookie": cookie])
    var set: [String: String] = [:]
    for cookie in (reply.headers["set-cookie"] ?? "").split(separator: ",") {
      let pair = cookie.split(separator: ";")[0].trimmingCharacters(in: .whitespaces)
      if let equals = pair.firstIndex(of: "=") {
        set[String(pair[..<equals])] = String(pair[pair.index(after: equals)...])
      }
    }
    return (reply.status, reply.headers, set, reply.text)
  }

  func json(_ text: String) -> [String: Any] {
    (try? JSONSerialization.jsonObject(with: Data(text.utf8))) as? [String: Any] ?? [:]
  }

  @Test func theWaitInWords() {
    #expect(GatewayHandler.waitText(seconds: 59) == "less than a minute")
    #expect(GatewayHandler.waitText(seconds: 75) == "about 1 minute")
    #expect(GatewayHandler.waitText(seconds: 100) == "about 2 minutes")
    #expect(GatewayHandler.waitText(seconds: 89 * 60) == "about 89 minutes")
    #expect(GatewayHandler.waitText(seconds: 3 * 3_600) == "about 3 hours")
  }

  @Test func healthAndUnknownPaths() async throws {
    let gateway = try await gateway(settings: RoomSettings())
    defer { gateway.channel.close(promise: nil) }
    let (status, _, _, body) = try await get(gateway.base + "/_foyer/healthz")
    #expect(status == 200 && body == "ok\n")
    #expect(try await get(gateway.base + "/_foyer/readyz").0 == 200)
    #expect(try await get(gateway.base + "/_foyer/nope").0 == 404)
    let unknown = try await get(gateway.base + "/_foyer/status?room=elsewhere")
    #expect(unknown.0 == 404 && json(unknown.3)["error"] as? String == "unknown_room")
    let unnamed = try await get(gateway.base + "/_foyer/status")
    #expect(unnamed.0 == 400 && json(unnamed.3)["error"] as? String == "room_required")
    // A known endpoint asked with a method it does not serve: 405 naming the ones it does.
    let put = try await httpRequest("PUT", gateway.base + "/_foyer/status?room=elsewhere")
    #expect(put.status == 405 && put.headers["allow"] == "GET, HEAD")
  }

  /// Known visitors' polls take the express lane when it is on; joins take the NIOHTTP1 path.
  @Test(arguments: ProxyTests.lanes) func visitorWaitsThenIsAdmittedWithAPass(express: Bool) async throws {
    let gateway = try await gateway(
      settings: RoomSettings(ratePerMinute: 60_000, maxActive: 1, jitterMilliseconds: 0), express: express)
    defer { gateway.channel.close(promise: nil) }
    let room = gateway.room
    let statusURL = gateway.base + "/_foyer/status?room=\(room)"

    // The first visitor finds an empty room: admitted in the join, pass issued.
    let first = try await get(statusURL)
    #expect(first.0 == 200)
    #expect(json(first.3)["admitted"] as? Bool == true)
    let pass = try #require(first.2["foyer_p_\(room)"])
    let signer = try TokenSigner(keyRing: Self.keyRing)
    #expect(
      signer.verify(pass, kind: .pass, room: room, now: Int64(Date().timeIntervalSince1970)).visitor != nil)
    #expect(json(first.3)["pass"] as? String == pass)

    // The second waits: position 1, a visitor cookie, a retry hint.
    let second = try await get(statusURL)
    let body = json(second.3)
    #expect(
      body["admitted"] as? Bool == false && body["position"] as? Int == 1 && body["waiting"] as? Int == 1)
    #expect(second.1["retry-after"] != nil)
    let visitorCookie = try #require(second.2["foyer_v_\(room)"])
    #expect(second.2["foyer_p_\(room)"] == nil)

    // Polling again with the cookie keeps the place and sets no new visitor cookie.
    let again = try await get(statusURL, cookies: ["foyer_v_\(room)": visitorCookie])
    #expect(json(again.3)["position"] as? Int == 1)
    #expect(again.2["foyer_v_\(room)"] == nil)

    // A tampered visitor cookie is treated as absent: a new visitor, at the back.
    let forged = String(visitorCookie.dropLast()) + (visitorCookie.hasSuffix("A") ? "B" : "A")
    let stranger = try await get(statusURL, cookies: ["foyer_v_\(room)": forged])
    #expect(stranger.2["foyer_v_\(room)"] != nil && json(stranger.3)["position"] as? Int == 2)

    // The first shopper checks out; the next tick admits the second, whose poll gets a pass.
    let firstVisitor = try #require(signer.verify(pass, kind: .pass, room: room, now: 0).visitor)
    _ = try await gateway.store.release(room: room, visitor: firstVisitor, reason: .done)
    _ = try await gateway.store.admit(room: room)
    let admitted = try await get(statusURL, cookies: ["foyer_v_\(room)": visitorCookie])
    #expect(json(admitted.3)["admitted"] as? Bool == true)
    let secondPass = try #require(admitted.2["foyer_p_\(room)"])
    // A pass holder's poll is answered locally.
    let holder = try await get(statusURL, cookies: ["foyer_p_\(room)": secondPass])
    #expect(json(holder.3)["admitted"] as? Bool == true)
  }

  @Test(arguments: ProxyTests.lanes) func redisDownGivesARetryHintNotAnError(express: Bool) async throws {
    let server = try await RedisServer.start()
    let gateway = try await gateway(
      redisURL: server.url, settings: RoomSettings(state: .paused), express: express)
    defer { gateway.channel.close(promise: nil) }
    let statusURL = gateway.base + "/_foyer/status?room=\(gateway.room)"
    let joined = try await get(statusURL)
    let visitor = try #require(joined.2["foyer_v_\(gateway.room)"])
    await server.stop()
    let ready = try await get(gateway.base + "/_foyer/readyz")
    #expect(ready.0 == 503)
    // A new visitor, and a waiting one (whose poll the express lane hands on when Redis fails).
    for cookies in [[:], ["foyer_v_\(gateway.room)": visitor]] {
      let poll = try await get(statusURL, cookies: cookies)
      #expect(poll.0 == 503 && poll.1["retry-after"] == "2")
      #expect(json(poll.3)["error"] as? String == "unavailable")
    }
    // Stop reconnecting: the kernel may give the stopped server's port to another test's
    // listener, which this client would then keep connecting to.
    await gateway.store.redis.close()
  }

  @Test func leaveGivesThePlaceBack() async throws {
    let gateway = try await gateway(settings: RoomSettings(state: .paused))
    defer { gateway.channel.close(promise: nil) }
    let status = gateway.base + "/_foyer/status?room=\(gateway.room)"
    let joined = try await get(status)
    let cookie = try #require(joined.2["foyer_v_\(gateway.room)"])
    #expect(try await gateway.store.stats(gateway.room).waiting == 1)
    let leave = gateway.base + "/_foyer/leave?room=\(gateway.room)"
    let headers = ["Cookie": "foyer_v_\(gateway.room)=\(cookie)"]
    let (code, fields, body) = try await ProxyTests.send("POST", leave, headers: headers)
    #expect(code == 200 && String(decoding: body, as: UTF8.self).contains("\"result\":\"left\""))
    #expect(fields["set-cookie"]?.contains("Max-Age=0") == true)
    #expect(try await gateway.store.stats(gateway.room).waiting == 0)
    let again = try await ProxyTests.send("POST", leave, headers: headers)
    #expect(String(decoding: again.2, as: UTF8.self).contains("\"result\":\"none\""))
    #expect(try await ProxyTests.send("GET", leave).0 == 405)
    #expect(try await ProxyTests.send("POST", gateway.base + "/_foyer/leave?room=nope").0 == 404)
  }
}

@Suite(.timeLimit(.minutes(2))) struct WaitingPageTests {
  @Test func roomPathsGetTheWaitingPageOrJSON() async throws {
    let endpoints = StatusEndpointTests()
    let gateway = try await endpoints.gateway(settings: RoomSettings(state: .paused, jitterMilliseconds: 0))
    defer { gateway.channel.close(promise: nil) }
    let page = try await endpoints.get(gateway.base + "/shop/event/42")
    #expect(page.0 == 200)
    #expect(page.1["content-type"]?.hasPrefix("text/html") == true)
    #expect(page.3.contains("<progress") && page.3.contains("The sale is paused"))
    #expect(page.3.contains("http-equiv=\"refresh\""))
    #expect(!page.3.contains("{{"))
    let visitor = try #require(page.2["foyer_v_\(gateway.room)"])
    // No token ever appears in a URL the page emits.
    #expect(!page.3.contains(visitor))

    var request = URLRequest(url: URL(string: gateway.base + "/shop/event/42")!)
    request.setValue("application/json", forHTTPHeaderField: "Accept")
    request.setValue("foyer_v_\(gateway.room)=\(visitor)", forHTTPHeaderField: "Cookie")
    request.httpShouldHandleCookies = false
    let (data, response) = try await URLSession(configuration: .ephemeral).data(for: request)
    #expect((response as! HTTPURLResponse).statusCode == 200)
    let body = endpoints.json(String(decoding: data, as: UTF8.self))
    #expect(body["position"] as? Int == 1 && body["state"] as? String == "paused")
  }

  @Test func aValidPassIsNeverShownTheQueue() async throws {
    let endpoints = StatusEndpointTests()
    let gateway = try await endpoints.gateway(settings: RoomSettings(state: .paused))
    defer { gateway.channel.close(promise: nil) }
    let signer = try TokenSigner(keyRing: StatusEndpointTests.keyRing)
    let pass = signer.sign(
      Token(
        kind: .pass, room: gateway.room, visitor: .random(), time: Int64(Date().timeIntervalSince1970) + 60))
    let response = try await endpoints.get(
      gateway.base + "/shop/cart", cookies: ["foyer_p_\(gateway.room)": pass])
    // Forwarding is not built yet: the request is let through to a clear 502.
    #expect(response.0 == 502 && endpoints.json(response.3)["error"] as? String == "no_upstream")
    // An expired or other room's pass is a visitor without a pass: the waiting page.
    let expired = signer.sign(Token(kind: .pass, room: gateway.room, visitor: .random(), time: 1))
    #expect(
      try await endpoints.get(gateway.base + "/shop/cart", cookies: ["foyer_p_\(gateway.room)": expired]).0
        == 200)
  }

  @Test func templatesAreCheckedAtStartup() throws {
    #expect(throws: WaitingPageError.self) { try WaitingPage(template: "<p>{{positon}}</p>") }
    #expect(throws: WaitingPageError.self) { try WaitingPage(template: "<p>{{position</p>") }
    let page = try WaitingPage(template: "<p>{{ room }}: {{position}}</p>")
    #expect(page.render(["room": "a<b", "position": "3"]) == "<p>a&lt;b: 3</p>")
  }
}
