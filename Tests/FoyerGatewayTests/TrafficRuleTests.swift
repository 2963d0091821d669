import Foundation
import FoyerCore
import FoyerTestSupport
import NIOCore
import NIOPosix
import RedisNIO
import Testing
import WaitingRoom

@testable import FoyerGateway

/// Issue #16 item 6: a room's allow and block rules, set live through the admin API, let
/// staff and monitors skip the line and keep blocked clients out, on every gateway.
@Suite(.serialized, .timeLimit(.minutes(3))) struct TrafficRuleTests {
  let group = MultiThreadedEventLoopGroup.singleton
  static let adminToken = "traffic-rules-admin-token"

  @Test func rulesAllowAndBlockLiveOnEveryGateway() async throws {
    let redis = try await RedisServer.start()
    let upstream = try await TestUpstream(group: group)
    defer { upstream.channel.close(promise: nil) }
    let store = RoomStore(redis: RedisClient(configuration: redis.configuration, eventLoopGroup: group))
    let room = "tr-" + UUID().uuidString.prefix(8)
    let startsAt = Int64(Date().timeIntervalSince1970 * 1_000) + 3_600_000
    try await store.createRoom(room, settings: RoomSettings(startsAtMilliseconds: startsAt))
    var configuration = GatewayConfiguration(
      host: "127.0.0.1", port: 0, keyRing: StatusEndpointTests.keyRing,
      rooms: [RoomRoute(id: room, pathPrefix: "/shop")],
      upstream: UpstreamConfiguration(host: "127.0.0.1", port: upstream.port))
    configuration.trafficRulesRefreshInterval = .milliseconds(100)
    // Gateway A with the admin API; gateway B learns the rules from Redis alone.
    let serverA = GatewayServer(configuration: configuration, store: store, eventLoopGroup: group)
    let a = try await serverA.start()
    let serverB = GatewayServer(
      configuration: configuration,
      store: RoomStore(redis: RedisClient(configuration: redis.configuration, eventLoopGroup: group)),
      eventLoopGroup: group)
    let b = try await serverB.start()
    let admin = try await AdminServer(
      configuration: AdminConfiguration(host: "127.0.0.1", port: 0, token: Self.adminToken), store: store,
      eventLoopGroup: group, metrics: serverA.metrics, trafficRules: serverA.trafficRules
    ).start()
    defer {
      for channel in [a, b, admin] { channel.close(promise: nil) }
    }
    let gateways = [a, b].map { "http://127.0.0.1:\($0.localAddress!.port!)" }
    let rulesURL = "http://127.0.0.1:\(admin.localAddress!.port!)/rooms/\(room)/rules"
    let auth = ["Authorization": "Bearer \(Self.adminToken)", "Content-Type": "application/json"]
    func put(_ body: String) async throws -> MultiGatewayTests.Reply {
      try await MultiGatewayTests.request(rulesURL, method: "PUT", headers: auth, body: body)
    }
    func visit(_ gateway: String, agent: String, path: String = "/_foyer/status?room=") async throws -> Int {
      try await MultiGatewayTests.request(
        gateway + path + (path.hasSuffix("=") ? room : ""), headers: ["User-Agent": agent, "Accept": "application/json"]
      ).status
    }

    // Mistakes are refused whole, naming the rule.
    for (body, words) in [
      (#"{"rules": [{"action": "block"}]}"#, "rule 1: a rule needs cidr, user_agent or both"),
      (#"{"rules": [{"action": "allow", "cidr": "10.0.0.0/99"}]}"#, "is not an address or CIDR block"),
      (#"{"rules": [{"action": "maybe", "cidr": "10.0.0.0/8"}]}"#, "the body must be"),
      (#"{"rules": [{"action": "block", "user_agent": ""}]}"#, "user_agent must be 1-200"),
    ] {
      let reply = try await put(body)
      #expect(reply.status == 400 && reply.body.contains(words), "\(body): \(reply.body)")
    }
    let tooMany = "{\"rules\": [" + Array(repeating: #"{"action": "block", "cidr": "10.0.0.1"}"#, count: 101).joined(separator: ",") + "]}"
    #expect(try await put(tooMany).status == 400)
    #expect(try await MultiGatewayTests.request(
      "http://127.0.0.1:\(admin.localAddress!.port!)/rooms/nope/rules", headers: auth).status == 404)

    let set = try await put(
      #"""
      {"rules": [
        {"action": "block", "user_agent": "BadBot"},
        {"action": "allow", "user_agent": "UptimeRobot", "note": "monitoring"},
        {"action": "block", "cidr": "127.0.0.0/8", "user_agent": "curl/"}
      ]}
      """#)
    #expect(set.status == 200, "\(set.body)")

    // Gateway A applies them at once; B within its refresh.
    #expect(try await visit(gateways[0], agent: "Mozilla/5.0 (X11) badbot/2") == 403)
    for _ in 0..<50 where serverB.trafficRules.rules(room: room) == nil {
      try await Task.sleep(for: .milliseconds(50))
    }
    #expect(try await visit(gateways[1], agent: "BadBot") == 403, "gateway B did not apply the rules")
    let blocked = try await MultiGatewayTests.request(
      gateways[0] + "/shop/x", headers: ["User-Agent": "curl/8.5", "Accept": "text/html"])
    #expect(blocked.status == 403 && blocked.body.contains("not let into this sale"))
    #expect(blocked.headers["set-cookie"] == nil)
    #expect(try await store.stats(room).waiting == 0, "a blocked client took a place")

    // The monitor skips the line: forwarded without a pass, on both gateways.
    let before = upstream.requests.count
    #expect(try await visit(gateways[0], agent: "UptimeRobot/2.0", path: "/shop/health") == 200)
    #expect(try await visit(gateways[1], agent: "UptimeRobot/2.0", path: "/shop/health") == 200)
    #expect(upstream.requests.count == before + 2 && upstream.requests.last == "/shop/health")
    // Anyone else waits as usual.
    #expect(try await visit(gateways[0], agent: "Mozilla/5.0") == 200)
    #expect(try await visit(gateways[0], agent: "curl/7.1") == 403)
    #expect(try await store.stats(room).waiting == 1)

    // The admin API shows each rule with this gateway's hits.
    let shown = try await MultiGatewayTests.request(rulesURL, headers: auth)
    let rules = try #require(shown.json["rules"] as? [[String: Any]])
    // (Gateway B's hits are its own.)
    #expect(rules.map { $0["hits"] as? Int } == [1, 1, 2])
    #expect(rules[1]["note"] as? String == "monitoring" && rules[2]["cidr"] as? String == "127.0.0.0/8")

    // Cleared: the bot waits like everyone else.
    #expect(try await put(#"{"rules": []}"#).status == 200)
    #expect(try await visit(gateways[0], agent: "BadBot") == 200)
    #expect(try await store.stats(room).waiting == 2)
  }

  /// `foyer ctl` against a real `foyer gateway` process: allow, block, list, remove.
  @Test func foyerCtlSetsRulesOnARunningGateway() async throws {
    let redis = try await RedisServer.start()
    let room = "ctl-" + UUID().uuidString.prefix(8)
    let gateway = try await GatewayProcess.start(
      redisURL: redis.url, rooms: ["\(room):/shop"], upstream: nil,
      keys: "test:" + Base64URL.encode(Array(repeating: UInt8(7), count: 32)), adminToken: Self.adminToken)
    func ctl(_ arguments: String...) throws -> (status: Int32, output: String) {
      try runToEnd(
        try GatewayProcess.executable(), ["ctl"] + arguments,
        environment: [
          "FOYER_ADMIN_TOKEN": Self.adminToken, "FOYER_ADMIN_URL": "http://127.0.0.1:\(gateway.adminPort)",
        ])
    }
    #expect(try ctl("rules", room).output.contains("no rules"))
    let allowed = try ctl("allow", room, "--user-agent", "UptimeRobot", "--note", "monitoring")
    #expect(allowed.status == 0 && allowed.output.contains(#"1  allow  user_agent="UptimeRobot"  hits=0  # monitoring"#))
    let blocked = try ctl("block", room, "--cidr", "127.0.0.0/8", "--user-agent", "curl/")
    #expect(blocked.status == 0 && blocked.output.contains("2  block  cidr=127.0.0.0/8"), "\(blocked.output)")
    // The gateway process applies them to a request.
    let refused = try await MultiGatewayTests.request(
      "http://127.0.0.1:\(gateway.port)/_foyer/status?room=\(room)", headers: ["User-Agent": "curl/8"])
    #expect(refused.status == 403 && refused.json["error"] as? String == "blocked")
    #expect(try ctl("rules", room).output.contains("2  block  cidr=127.0.0.0/8  user_agent=\"curl/\"  hits=1"))
    let wrong = try ctl("block", room, "--cidr", "10.0.0.0/99")
    #expect(wrong.status != 0 && wrong.output.contains("is not an address or CIDR block"))
    #expect(try ctl("unrule", room, "3").status != 0)
    let removed = try ctl("unrule", room, "1")
    #expect(removed.status == 0 && removed.output.hasPrefix("1  block"))
    #expect(try ctl("unrule", room, "--all").output.contains("no rules"))
  }
}
