import Foundation
import FoyerCore
import FoyerTestSupport
import NIOCore
import NIOPosix
import RedisNIO
import Testing

@testable import WaitingRoom

/// #18 item 3: a primary of a real Redis Cluster killed (`kill -9`) while visitors join. Its
/// replica is promoted and joins carry on; with replica waits no acknowledged place is lost,
/// without them the run reports how many were (asynchronous replication).
@Suite(.timeLimit(.minutes(3))) struct ClusterFailoverTests {
  let group = MultiThreadedEventLoopGroup.singleton

  @Test(arguments: [true, false]) func aKilledPrimaryLosesNoAcknowledgedPlace(waitForReplica: Bool) async throws {
    let cluster = try await RedisCluster.start()
    defer { Task { await cluster.stop() } }
    var configuration = cluster.configuration
    configuration.commandTimeout = .seconds(10)
    let redis = RedisClient(configuration: configuration, eventLoopGroup: group)
    defer { Task { await redis.close() } }
    let store = RoomStore(
      redis: redis, replicaWait: waitForReplica ? ReplicaWait(replicas: 1, timeout: .milliseconds(500)) : nil)
    let room = "failover-" + UUID().uuidString.prefix(8)
    // Paused: everyone stays in the queue, where the test looks for them afterwards.
    try await store.createRoom(room, settings: RoomSettings(state: .paused))

    // Acknowledged places with when, and joins answered as failed.
    let log = LockedValue((acknowledged: [(VisitorID, ContinuousClock.Instant)](), failures: 0))
    let joiners = (0..<8).map { _ in
      Task {
        while !Task.isCancelled {
          let visitor = VisitorID.random()
          do {
            _ = try await store.join(room: room, visitor: visitor)
            log.withLock { $0.acknowledged.append((visitor, .now)) }
          } catch {
            log.withLock { $0.failures += 1 }
            try? await Task.sleep(for: .milliseconds(20))
          }
        }
      }
    }
    try await Task.sleep(for: .seconds(1))
    let primary = try cluster.primary(forSlot: HashSlot.of("{\(room)}"))
    let killed = ContinuousClock.now
    await primary.kill()
    // The operator brings the dead node back: it rejoins as the new primary's replica (until
    // then, with replica waits on, a join cannot be confirmed and is answered as failed).
    try await Task.sleep(for: .seconds(3))
    try await primary.startAgain()
    // Joins until some have been acknowledged for two seconds after the kill's aftermath.
    var resumed: ContinuousClock.Instant?
    while ContinuousClock.now - killed < .seconds(25) {
      try await Task.sleep(for: .milliseconds(200))
      resumed = log.value.acknowledged.first { $0.1 > killed + .milliseconds(100) }?.1
      if let resumed, ContinuousClock.now - resumed > .seconds(2) { break }
    }
    for joiner in joiners { joiner.cancel() }
    for joiner in joiners { _ = await joiner.value }
    try await cluster.waitUntilHealthy()

    let (acknowledged, failures) = log.value
    let resumedAfter = try #require(resumed, "joins never resumed after the kill") - killed
    // Every acknowledged place is in the queue of the promoted primary.
    var lost = 0
    for chunk in stride(from: 0, to: acknowledged.count, by: 500) {
      let commands = acknowledged[chunk..<min(chunk + 500, acknowledged.count)].map {
        RedisCommand("ZSCORE", RoomKeys(room: room).queue, $0.0.description)
      }
      lost += try await redis.send(pipeline: commands).filter(\.isNull).count
    }
    print(
      "failover (replica waits \(waitForReplica ? "on" : "off")): \(acknowledged.count) places acknowledged, "
        + "\(lost) lost, \(failures) joins answered as failed; joins resumed \(resumedAfter) after the kill")
    #expect(acknowledged.count > 50)
    #expect(resumedAfter < .seconds(15))
    if waitForReplica { #expect(lost == 0) }
  }
}
