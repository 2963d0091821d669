import Foundation
import FoyerCore
import FoyerTestSupport
import NIOCore
import NIOHTTP1
import NIOPosix
import RedisNIO
import Testing
import WaitingRoom

@testable import FoyerGateway

/// Issue #16 items 1 and 2: who the client is, and how many places and new visitor ids one
/// client gets, counted in Redis across gateways, against real gateways and a real Redis.
@Suite(.serialized, .timeLimit(.minutes(3))) struct ClientLimitTests {
  let group = MultiThreadedEventLoopGroup.singleton
  static let json = ["Accept": "application/json"]

  struct Gateway {
    let base: String
    let channel: any Channel
  }

  func gateway(_ redis: RedisServer, room: String, clients: ClientPolicy) async throws -> Gateway {
    // A store and Redis connections of its own: nothing is shared but Redis.
    let store = RoomStore(redis: RedisClient(configuration: redis.configuration, eventLoopGroup: group))
    var configuration = GatewayConfiguration(
      host: "127.0.0.1", port: 0, keyRing: StatusEndpointTests.keyRing,
      rooms: [RoomRoute(id: room, pathPrefix: "/shop")])
    configuration.clients = clients
    // Back-to-back polls are this suite's business; PollDisciplineTests covers the discipline.
    configuration.clients.minPollIntervalPercent = 0
    let channel = try await GatewayServer(configuration: configuration, store: store, eventLoopGroup: group).start()
    return Gateway(base: "http://127.0.0.1:\(channel.localAddress!.port!)", channel: channel)
  }

  func room(_ redis: RedisServer, maxPlacesPerClient: Int) async throws -> (String, RoomStore) {
    let room = "cl-" + UUID().uuidString.prefix(8)
    let store = RoomStore(redis: RedisClient(configuration: redis.configuration, eventLoopGroup: group))
    // A sale an hour away: nobody is admitted, so every join stays a place in line.
    let startsAt = Int64(Date().timeIntervalSince1970 * 1_000) + 3_600_000
    try await store.createRoom(
      room, settings: RoomSettings(startsAtMilliseconds: startsAt, maxPlacesPerClient: maxPlacesPerClient))
    return (room, store)
  }

  @Test func placesPerClientAreCountedAcrossGatewaysAndForgedHeadersDoNotHelp() async throws {
    let redis = try await RedisServer.start()
    let (room, store) = try await room(redis, maxPlacesPerClient: 5)
    let a = try await gateway(redis, room: room, clients: ClientPolicy())
    let b = try await gateway(redis, room: room, clients: ClientPolicy())
    defer {
      a.channel.close(promise: nil)
      b.channel.close(promise: nil)
    }
    var statuses: [Int] = []
    var kept: [String] = []
    for index in 0..<12 {
      // Forged forwarding headers from a peer nobody trusts change nothing.
      let headers = Self.json.merging([
        "X-Forwarded-For": "203.0.113.\(index)", "Forwarded": "for=198.51.100.\(index)",
      ]) { $1 }
      let reply = try await MultiGatewayTests.request(
        [a, b][index % 2].base + "/_foyer/status?room=\(room)", headers: headers)
      statuses.append(reply.status)
      if reply.status == 200 {
        kept.append(try #require(MultiGatewayTests.cookie("foyer_v_\(room)", in: reply)))
        #expect(reply.json["state"] as? String == "queue")
      } else {
        #expect(reply.status == 429)
        #expect(reply.json["error"] as? String == "too_many_places")
        #expect(reply.json["message"] is String)
        let retry = try #require(Int(reply.headers["retry-after"] ?? ""))
        #expect((1...86_400).contains(retry))
        #expect(reply.headers["set-cookie"] == nil, "a refused join is given no visitor id")
      }
    }
    #expect(statuses == Array(repeating: 200, count: 5) + Array(repeating: 429, count: 7))
    #expect(try await store.stats(room).waiting == 5)
    // Those in line keep polling, on either gateway.
    for (index, token) in kept.enumerated() {
      let reply = try await MultiGatewayTests.request(
        [b, a][index % 2].base + "/_foyer/status?room=\(room)",
        headers: Self.json.merging(["Cookie": "foyer_v_\(room)=\(token)"]) { $1 })
      #expect(reply.status == 200 && reply.json["position"] as? Int != nil)
    }
    // A browser is told why, on a page.
    let page = try await MultiGatewayTests.request(a.base + "/shop/x", headers: ["Accept": "text/html"])
    #expect(page.status == 429 && page.body.contains("too many places in line"))
    #expect(page.headers["content-type"]?.hasPrefix("text/html") == true)
    #expect(try await store.stats(room).waiting == 5)
    // An operator lifts the limit live: the next join takes a place.
    try await store.update(room, changes: ["max_places_per_client": "0"])
    #expect(try await MultiGatewayTests.request(b.base + "/_foyer/status?room=\(room)", headers: Self.json).status == 200)
    #expect(try await store.stats(room).waiting == 6)
  }

  @Test func behindATrustedProxyTheForwardedClientIsCounted() async throws {
    let redis = try await RedisServer.start()
    let (room, store) = try await room(redis, maxPlacesPerClient: 2)
    let gateway = try await gateway(
      redis, room: room, clients: ClientPolicy(trustedProxies: [AddressBlock("127.0.0.0/8")!]))
    defer { gateway.channel.close(promise: nil) }
    func join(_ headers: [String: String]) async throws -> Int {
      try await MultiGatewayTests.request(
        gateway.base + "/_foyer/status?room=\(room)", headers: Self.json.merging(headers) { $1 }
      ).status
    }
    #expect(try await join(["X-Forwarded-For": "198.51.100.7"]) == 200)
    #expect(try await join(["X-Forwarded-For": "198.51.100.7"]) == 200)
    #expect(try await join(["X-Forwarded-For": "198.51.100.7"]) == 429)
    // Another client behind the same proxy has places of its own.
    #expect(try await join(["X-Forwarded-For": "198.51.100.8"]) == 200)
    // What the client writes before the proxy's own entry is not believed.
    #expect(try await join(["X-Forwarded-For": "192.0.2.1, 198.51.100.7"]) == 429)
    // Forwarded (RFC 7239) wins over X-Forwarded-For; an IPv6 client is its /64.
    #expect(try await join(["Forwarded": #"for="[2001:db8:1:2::1]:4711""#, "X-Forwarded-For": "192.0.2.9"]) == 200)
    #expect(try await join(["Forwarded": #"for="[2001:db8:1:2::2]""#]) == 200)
    #expect(try await join(["Forwarded": #"for="[2001:db8:1:2:ffff::9]""#]) == 429)
    #expect(try await join(["Forwarded": #"for="[2001:db8:1:3::1]""#]) == 200)
    // No header: the proxy itself is the client.
    #expect(try await join([:]) == 200)
    #expect(try await store.stats(room).waiting == 7)
  }

  @Test func newVisitorIdsPerClientAreLimited() async throws {
    let redis = try await RedisServer.start()
    let (room, store) = try await room(redis, maxPlacesPerClient: 0)
    let a = try await gateway(redis, room: room, clients: ClientPolicy(newVisitorsPerMinute: 3))
    let b = try await gateway(redis, room: room, clients: ClientPolicy(newVisitorsPerMinute: 3))
    defer {
      a.channel.close(promise: nil)
      b.channel.close(promise: nil)
    }
    var tokens: [String] = []
    for index in 0..<3 {
      let reply = try await MultiGatewayTests.request(
        [a, b][index % 2].base + "/_foyer/status?room=\(room)", headers: Self.json)
      #expect(reply.status == 200)
      tokens.append(try #require(MultiGatewayTests.cookie("foyer_v_\(room)", in: reply)))
    }
    for gateway in [b, a] {
      let refused = try await MultiGatewayTests.request(gateway.base + "/_foyer/status?room=\(room)", headers: Self.json)
      #expect(refused.status == 429 && refused.json["error"] as? String == "too_many_visitors")
      #expect(refused.headers["set-cookie"] == nil)
      #expect((1...60).contains(Int(refused.headers["retry-after"] ?? "") ?? 0))
    }
    // A visitor that keeps its id is not minting: it polls on.
    let known = try await MultiGatewayTests.request(
      a.base + "/_foyer/status?room=\(room)", headers: Self.json.merging(["Cookie": "foyer_v_\(room)=\(tokens[0])"]) { $1 })
    #expect(known.status == 200 && known.json["position"] as? Int != nil)
    #expect(try await store.stats(room).waiting == 3)
  }

  @Test func clientIdentityReadsAddressesAsProxiesWriteThem() throws {
    let peer = try SocketAddress(ipAddress: "127.0.0.1", port: 5000)
    let trusted = [AddressBlock("127.0.0.1")!, AddressBlock("10.0.0.0/8")!]
    func key(_ fields: [(String, String)], peer: SocketAddress = peer, trusted: [AddressBlock] = trusted) -> String? {
      ClientIdentity.address(peer: peer, headers: HTTPHeaders(fields), trusted: trusted).map(ClientIdentity.key)
    }
    #expect(key([]) == "127.0.0.1")
    #expect(key([("X-Forwarded-For", "1.2.3.4")], trusted: []) == "127.0.0.1")
    #expect(key([("X-Forwarded-For", "1.2.3.4")]) == "1.2.3.4")
    // Walk back through trusted hops only; lines are one list.
    #expect(key([("X-Forwarded-For", "9.9.9.9, 1.2.3.4, 10.1.1.1")]) == "1.2.3.4")
    #expect(key([("X-Forwarded-For", "9.9.9.9"), ("X-Forwarded-For", "10.0.0.2")]) == "9.9.9.9")
    // An unreadable hop stops the walk at the last address a trusted proxy vouched for.
    #expect(key([("X-Forwarded-For", "unknown, 10.0.0.3")]) == "10.0.0.3")
    #expect(key([("Forwarded", #"for=_hidden;proto=https"#)]) == "127.0.0.1")
    #expect(key([("Forwarded", #"For="1.2.3.4:80";by=10.0.0.1, for=10.0.0.7"#)]) == "1.2.3.4")
    #expect(key([("X-Forwarded-For", "[2001:db8::1]:443")]) == "2001:db8:0:0::/64")
    #expect(key([("X-Forwarded-For", "::ffff:1.2.3.4")]) == "1.2.3.4")
    let v6 = try SocketAddress(ipAddress: "2001:db8:aa:bb:cc::1", port: 1)
    #expect(key([], peer: v6) == "2001:db8:aa:bb::/64")
    #expect(AddressBlock("10.0.0.0/33") == nil && AddressBlock("example.com") == nil && AddressBlock("1.2.3.4/+8") == nil)
    #expect(AddressBlock("2001:db8::/32")!.contains(ClientIdentity.address("2001:db8:ffff::1")!))
    #expect(!AddressBlock("2001:db8::/32")!.contains(ClientIdentity.address("2001:db9::1")!))
    #expect(AddressBlock("0.0.0.0/0")!.contains([8, 8, 8, 8]))
  }
}
