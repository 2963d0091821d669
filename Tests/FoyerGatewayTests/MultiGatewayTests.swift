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

/// Two gateways as operators run them: one in this process, one a real `foyer gateway`
/// process, each with its own admission loop, sharing one Redis and one upstream.
@Suite(.timeLimit(.minutes(3))) struct MultiGatewayTests {
  let group = MultiThreadedEventLoopGroup.singleton
  let adminToken = "multi-gateway-admin-token"
  var keySpec: String { "test:" + Base64URL.encode(Array(repeating: UInt8(7), count: 32)) }

  struct Reply {
    let status: Int
    let headers: [String: String]
    let body: String
    var json: [String: Any] {
      (try? JSONSerialization.jsonObject(with: Data(body.utf8))) as? [String: Any] ?? [:]
    }
  }

  static func request(
    _ url: String, method: String = "GET", headers: [String: String] = [:], body: String? = nil
  ) async throws -> Reply {
    let reply = try await httpRequest(method, url, headers: headers, body: body.map { Data($0.utf8) })
    return Reply(status: reply.status, headers: reply.headers, body: reply.text)
  }

  /// The value of cookie `name` among a response's Set-Cookie headers.
  static func cookie(_ name: String, in reply: Reply) -> String? {
    guard let header = reply.headers["set-cookie"], let range = header.range(of: name + "=") else {
      return nil
    }
    return String(header[range.upperBound...].prefix { $0 != ";" && $0 != "," })
  }

  @Test func twoGatewaysShareTheQueueTheCapAndSettingsAndOutliveRedis() async throws {
    let redis = try await RedisServer.start()
    let upstream = try await TestUpstream(group: group)
    defer { upstream.channel.close(promise: nil) }
    let room = "mg-" + UUID().uuidString.prefix(8)
    let cap = 4
    let client = RedisClient(configuration: redis.configuration, eventLoopGroup: group)
    let store = RoomStore(redis: client)
    try await store.createRoom(room, settings: RoomSettings(ratePerMinute: 6_000, maxActive: cap))

    // Gateway A, in this process, with its admission loop.
    // Visitors here poll as fast as the test runs: the poll discipline is off on both gateways.
    var configurationA = GatewayConfiguration(
      host: "127.0.0.1", port: 0, keyRing: StatusEndpointTests.keyRing,
      rooms: [RoomRoute(id: room, pathPrefix: "/shop")],
      upstream: UpstreamConfiguration(host: "127.0.0.1", port: upstream.port))
    configurationA.clients.minPollIntervalPercent = 0
    let serverA = GatewayServer(configuration: configurationA, store: store, eventLoopGroup: group)
    let channelA = try await serverA.start()
    defer { channelA.close(promise: nil) }
    let admissionA = Task { try? await AdmissionLoop(store: store).run() }
    defer { admissionA.cancel() }
    // Gateway B, a `foyer gateway` process.
    let processB = try await GatewayProcess.start(
      redisURL: redis.url, rooms: ["\(room):/shop"], upstream: "http://127.0.0.1:\(upstream.port)",
      keys: keySpec, adminToken: adminToken, extraArguments: ["--min-poll-interval-percent", "0"])
    let gateways = ["http://127.0.0.1:\(channelA.localAddress!.port!)", "http://127.0.0.1:\(processB.port)"]
    let json = ["Accept": "application/json"]

    // 12 visitors join, half on each gateway, and then poll on the *other* one.
    var visitors: [(gateway: Int, token: String)] = []
    for index in 0..<12 {
      let reply = try await Self.request(gateways[index % 2] + "/_foyer/status?room=\(room)", headers: json)
      #expect(reply.status == 200)
      let token = try #require(Self.cookie("foyer_v_\(room)", in: reply))
      visitors.append(((index + 1) % 2, token))
    }
    // Admitted visitors shop and check out (Foyer-Release frees the slot); at no moment may
    // more than `cap` hold an unreleased pass, whichever gateway admitted them.
    var passes: [Int: String] = [:]
    var released = Set<Int>()
    var mostAtOnce = 0
    let deadline = ContinuousClock.now + .seconds(30)
    while released.count < visitors.count && ContinuousClock.now < deadline {
      for (index, visitor) in visitors.enumerated() where passes[index] == nil {
        let reply = try await Self.request(
          gateways[visitor.gateway] + "/_foyer/status?room=\(room)",
          headers: json.merging(["Cookie": "foyer_v_\(room)=\(visitor.token)"]) { $1 })
        #expect(reply.status == 200)
        if let pass = reply.json["pass"] as? String { passes[index] = pass }
      }
      let holding = passes.keys.filter { !released.contains($0) }
      mostAtOnce = max(mostAtOnce, holding.count)
      #expect(holding.count <= cap, "\(holding.count) visitors hold a pass at once; the cap is \(cap)")
      let active = try await store.stats(room).active
      #expect(active <= cap)
      // One holder checks out per round, through either gateway.
      if let first = holding.min(), released.count < visitors.count - cap {
        let reply = try await Self.request(
          gateways[first % 2] + "/shop/checkout/release", method: "POST",
          headers: ["Foyer-Pass": passes[first]!])
        #expect(reply.status == 200)
        released.insert(first)
      } else if holding.count == visitors.count - released.count {
        break  // the last ones are in; they keep their passes for the Redis outage below
      }
      try await Task.sleep(for: .milliseconds(50))
    }
    #expect(passes.count == visitors.count, "only \(passes.count) of \(visitors.count) were admitted")
    #expect(mostAtOnce == cap)

    // An operator pauses the room on B's admin API; A follows within a second.
    let patched = try await Self.request(
      "http://127.0.0.1:\(processB.adminPort)/rooms/\(room)", method: "PATCH",
      headers: ["Authorization": "Bearer \(adminToken)", "Content-Type": "application/json"],
      body: #"{"state":"paused"}"#)
    #expect(patched.status == 200)
    let changed = ContinuousClock.now
    var state = ""
    while state != "paused" && ContinuousClock.now - changed < .seconds(3) {
      state =
        try await Self.request(gateways[0] + "/_foyer/status?room=\(room)", headers: json)
        .json["state"] as? String ?? ""
      if state != "paused" { try await Task.sleep(for: .milliseconds(25)) }
    }
    #expect(state == "paused")
    #expect(ContinuousClock.now - changed < .seconds(1))

    // Redis goes away: pass holders are still forwarded by both gateways; nobody else is.
    await redis.stop()
    let holders = passes.keys.filter { !released.contains($0) }
    #expect(!holders.isEmpty)
    for (position, holder) in holders.enumerated() {
      let reply = try await Self.request(
        gateways[position % 2] + "/shop/item", headers: ["Foyer-Pass": passes[holder]!])
      #expect(reply.status == 200 && reply.json["uri"] as? String == "/shop/item")
    }
    for gateway in gateways {
      let waiting = try await Self.request(gateway + "/shop/item", headers: json)
      #expect(waiting.status == 503 && waiting.headers["retry-after"] != nil)
      #expect(waiting.json["uri"] == nil)
      let page = try await Self.request(gateway + "/shop/item")
      #expect(page.status == 200 && page.body.contains("<html") && !page.body.contains("\"uri\""))
      #expect(try await Self.request(gateway + "/_foyer/readyz").status == 503)
    }
    await processB.stop()
    #expect(!processB.isRunning)
    // Stop reconnecting: the kernel may give the stopped server's port to another test's
    // listener, which this client would then keep connecting to.
    admissionA.cancel()
    await client.close()
  }
}
