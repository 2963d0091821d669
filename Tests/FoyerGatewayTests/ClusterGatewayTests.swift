import Foundation
import FoyerCore
import FoyerTestSupport
import NIOCore
import NIOPosix
import RedisNIO
import Testing
import WaitingRoom

@testable import FoyerGateway

/// Foyer on a Redis Cluster (#18 item 2): two gateways (one in this process, one a
/// `foyer gateway` process given `redis-cluster://…`) with their admission loops and admin
/// APIs, three rooms whose keys live on the three primaries, one of them with its queue split
/// over three shards, one on each primary.
@Suite(.timeLimit(.minutes(3))) struct ClusterGatewayTests {
  let group = MultiThreadedEventLoopGroup.singleton
  let adminToken = "cluster-gateway-admin-token"
  var keySpec: String { "test:" + Base64URL.encode(Array(repeating: UInt8(7), count: 32)) }

  @Test func gatewaysQueueAdmitAndForwardOnACluster() async throws {
    let cluster = try await RedisCluster.start()
    defer { Task { await cluster.stop() } }
    let upstream = try await TestUpstream(group: group)
    defer { upstream.channel.close(promise: nil) }
    let client = RedisClient(configuration: cluster.configuration, eventLoopGroup: group)
    let store = RoomStore(redis: client)
    let rooms = (0..<3).map { RedisCluster.name("cg", onThird: $0) }
    let cap = 2
    for (index, room) in rooms.enumerated() {
      var settings = RoomSettings(ratePerMinute: 6_000, maxActive: cap)
      settings.shards = index == 1 ? 3 : 1
      try await store.createRoom(room, settings: settings)
    }
    // Three different primaries hold the three rooms, and the second room's three shards.
    #expect(Set(try rooms.map { try cluster.primary(forSlot: HashSlot.of("{\($0)}")).port }).count == 3)
    let shards = RoomKeys(room: rooms[1]).shardQueues(3)
    #expect(Set(try shards.map { try cluster.primary(forSlot: HashSlot.of($0)).port }).count == 3)

    var configuration = GatewayConfiguration(
      host: "127.0.0.1", port: 0, keyRing: StatusEndpointTests.keyRing,
      rooms: rooms.map { RoomRoute(id: $0, pathPrefix: "/\($0)") },
      upstream: UpstreamConfiguration(host: "127.0.0.1", port: upstream.port))
    configuration.clients.minPollIntervalPercent = 0  // the test polls as fast as it runs
    let serverA = GatewayServer(configuration: configuration, store: store, eventLoopGroup: group)
    let channelA = try await serverA.start()
    defer { channelA.close(promise: nil) }
    let admissionA = Task { try? await AdmissionLoop(store: store).run() }
    defer { admissionA.cancel() }
    let processB = try await GatewayProcess.start(
      redisURL: cluster.url, rooms: rooms.map { "\($0):/\($0)" }, upstream: "http://127.0.0.1:\(upstream.port)",
      keys: keySpec, adminToken: adminToken, extraArguments: ["--min-poll-interval-percent", "0"])
    defer { Task { await processB.stop() } }
    let gateways = ["http://127.0.0.1:\(channelA.localAddress!.port!)", "http://127.0.0.1:\(processB.port)"]
    let json = ["Accept": "application/json"]

    // Per room, five visitors join on one gateway and poll on the other until admitted; each
    // pass is forwarded, and checking out frees the slot for the next.
    for room in rooms {
      var tokens: [String] = []
      for index in 0..<5 {
        let reply = try await MultiGatewayTests.request(gateways[index % 2] + "/_foyer/status?room=\(room)", headers: json)
        #expect(reply.status == 200, "\(reply.body)")
        tokens.append(try #require(MultiGatewayTests.cookie("foyer_v_\(room)", in: reply)))
      }
      // Two admitted in their joins (the cap), three waiting: in the sharded room, in its shards.
      #expect(try await store.stats(room).waiting == 3)
      let deadline = ContinuousClock.now + .seconds(30)
      while !tokens.isEmpty && ContinuousClock.now < deadline {
        for (index, token) in tokens.enumerated() {
          let reply = try await MultiGatewayTests.request(
            gateways[(index + 1) % 2] + "/_foyer/status?room=\(room)",
            headers: json.merging(["Cookie": "foyer_v_\(room)=\(token)"]) { $1 })
          guard let pass = reply.json["pass"] as? String else { continue }
          #expect(try await store.stats(room).active <= cap)
          let forwarded = try await MultiGatewayTests.request(
            gateways[index % 2] + "/\(room)/item", headers: ["Foyer-Pass": pass])
          #expect(forwarded.status == 200 && forwarded.json["uri"] as? String == "/\(room)/item")
          let release = try await MultiGatewayTests.request(
            gateways[index % 2] + "/\(room)/checkout/release", method: "POST", headers: ["Foyer-Pass": pass])
          #expect(release.status == 200)
          tokens[index] = ""
        }
        tokens = tokens.filter { !$0.isEmpty }
        try await Task.sleep(for: .milliseconds(50))
      }
      #expect(tokens.isEmpty, "room \(room): \(tokens.count) never admitted")
      #expect(try await store.stats(room).joined == 5)
    }

    // The admin API of the process lists every room (the registry has its own slot) and
    // changes one's settings; the in-process store sees it.
    let admin = "http://127.0.0.1:\(processB.adminPort)"
    let listed = try await MultiGatewayTests.request(admin + "/rooms", headers: ["Authorization": "Bearer \(adminToken)"])
    #expect(listed.status == 200 && rooms.allSatisfy { listed.body.contains($0) })
    let patched = try await MultiGatewayTests.request(
      admin + "/rooms/\(rooms[2])", method: "PATCH",
      headers: ["Authorization": "Bearer \(adminToken)", "Content-Type": "application/json"],
      body: #"{"rate_per_minute":1234}"#)
    #expect(patched.status == 200)
    #expect(try await store.settings(rooms[2]).ratePerMinute == 1_234)
    #expect(try await MultiGatewayTests.request(gateways[1] + "/_foyer/readyz").status == 200)
    admissionA.cancel()
    await client.close()
  }
}
