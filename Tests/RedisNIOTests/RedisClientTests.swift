import Foundation
import FoyerTestSupport
import NIOCore
import NIOPosix
import Testing

@testable import RedisNIO

/// Against a real redis-server (the suite's shared one unless a test needs its own).
@Suite(.timeLimit(.minutes(2))) struct RedisClientTests {
  let group = MultiThreadedEventLoopGroup.singleton

  /// Tests here are about replies, not speed: with two CPU hogs beside the suite, a 2 s
  /// deadline ran out for a 1 MiB SET and for a fake server's first reply. The deadline tests
  /// pass their own.
  static let patience = TimeAmount.seconds(20)

  func client(url: String? = nil, commandTimeout: TimeAmount = patience) throws -> RedisClient {
    try client(RedisConfiguration(url: url ?? RedisServer.sharedURL()), commandTimeout: commandTimeout)
  }

  func client(_ configuration: RedisConfiguration, commandTimeout: TimeAmount = patience) -> RedisClient {
    var configuration = configuration
    configuration.commandTimeout = commandTimeout
    return RedisClient(configuration: configuration, eventLoopGroup: group)
  }

  func key(_ name: String = #function) -> String { "test:\(name):\(UUID().uuidString)" }

  @Test func basicCommands() async throws {
    let redis = try client()
    defer { Task { await redis.close() } }
    let k = key()
    #expect(try await redis.send(RedisCommand("SET", k, "v1")) == .simpleString("OK"))
    #expect(try await redis.send(RedisCommand("GET", k)).string == "v1")
    #expect(try await redis.send(RedisCommand("GET", k + ":missing")) == .null)
    #expect(try await redis.send(RedisCommand("INCR", k + ":n")) == .integer(1))
    #expect(try await redis.send(RedisCommand("ZADD", k + ":z", "10", "a", "20", "b")) == .integer(2))
    #expect(try await redis.send(RedisCommand("ZRANK", k + ":z", "b")) == .integer(1))
    let range = try await redis.send(RedisCommand("ZRANGE", k + ":z", "0", "-1", "WITHSCORES"))
    #expect(range.array?.compactMap(\.string) == ["a", "10", "b", "20"])
    _ = try await redis.send(RedisCommand("DEL", k, k + ":n", k + ":z"))
  }

  @Test func hundredThousandPipelinedCommandsEachMatchedToItsCaller() async throws {
    // About matching, not speed: the last of 100,000 queued commands (debug build, a loaded
    // 2-core machine, every other suite running beside it) once waited more than the
    // default 2 s deadline.
    let redis = try client(commandTimeout: .seconds(30))
    defer { Task { await redis.close() } }
    let callers = 64
    let perCaller = 100_000 / callers + 1
    // Every caller fires all its commands without waiting, from both event loops, then checks
    // that each reply carries its own unique payload.
    let mismatches = try await withThrowingTaskGroup(of: Int.self) { tasks in
      for caller in 0..<callers {
        tasks.addTask {
          let connection = redis.connection(on: self.group.next())
          let futures = (0..<perCaller).map { index -> EventLoopFuture<RESPValue> in
            connection.send(RedisCommand("ECHO", "\(caller):\(index)"))
          }
          var wrong = 0
          for (index, future) in futures.enumerated() {
            if try await future.get().string != "\(caller):\(index)" { wrong += 1 }
          }
          return wrong
        }
      }
      return try await tasks.reduce(0, +)
    }
    #expect(mismatches == 0)
  }

  @Test func pipelineBatchKeepsPerCommandErrors() async throws {
    let redis = try client()
    defer { Task { await redis.close() } }
    let k = key()
    let replies = try await redis.send(pipeline: [
      RedisCommand("SET", k, "text"), RedisCommand("INCR", k), RedisCommand("GET", k), RedisCommand("DEL", k),
    ])
    #expect(replies.count == 4)
    #expect(replies[0] == .simpleString("OK"))
    guard case .error(let message) = replies[1] else { Issue.record("expected an error reply"); return }
    #expect(message.hasPrefix("ERR"))
    #expect(replies[2].string == "text" && replies[3] == .integer(1))
  }

  @Test func largeAndBinaryValues() async throws {
    let redis = try client()
    defer { Task { await redis.close() } }
    let k = key()
    let allBytes = (0..<(1 << 20)).map { UInt8(truncatingIfNeeded: $0 &* 7 &+ $0 >> 8) }
    var set = RedisCommand("SET", k)
    set.append(allBytes)
    _ = try await redis.send(set)
    #expect(try await redis.send(RedisCommand("GET", k)).bytes == allBytes)
    var binaryKey = RedisCommand("SET")
    binaryKey.append([0, 13, 10, 0xff] as [UInt8])
    binaryKey.append([13, 10, 36, 42, 0] as [UInt8])
    _ = try await redis.send(binaryKey)
    var get = RedisCommand("GET")
    get.append([0, 13, 10, 0xff] as [UInt8])
    #expect(try await redis.send(get).bytes == [13, 10, 36, 42, 0])
    var del = RedisCommand("DEL", k)
    del.append([0, 13, 10, 0xff] as [UInt8])
    #expect(try await redis.send(del) == .integer(2))
  }

  @Test func nestedArraysFromEval() async throws {
    let redis = try client()
    defer { Task { await redis.close() } }
    let script = RedisScript("return {1, {2, {3, {4, 'deep'}}}, 'x', redis.error_reply('ERR inner')}")
    let reply = try await redis.evaluate(script, keys: [], arguments: [])
    #expect(
      reply
        == .array([
          .integer(1),
          .array([
            .integer(2),
            .array([.integer(3), .array([.integer(4), .bulkString(ByteBuffer(string: "deep"))])]),
          ]),
          .bulkString(ByteBuffer(string: "x")), .error("ERR inner"),
        ]))
  }

  @Test func scriptsReloadAfterFlush() async throws {
    let server = try await RedisServer.start()
    let redis = client(server.configuration)
    defer { Task { await redis.close() } }
    let script = RedisScript("return tonumber(ARGV[1]) * 2")
    #expect(try await redis.evaluate(script, keys: [], arguments: ["21"]) == .integer(42))
    _ = try await redis.send(RedisCommand("SCRIPT", "FLUSH"))
    #expect(try await redis.evaluate(script, keys: [], arguments: ["5"]) == .integer(10))
    let loaded = try await redis.send(RedisCommand("SCRIPT", "EXISTS", script.sha1))
    #expect(loaded == .array([.integer(1)]))
  }

  /// Redis blocks a connection during `WAIT`: a write waiting for a replica that never
  /// confirms (this server has none) must not hold up the commands sent after it on the
  /// same event loop. Ordering, not timing: the second command is answered while the first
  /// is still waiting.
  @Test func aWriteWaitingForReplicasDoesNotHoldUpOtherCommands() async throws {
    let redis = try client()
    defer { Task { await redis.close() } }
    let loop = group.next()
    let k = key()
    let script = RedisScript("return redis.call('INCR', KEYS[1])")
    // Cached first, so the replicated call is one round trip (EVALSHA, WAIT).
    #expect(try await redis.evaluate(script, keys: [k + ":load"], arguments: []) == .integer(1))
    let waited = redis.evaluate(
      script, keys: [k], arguments: [], on: loop, replicated: ReplicaWait(replicas: 1, timeout: .seconds(5)))
    let waitedDone = LockedValue(false)
    waited.whenComplete { _ in waitedDone.withLock { $0 = true } }
    // Read until the script's write shows; then its WAIT is what holds its connection.
    var seen: String?
    for _ in 0..<200 {
      seen = try await redis.send(RedisCommand("GET", k), on: loop).get().string
      if seen == "1" || waitedDone.value { break }
      try await Task.sleep(for: .milliseconds(10))
    }
    #expect(seen == "1")
    #expect(!waitedDone.value, "GET was answered only after the WAIT gave up")
    await #expect {
      _ = try await waited.get()
    } throws: { error in
      (error as? RedisError)?.code == .notReplicated
    }
    _ = try await redis.send(RedisCommand("DEL", k, k + ":load"))
  }

  @Test func serverErrorsFailTheCommandWithTheirMessage() async throws {
    let redis = try client()
    defer { Task { await redis.close() } }
    let k = key()
    _ = try await redis.send(RedisCommand("SET", k, "x"))
    await #expect {
      _ = try await redis.send(RedisCommand("ZADD", k, "1", "m"))
    } throws: { error in
      (error as? RedisError)?.serverErrorPrefix == "WRONGTYPE"
    }
    await #expect(throws: RedisError.self) { _ = try await redis.send(RedisCommand("NOSUCHCOMMAND")) }
    // The connection is still usable afterwards.
    #expect(try await redis.send(RedisCommand("DEL", k)) == .integer(1))
  }

  @Test func deadlineExpiresAndTheLateReplyIsDiscarded() async throws {
    let redis = try client()
    defer { Task { await redis.close() } }
    let connection = redis.connection(on: group.next())
    let k = key()
    // BLPOP blocks this connection for 5 s; its deadline is 100 ms.
    let started = ContinuousClock.now
    await #expect {
      _ = try await connection.send(RedisCommand("BLPOP", k, "5"), timeout: .milliseconds(100))
    } throws: { error in
      (error as? RedisError)?.code == .timeout
    }
    // Bounds, not instants: the other tests load both event loops.
    #expect(ContinuousClock.now - started < .seconds(4))
    // The next command waits behind the blocked one and must get its own reply, not BLPOP's nil.
    #expect(try await connection.send(RedisCommand("ECHO", "after"), timeout: .seconds(15)).string == "after")
  }

  @Test func restartFailsInFlightCommandsThenReconnects() async throws {
    let server = try await RedisServer.start()
    let redis = client(server.configuration)
    defer { Task { await redis.close() } }
    let connection = redis.connection(on: group.next())
    #expect(try await connection.send(RedisCommand("PING")) == .simpleString("PONG"))

    // A long block: the stop below must land while it is in flight, even when the whole
    // suite keeps this machine's two cores busy (a 10 s block once ran out first in CI).
    let inFlight: EventLoopFuture<RESPValue> = connection.send(
      RedisCommand("BLPOP", "never", "60"), timeout: .seconds(90))
    try await Task.sleep(for: .milliseconds(100))
    await server.stop()
    await #expect {
      _ = try await inFlight.get()
    } throws: { error in
      (error as? RedisError)?.code == .connectionClosed
    }
    // While Redis is down, commands fail fast with a clear error rather than hang.
    let whileDown = ContinuousClock.now
    var downError: RedisError?
    for _ in 0..<20 {
      do {
        _ = try await connection.send(RedisCommand("PING"), timeout: .seconds(5))
      } catch let error as RedisError {
        downError = error
        if error.code == .connectionFailed { break }
      }
      try await Task.sleep(for: .milliseconds(20))
    }
    #expect(downError?.code == .connectionFailed)
    #expect(ContinuousClock.now - whileDown < .seconds(3))

    try await server.restart()
    var recovered = false
    for _ in 0..<200 where !recovered {
      recovered = (try? await connection.send(RedisCommand("PING"))) == .simpleString("PONG")
      if !recovered { try await Task.sleep(for: .milliseconds(25)) }
    }
    #expect(recovered)
  }

  @Test func authenticatesAndSelectsTheDatabase() async throws {
    let server = try await RedisServer.start(extraArguments: ["--requirepass", "s3cret"])
    var configuration = try RedisConfiguration(url: "redis://:s3cret@127.0.0.1:\(server.port)/2")
    let redis = client(configuration)
    defer { Task { await redis.close() } }
    _ = try await redis.send(RedisCommand("SET", "where", "db2"))
    let info = try await redis.send(RedisCommand("CLIENT", "INFO")).string ?? ""
    #expect(info.contains("db=2"))

    configuration.password = "wrong"
    let refused = client(configuration)
    defer { Task { await refused.close() } }
    await #expect {
      _ = try await refused.send(RedisCommand("PING"))
    } throws: { error in
      let error = error as? RedisError
      return error?.code == .connectionFailed || error?.code == .serverError
    }
  }

  @Test func connectsOverAUnixSocket() async throws {
    let socket = FileManager.default.temporaryDirectory.appendingPathComponent(
      "foyer-\(UUID().uuidString.prefix(8)).sock"
    ).path
    let server = try await RedisServer.start(extraArguments: [
      "--unixsocket", socket, "--unixsocketperm", "700",
    ])
    _ = server
    let redis = try client(url: "unix://\(socket)")
    defer { Task { await redis.close() } }
    #expect(try await redis.send(RedisCommand("PING")) == .simpleString("PONG"))
  }

  @Test func malformedReplyIsAProtocolErrorAndClosesTheConnection() async throws {
    // A fake server that answers every request with bytes that are not RESP.
    let server = try await ServerBootstrap(group: group)
      .childChannelInitializer { channel in
        channel.eventLoop.makeCompletedFuture {
          try channel.pipeline.syncOperations.addHandler(GarbageResponder())
        }
      }
      .bind(host: "127.0.0.1", port: 0).get()
    defer { server.close(promise: nil) }
    let port = server.localAddress!.port!
    let redis = try client(url: "redis://127.0.0.1:\(port)")
    defer { Task { await redis.close() } }
    let connection = redis.connection(on: group.next())
    await #expect {
      _ = try await connection.send(RedisCommand("PING"))
    } throws: { error in
      (error as? RedisError)?.code == .protocolError
    }
    // The client stays usable: the next command fails the same clean way (new connection, same garbage).
    await #expect(throws: RedisError.self) { _ = try await connection.send(RedisCommand("PING")) }
  }
}

final class GarbageResponder: ChannelInboundHandler, Sendable {
  typealias InboundIn = ByteBuffer
  typealias OutboundOut = ByteBuffer
  func channelRead(context: ChannelHandlerContext, data: NIOAny) {
    context.writeAndFlush(wrapOutboundOut(ByteBuffer(string: "?garbage\r\n")), promise: nil)
  }
}
