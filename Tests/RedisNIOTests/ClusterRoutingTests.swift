import NIOCore
import Testing

@testable import RedisNIO

/// The cluster client's routing rules, without sockets: slots, maps, redirections, retries.
@Suite struct ClusterRoutingTests {
  typealias Node = ClusterTopology.Node

  @Test func slotsFollowTheSpecification() {
    // The specification's CRC16 check value, and slots redis-cli reports (CLUSTER KEYSLOT).
    #expect(HashSlot.crc16(Array("123456789".utf8)) == 0x31C3)
    #expect(HashSlot.of("foo") == 12_182)
    #expect(HashSlot.of("bar") == 5_061)
    // Hash tags: the first {…} with something inside.
    #expect(HashSlot.of("{user1000}.following") == HashSlot.of("{user1000}.followers"))
    #expect(HashSlot.of("{user1000}.following") == HashSlot.of("user1000"))
    #expect(HashSlot.of("foo{}{bar}") == HashSlot.of("foo{}{bar}".utf8))
    #expect(HashSlot.of("foo{}{bar}") != HashSlot.of("bar"))
    #expect(HashSlot.of("foo{{bar}}zap") == HashSlot.of("{bar"))
    #expect(HashSlot.of("foo{bar}{zap}") == HashSlot.of("bar"))
    // Every key of a room shares the room's slot.
    #expect(HashSlot.of("foyer:{onsale}:queue") == HashSlot.of("foyer:{onsale}:settings"))
  }

  @Test func aCommandIsRoutedByItsFirstKey() {
    #expect(RedisCommand("GET", "foo").slot == 12_182)
    #expect(RedisCommand("EVALSHA", "abc", "2", "{r}:a", "{r}:b", "x").slot == HashSlot.of("r"))
    #expect(RedisCommand("EVALSHA", "abc", "0", "x").slot == nil)
    #expect(RedisCommand("PING").slot == nil && RedisCommand("SCRIPT", "LOAD", "return 1").slot == nil)
    let evalsha = RedisCommand("EVALSHA", "abc", "1", "{r}:a")
    #expect(evalsha.withSlotOf(RedisCommand("SCRIPT", "LOAD", "return 1")).slot == HashSlot.of("r"))
  }

  @Test func mapsAreReadFromShardsAndSlots() throws {
    func bulk(_ text: String) -> RESPValue { .bulkString(ByteBuffer(string: text)) }
    let slots = RESPValue.array([
      .array([.integer(0), .integer(5_460), .array([bulk("10.0.0.1"), .integer(7000), bulk("id1")]),
              .array([bulk("10.0.0.4"), .integer(7003), bulk("id4")])]),
      .array([.integer(5_461), .integer(10_922), .array([bulk(""), .integer(7001), bulk("id2")])]),
      .array([.integer(10_923), .integer(16_383), .array([bulk("10.0.0.3"), .integer(7002), bulk("id3")])]),
    ])
    let fromSlots = try ClusterTopology(slots: slots, replyHost: "10.0.0.2")
    #expect(fromSlots.isComplete)
    #expect(fromSlots.node(forSlot: 0) == Node(host: "10.0.0.1", port: 7000))
    #expect(fromSlots.node(forSlot: 5_461) == Node(host: "10.0.0.2", port: 7001))  // host left out: the one asked
    #expect(fromSlots.node(forSlot: 16_383) == Node(host: "10.0.0.3", port: 7002))
    #expect(fromSlots.nodes.count == 3)

    func node(_ ip: String, _ port: Int, _ role: String, _ health: String = "online") -> RESPValue {
      .array([bulk("id"), bulk("x"), bulk("port"), .integer(port), bulk("ip"), bulk(ip), bulk("role"), bulk(role),
              bulk("health"), bulk(health)])
    }
    let shards = RESPValue.array([
      .array([bulk("slots"), .array([.integer(0), .integer(100), .integer(200), .integer(16_383)]),
              bulk("nodes"), .array([node("10.0.0.4", 7003, "replica"), node("10.0.0.1", 7000, "master")])]),
      .array([bulk("slots"), .array([.integer(101), .integer(199)]),
              bulk("nodes"), .array([node("10.0.0.2", 7001, "master", "fail"), node("10.0.0.5", 7004, "master")])]),
    ])
    let fromShards = try ClusterTopology(shards: shards, replyHost: "10.0.0.9")
    #expect(fromShards.isComplete)
    #expect(fromShards.node(forSlot: 150) == Node(host: "10.0.0.5", port: 7004))  // the failed primary skipped
    #expect(fromShards.node(forSlot: 300) == Node(host: "10.0.0.1", port: 7000))
    // A map with holes is not complete; nonsense is an error, not a crash.
    let partial = try ClusterTopology(slots: .array([slots.array![0]]), replyHost: "h")
    #expect(!partial.isComplete && partial.node(forSlot: 9_000) == nil)
    #expect(throws: RedisError.self) { try ClusterTopology(slots: .array([.integer(1)]), replyHost: "h") }
    #expect(throws: RedisError.self) {
      try ClusterTopology(slots: .array([.array([.integer(9), .integer(99_999), .array([bulk("h"), .integer(1)])])]), replyHost: "h")
    }
  }

  @Test func redirectionsAndRetriesAreDecidedFromTheReplies() {
    let ok = RESPValue.simpleString("OK")
    #expect(ClusterReplyDecision.decide(.success([ok, .integer(3)]), askingSent: false) == .done([ok, .integer(3)]))
    // The +OK of ASKING is dropped.
    #expect(ClusterReplyDecision.decide(.success([ok, .integer(3)]), askingSent: true) == .done([.integer(3)]))
    #expect(
      ClusterReplyDecision.decide(.success([.error("MOVED 3999 127.0.0.1:6381")]), askingSent: false)
        == .moved(slot: 3_999, node: Node(host: "127.0.0.1", port: 6_381)))
    #expect(
      ClusterReplyDecision.decide(.success([.error("ASK 3999 [::1]:6382")]), askingSent: false)
        == .ask(node: Node(host: "::1", port: 6_382)))
    #expect(
      ClusterReplyDecision.decide(.success([.error("MOVED 12 :6390")]), askingSent: false)
        == .moved(slot: 12, node: Node(host: "", port: 6_390)))
    for busy in ["TRYAGAIN Multiple keys request during rehashing of slot", "CLUSTERDOWN The cluster is down",
                 "LOADING Redis is loading", "MASTERDOWN Link with MASTER is down"] {
      guard case .retry = ClusterReplyDecision.decide(.success([.error(busy)]), askingSent: false) else {
        Issue.record("\(busy) is not retried")
        continue
      }
    }
    // An ordinary error reply is an answer; a refused connection is retried, a deadline is not.
    #expect(ClusterReplyDecision.decide(.success([.error("WRONGTYPE x")]), askingSent: false) == .done([.error("WRONGTYPE x")]))
    guard case .retry = ClusterReplyDecision.decide(.failure(RedisError(.connectionFailed, "x")), askingSent: false),
      case .fail = ClusterReplyDecision.decide(.failure(RedisError(.timeout, "x")), askingSent: false),
      case .fail = ClusterReplyDecision.decide(.success([.error("MOVED nonsense")]), askingSent: false)
    else {
      Issue.record("connection failures are retried, deadlines and nonsense fail")
      return
    }
  }

  @Test func aRequestFollowsRedirectionsBoundedAndRetriesWithinItsDeadline() {
    let now = NIODeadline.uptimeNanoseconds(1_000_000_000)
    var request = ClusterRequestState(slot: 7, deadline: now + .milliseconds(100))
    // ASK sends once to the target, then routing goes back to the map.
    #expect(request.next(.ask(node: Node(host: "b", port: 2)), now: now) == .send)
    #expect(request.asking == Node(host: "b", port: 2))
    #expect(request.next(.moved(slot: 7, node: Node(host: "c", port: 3)), now: now) == .send)
    #expect(request.asking == nil)
    for _ in 0..<3 { #expect(request.next(.moved(slot: 7, node: Node(host: "c", port: 3)), now: now) == .send) }
    guard case .fail = request.next(.moved(slot: 7, node: Node(host: "c", port: 3)), now: now) else {
      Issue.record("a sixth redirection must fail")
      return
    }
    // Pauses double, and a pause past the deadline fails with the last error.
    var retrying = ClusterRequestState(slot: 7, deadline: now + .milliseconds(100))
    let busy = RedisError(.serverError, "TRYAGAIN")
    #expect(retrying.next(.retry(busy), now: now) == .pause(.milliseconds(10)))
    #expect(retrying.next(.retry(busy), now: now) == .pause(.milliseconds(20)))
    #expect(retrying.next(.retry(busy), now: now) == .pause(.milliseconds(40)))
    #expect(retrying.next(.retry(busy), now: now + .milliseconds(30)) == .fail(busy))
    #expect(retrying.next(.done([.integer(1)]), now: now) == .finish([.integer(1)]))
  }

  @Test func clusterURLsNameTheirSeeds() throws {
    let configuration = try RedisConfiguration(url: "redis-cluster://:s%40cret@10.0.0.1:7000,10.0.0.2:7001")
    #expect(configuration.isCluster && configuration.password == "s@cret")
    #expect(configuration.clusterSeeds == [.tcp(host: "10.0.0.1", port: 7000), .tcp(host: "10.0.0.2", port: 7001)])
    #expect(throws: RedisError.self) { try RedisConfiguration(url: "redis-cluster://a:1,,b:2") }
    #expect(throws: RedisError.self) { try RedisConfiguration(url: "redis-cluster://a:1/2") }
    #expect(throws: RedisError.self) { try RedisConfiguration(url: "redis-cluster://") }
    #expect(try !RedisConfiguration(url: "redis://a:1").isCluster)
  }
}
