import Foundation
import FoyerCore
import FoyerTestSupport
import NIOCore
import NIOPosix
import RedisNIO
import Testing
import WaitingRoom

/// #18 item 3 on one Redis: with AOF (`appendfsync everysec`, the default `make demo` uses) a
/// Redis killed with `kill -9` comes back with every place acknowledged more than a second
/// before, in the same order; a gateway killed with `kill -9` loses no place at all.
@Suite(.timeLimit(.minutes(3))) struct DurabilityTests {
  let group = MultiThreadedEventLoopGroup.singleton

  @Test func aKilledRedisWithAOFKeepsEveryPlaceOlderThanASecond() async throws {
    let server = try await RedisServer.start(extraArguments: ["--appendonly", "yes", "--appendfsync", "everysec"])
    defer { Task { await server.stop() } }
    let redis = RedisClient(configuration: server.configuration, eventLoopGroup: group)
    defer { Task { await redis.close() } }
    let store = RoomStore(redis: redis)
    let room = "aof-" + UUID().uuidString.prefix(8)
    try await store.createRoom(room, settings: RoomSettings(state: .paused))
    let queue = RoomKeys(room: room).queue
    let joiners = (0..<4).map { _ in
      Task {
        while !Task.isCancelled { _ = try? await store.join(room: room, visitor: .random()) }
      }
    }
    try await Task.sleep(for: .seconds(2))
    // The queue as it stood, then a second and a half more of joins, then the crash.
    let before = try await redis.send(RedisCommand("ZRANGE", queue, "0", "-1")).array?.compactMap(\.string) ?? []
    try await Task.sleep(for: .milliseconds(1_500))
    await server.kill()
    for joiner in joiners { joiner.cancel() }
    for joiner in joiners { _ = await joiner.value }
    try await server.startAgain()
    var after: [String] = []
    for _ in 0..<100 {
      if let reply = try? await redis.send(RedisCommand("ZRANGE", queue, "0", "-1")), let members = reply.array {
        after = members.compactMap(\.string)
        break
      }
      try await Task.sleep(for: .milliseconds(100))  // reloading the AOF
    }
    #expect(before.count > 50)
    let kept = Set(after)
    #expect(before.allSatisfy(kept.contains), "\(before.filter { !kept.contains($0) }.count) places lost")
    // In the same order: the old places, read in the restored queue, come as they did.
    #expect(after.filter(Set(before).contains) == before)
    print("AOF everysec: \(before.count) places acknowledged 1.5 s before the kill, all back; \(after.count) in all after it")
  }

  @Test func aKilledGatewayLosesNoPlace() async throws {
    let server = try await RedisServer.start()
    defer { Task { await server.stop() } }
    let redis = RedisClient(configuration: server.configuration, eventLoopGroup: group)
    defer { Task { await redis.close() } }
    let store = RoomStore(redis: redis)
    let room = "gwkill-" + UUID().uuidString.prefix(8)
    // Every visitor comes from this machine's one address: no per-client limits here.
    try await store.createRoom(room, settings: RoomSettings(state: .paused, maxPlacesPerClient: 0))
    let file = server.directory.appendingPathComponent("foyer.yaml")
    try "clients: {new_visitors_per_minute: 0, min_poll_interval_percent: 0}\n".write(
      to: file, atomically: true, encoding: .utf8)
    let gateway = try await GatewayProcess.start(
      redisURL: server.url, rooms: ["\(room):/shop"], upstream: nil,
      keys: "test:" + Base64URL.encode(Array(repeating: UInt8(7), count: 32)), adminToken: "durability-admin-token",
      extraArguments: ["--config", file.path])
    // Visitors join through the gateway; each one the gateway answered is counted.
    let answered = LockedValue<[String]>([])
    let stopped = LockedValue(false)
    // Stopped by a flag, not by cancelling: cancelling a task inside a URLSession request can
    // deadlock FoundationNetworking on Linux.
    let joiners = (0..<4).map { _ in
      Task {
        while !stopped.value {
          guard
            let reply = try? await httpRequest(
              "GET", "http://127.0.0.1:\(gateway.port)/_foyer/status?room=\(room)", headers: ["Accept": "application/json"]),
            reply.status == 200, let header = reply.headers["set-cookie"],
            let range = header.range(of: "foyer_v_\(room)=")
          else { continue }
          let token = String(header[range.upperBound...].prefix { $0 != ";" && $0 != "," })
          answered.withLock { $0.append(token) }
        }
      }
    }
    try await Task.sleep(for: .seconds(3))
    await gateway.kill()
    stopped.withLock { $0 = true }
    for joiner in joiners { _ = await joiner.value }
    let tokens = answered.value
    // Beside the cluster suites' thirty Redis processes a few dozen join: enough to count.
    #expect(tokens.count > 5)
    // Every visitor the gateway answered has its place in Redis.
    let visitors = tokens.compactMap { $0.split(separator: ".").dropFirst(3).first.map(String.init) }
    #expect(visitors.count == tokens.count)
    let scores = try await redis.send(pipeline: visitors.map { RedisCommand("ZSCORE", RoomKeys(room: room).queue, $0) })
    #expect(scores.filter(\.isNull).isEmpty, "\(scores.filter(\.isNull).count) of \(visitors.count) places lost")
  }
}
