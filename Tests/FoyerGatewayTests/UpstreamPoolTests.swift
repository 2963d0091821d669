import Foundation
import FoyerCore
import FoyerTestSupport
import NIOCore
import NIOPosix
import RedisNIO
import Testing
import WaitingRoom

@testable import FoyerGateway

/// The upstream pool's cap (mechanism 7 of #15): the state machine alone, then a live gateway
/// whose crowd of requests may not open more upstream connections than allowed.
@Suite(.timeLimit(.minutes(2))) struct UpstreamPoolTests {
  let group = MultiThreadedEventLoopGroup.singleton
  static let a = ObjectIdentifier(NSObject())
  static let b = ObjectIdentifier(NSObject())

  @Test func theCapMakesRequestsWaitInOrder() {
    var machine = UpstreamPoolStateMachine(maxConnections: 2, maxIdle: 1)
    #expect(machine.acquire() == .connect)
    #expect(machine.acquire() == .connect)
    #expect(machine.acquire() == .wait(0))
    #expect(machine.acquire() == .wait(1))
    // A released connection goes to the first waiter, not to the idle list.
    #expect(machine.released(Self.a) == .hand(to: 0))
    // A waiter that gave up is skipped; a closed connection frees a place for the next.
    let first = machine.timedOut(1)
    let again = machine.timedOut(1)
    #expect(first && !again)
    #expect(machine.released(Self.a) == .keepIdle)
    #expect(machine.released(Self.b) == .close)  // over maxIdle
    #expect(machine.acquire() == .lease(Self.a))
    #expect(machine.acquire() == .wait(2))
    #expect(machine.closed(Self.b) == .connect(for: 2))
    #expect(machine.open == 2)
    #expect(machine.closed(nil) == .none)
    #expect(machine.open == 1)
  }

  @Test func aFreshConnectionIsAskedOnlyUnderTheCap() {
    var machine = UpstreamPoolStateMachine(maxConnections: 1, maxIdle: 4)
    #expect(machine.acquire() == .connect)
    #expect(machine.released(Self.a) == .keepIdle)
    // At the cap, even the retry takes the idle connection rather than open another.
    #expect(machine.acquire(fresh: true) == .lease(Self.a))
    let expired = machine.expire(Self.a)
    #expect(!expired)
    let freed = machine.closed(Self.a)
    #expect(freed == .none && machine.open == 0)
    #expect(machine.acquire(fresh: true) == .connect)
  }

  func gateway(upstreamPort: Int, queueTimeout: TimeAmount) async throws -> (String, any Channel) {
    let redis = RedisClient(
      configuration: try RedisConfiguration(url: RedisServer.sharedURL()), eventLoopGroup: group)
    let configuration = GatewayConfiguration(
      host: "127.0.0.1", port: 0, keyRing: StatusEndpointTests.keyRing,
      upstream: UpstreamConfiguration(
        host: "127.0.0.1", port: upstreamPort, responseTimeout: .seconds(10), maxConnectionsPerEventLoop: 1,
        queueTimeout: queueTimeout))
    let channel = try await GatewayServer(
      configuration: configuration, store: RoomStore(redis: redis), eventLoopGroup: group
    ).start()
    return ("http://127.0.0.1:\(channel.localAddress!.port!)", channel)
  }

  func crowd(_ base: String, _ count: Int, milliseconds: Int) async -> [HTTPReply] {
    await withTaskGroup(of: HTTPReply?.self) { tasks in
      for index in 0..<count {
        tasks.addTask { try? await httpRequest("GET", base + "/slow?i=\(index)&ms=\(milliseconds)") }
      }
      var replies: [HTTPReply] = []
      for await reply in tasks { if let reply { replies.append(reply) } }
      return replies
    }
  }

  @Test func aCrowdOpensNoMoreConnectionsThanTheCap() async throws {
    let upstream = try await TestUpstream(group: group)
    defer { upstream.channel.close(promise: nil) }
    let (base, channel) = try await gateway(upstreamPort: upstream.port, queueTimeout: .seconds(8))
    defer { channel.close(promise: nil) }
    let replies = await crowd(base, 8, milliseconds: 100)
    #expect(replies.count == 8 && replies.allSatisfy { $0.status == 200 }, "\(replies.map(\.status))")
    // One connection per event loop, whatever the crowd.
    #expect(upstream.accepted <= System.coreCount, "\(upstream.accepted) upstream connections")
  }

  @Test func waitingPastTheQueueTimeoutIs503() async throws {
    let upstream = try await TestUpstream(group: group)
    defer { upstream.channel.close(promise: nil) }
    let (base, channel) = try await gateway(upstreamPort: upstream.port, queueTimeout: .milliseconds(100))
    defer { channel.close(promise: nil) }
    let replies = await crowd(base, 8, milliseconds: 1_000)
    let busy = replies.filter { $0.status == 503 }
    #expect(!busy.isEmpty && busy.allSatisfy { $0.json["error"] as? String == "upstream_busy" }, "\(replies.map(\.status))")
    #expect(replies.contains { $0.status == 200 })
    #expect(upstream.accepted <= System.coreCount)
  }
}
