import Foundation
import FoyerCore
import FoyerLogging
import NIOCore
import NIOHTTP1
import Testing
import WaitingRoom

@testable import FoyerGateway

@Suite struct ConfigFileTests {
  let keyRing = StatusEndpointTests.keyRing

  func parse(_ yaml: String, files: [String: String] = [:]) throws -> GatewayFile {
    try GatewayFile.parse(yaml: yaml, keyRing: keyRing) { path in
      guard let text = files[path] else { throw CocoaError(.fileNoSuchFile) }
      return text
    }
  }

  func error(_ yaml: String, files: [String: String] = [:]) -> String {
    do {
      _ = try parse(yaml, files: files)
      return "no error"
    } catch {
      return "\(error)"
    }
  }

  /// The shipped file documents the defaults: parsed, it must equal the code's defaults, so
  /// the documentation cannot drift from the behaviour.
  @Test func shippedFileStatesTheDefaults() throws {
    let url = URL(fileURLWithPath: #filePath).deletingLastPathComponent()
      .appendingPathComponent("../../config/foyer.yaml")
    let file = try parse(try String(contentsOf: url, encoding: .utf8))
    let defaults = GatewayConfiguration(keyRing: keyRing)
    let parsed = file.gateway
    #expect(parsed.host == defaults.host)
    #expect(parsed.port == defaults.port)
    #expect(parsed.backlog == defaults.backlog)
    #expect(parsed.maxMessagesPerRead == defaults.maxMessagesPerRead)
    #expect(parsed.redisTimeout == defaults.redisTimeout)
    #expect(parsed.secureCookies == defaults.secureCookies)
    #expect(parsed.limits == defaults.limits)
    #expect(parsed.drainTimeout == defaults.drainTimeout)
    #expect(parsed.unavailableRetrySeconds == defaults.unavailableRetrySeconds)
    #expect(parsed.waitingPageTemplate == nil)
    #expect(parsed.upstream == nil)
    #expect(parsed.expressLane == defaults.expressLane)
    #expect(parsed.clients == defaults.clients)
    #expect(file.redisURL == "redis://127.0.0.1:6379")
    #expect(file.threads == 0)
    #expect(file.adminHost == "127.0.0.1")
    #expect(file.adminPort == 8081)
    #expect(file.log == LogConfiguration())
    #expect(file.sketching == RoomStore.Sketching())
    #expect(parsed.rooms == [RoomRoute(id: "onsale", pathPrefix: "/events")])
    #expect(file.roomSettings["onsale"] == RoomSettings())
    // The upstream's own defaults, as documented.
    let upstream = try parse("upstream:\n  url: http://127.0.0.1:9000\n").gateway.upstream
    #expect(upstream == UpstreamConfiguration(host: "127.0.0.1", port: 9000))
  }

  @Test func valuesAreRead() throws {
    let file = try parse(
      """
      listen: {host: 127.0.0.1, port: 9090}
      threads: 3
      redis: {url: "redis://:pw@10.0.0.1:6380/2", timeout_ms: 250}
      upstream: {url: "http://10.0.0.2:8000", response_timeout_ms: 5000, express_lane: false}
      cookies: {secure: true}
      limits: {max_body_bytes: 1024, header_timeout_ms: 2000}
      shutdown: {drain_timeout_ms: 0}
      clients: {trusted_proxies: [10.0.0.0/8, "2001:db8::/32", 192.0.2.7], new_visitors_per_minute: 0}
      waiting_page: {template: /etc/page.html, unavailable_retry_seconds: 5}
      positions: {exact_below: 5000, error_percent: 0.25, sketch_age_ms: 2000, heartbeat_interval_ms: 500}
      rooms:
        - {id: a, path_prefix: /a, host: Shop.Example.com, settings: {rate_per_minute: 60, state: paused}}
        - {id: b}
      """, files: ["/etc/page.html": "<p>{{position}} of {{waiting}}</p>"])
    #expect(file.gateway.port == 9090)
    #expect(file.threads == 3)
    #expect(file.redisURL == "redis://:pw@10.0.0.1:6380/2")
    #expect(file.gateway.redisTimeout == .milliseconds(250))
    #expect(file.gateway.upstream?.port == 8000)
    #expect(file.gateway.upstream?.responseTimeout == .seconds(5))
    #expect(!file.gateway.expressLane)
    #expect(file.gateway.secureCookies)
    #expect(file.gateway.limits.maxBodyBytes == 1024)
    #expect(file.gateway.limits.headerTimeout == .seconds(2))
    #expect(file.gateway.drainTimeout == .zero)
    #expect(file.gateway.clients.trustedProxies.map(\.description) == ["10.0.0.0/8", "2001:db8:0:0:0:0:0:0/32", "192.0.2.7/32"])
    #expect(file.gateway.clients.newVisitorsPerMinute == 0)
    #expect(file.gateway.waitingPageTemplate == "<p>{{position}} of {{waiting}}</p>")
    #expect(file.gateway.unavailableRetrySeconds == 5)
    #expect(
      file.gateway.rooms == [
        RoomRoute(id: "a", pathPrefix: "/a", host: "shop.example.com"), RoomRoute(id: "b", pathPrefix: "/"),
      ])
    #expect(file.roomSettings["a"] == RoomSettings(state: .paused, ratePerMinute: 60))
    #expect(file.roomSettings["b"] == nil)
    #expect(
      file.sketching
        == RoomStore.Sketching(
          exactBelow: 5_000, error: 0.0025, maxAge: .seconds(2), heartbeatInterval: .milliseconds(500)))
  }

  @Test func mistakesAreNamedWithTheirLine() {
    #expect(error("listen:\n  prot: 80\n") == "listen.prot is not a known key (line 2)")
    #expect(error("listen:\n  port: eighty\n") == "listen.port must be an integer (line 2)")
    #expect(
      error("listen:\n  port: 70000\n") == "listen.port must be between 0 and 65535 (got 70000) (line 2)")
    #expect(error("cookies: {secure: maybe}") == "cookies.secure must be true or false (line 1)")
    #expect(error("rooms: {id: a}").hasPrefix("rooms must be a list"))
    #expect(error("rooms:\n  - path_prefix: /a\n") == "rooms[0].id is required: [A-Za-z0-9_-]{1,64}")
    #expect(
      error("rooms:\n  - {id: a, path_prefix: a}\n").hasPrefix("rooms[0].path_prefix must start with '/'"))
    #expect(error("rooms:\n  - {id: a}\n  - {id: a}\n").hasPrefix("rooms[1].id 'a' appears twice"))
    #expect(error("rooms:\n  - {id: a, path_prefix: /x}\n  - {id: a, path_prefix: /y}\n") == "no error")
    #expect(
      error("rooms:\n  - id: a\n    settings:\n      rate_per_minute: -1\n")
        == "rooms[0].settings.rate_per_minute must be between 0 and 6000000 (got -1) (line 4)")
    #expect(
      error("rooms:\n  - id: a\n    settings: {colour: red}\n").contains("colour is not a room setting"))
    #expect(error("upstream: {url: https://x}").contains("upstream must be http://host[:port]"))
    #expect(error("waiting_page: {template: /nope}").hasPrefix("waiting_page.template: cannot read '/nope'"))
    #expect(
      error("waiting_page: {template: /t}", files: ["/t": "{{positon}}"]).contains(
        "unknown placeholder '{{positon}}'"))
    #expect(
      error("clients: {trusted_proxies: [10.0.0.0/40]}")
        == "clients.trusted_proxies '10.0.0.0/40' is not an address or CIDR block (line 1)")
    #expect(error("clients: {trusted_proxies: 10.0.0.0/8}").hasPrefix("clients.trusted_proxies must be a list"))
    #expect(
      error("positions: {error_percent: 0.01}")
        == "positions.error_percent must be between 0.1 and 10.0 (got 0.01) (line 1)")
    #expect(
      error("positions: {exact_below: 0}") == "positions.exact_below must be between 1 and 10000000 (got 0) (line 1)")
    #expect(error("positions: {sketch_every_ms: 5}") == "positions.sketch_every_ms is not a known key (line 1)")
    #expect(error("listen: [1, 2]") == "listen must be a mapping")
    #expect(error("a: [").hasPrefix("the configuration is not valid YAML"))
    #expect(error("") == "no error")
  }

  @Test func roomsMatchByHostAndLongestPrefix() throws {
    let file = try parse(
      """
      rooms:
        - {id: any, path_prefix: /events}
        - {id: shop, path_prefix: /events, host: shop.example.com}
        - {id: deep, path_prefix: /events/vip}
      """)
    func match(_ path: Substring, host: String) -> String? {
      file.gateway.rooms.match(path: path, headers: HTTPHeaders([("Host", host)]))?.id
    }
    #expect(match("/events/1", host: "SHOP.example.com:8443") == "shop")
    #expect(match("/events/1", host: "other.example.com") == "any")
    #expect(match("/events/vip/2", host: "shop.example.com") == "deep")
    #expect(match("/about", host: "shop.example.com") == nil)
  }
}
