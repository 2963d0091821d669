import NIOCore
import Testing

@testable import RedisNIO

/// The connection's protocol logic, driven by events with no socket and no event loop.
@Suite struct RedisConnectionStateMachineTests {
  typealias Machine = RedisConnectionStateMachine<Int>
  let backoff = Machine.Backoff(initial: .milliseconds(10), maximum: .milliseconds(80))
  let later = NIODeadline.uptimeNanoseconds(1_000_000_000)

  @Test func firstCommandConnectsAndBuffers() {
    var machine = Machine(backoff: backoff)
    guard case (.connectAndBuffer, true) = machine.send(1, deadline: later) else {
      Issue.record("expected connect"); return
    }
    guard case (.buffer, false) = machine.send(2, deadline: later + .seconds(1)) else {
      Issue.record("expected buffer"); return
    }
    guard
      case (.writeHandshakeAndBuffered, false) = machine.connected(
        handshakeSteps: 0, handshakeDeadline: later)
    else {
      Issue.record("expected write"); return
    }
    guard case (.write, false) = machine.send(3, deadline: later + .seconds(2)) else {
      Issue.record("expected write"); return
    }
    #expect(machine.queuedCount == 3)
  }

  @Test func repliesMatchFirstInFirstOut() {
    var machine = connectedMachine()
    for consumer in 1...5 { _ = machine.send(consumer, deadline: later) }
    for expected in 1...5 {
      guard case .deliver(let consumer, .integer(let value)) = machine.replyReceived(.integer(expected * 10))
      else {
        Issue.record("expected delivery"); return
      }
      #expect(consumer == expected && value == expected * 10)
    }
    guard case .close(let error) = machine.replyReceived(.integer(0)) else {
      Issue.record("unsolicited reply must close"); return
    }
    #expect(error.code == .protocolError)
  }

  @Test func handshakeRepliesAreConsumedFirst() {
    var machine = Machine(backoff: backoff)
    _ = machine.send(7, deadline: later)
    _ = machine.connected(handshakeSteps: 2, handshakeDeadline: later)
    guard case .none = machine.replyReceived(.simpleString("OK")) else { Issue.record("AUTH reply"); return }
    guard case .none = machine.replyReceived(.simpleString("OK")) else {
      Issue.record("SELECT reply"); return
    }
    guard case .deliver(7, _) = machine.replyReceived(.simpleString("PONG")) else {
      Issue.record("user reply"); return
    }
  }

  @Test func refusedHandshakeClosesAndBacksOff() {
    var machine = Machine(backoff: backoff)
    _ = machine.send(7, deadline: later)
    _ = machine.connected(handshakeSteps: 1, handshakeDeadline: later)
    guard case .close = machine.replyReceived(.error("WRONGPASS invalid password")) else {
      Issue.record("close"); return
    }
    guard
      case .failAndScheduleReconnect(let failed, let error, let delay) = machine.channelClosed(
        RedisError(.connectionClosed, "closed"))
    else { Issue.record("backoff"); return }
    #expect(failed == [7])
    #expect(error.message.contains("WRONGPASS"))
    #expect(delay <= .milliseconds(10))
    guard case (.fail(8, _), _) = machine.send(8, deadline: later) else { Issue.record("fail fast"); return }
  }

  @Test func timeoutAbandonsTheSlotAndDropsTheLateReply() {
    var machine = connectedMachine()
    _ = machine.send(1, deadline: later)
    _ = machine.send(2, deadline: later + .seconds(5))
    let (expired, close) = machine.timerFired(now: later)
    #expect(expired == [1] && !close)
    #expect(machine.timerDeadline == later + .seconds(5))
    // The late reply of command 1 is read and dropped; command 2 still gets its own.
    guard case .none = machine.replyReceived(.simpleString("late")) else { Issue.record("drop"); return }
    guard case .deliver(2, .simpleString("mine")) = machine.replyReceived(.simpleString("mine")) else {
      Issue.record("deliver"); return
    }
  }

  @Test func droppedConnectionFailsInFlightAndReconnectsAtOnce() {
    var machine = connectedMachine()
    _ = machine.send(1, deadline: later)
    _ = machine.send(2, deadline: later)
    guard case .failAndReconnect(let failed, _) = machine.channelClosed(RedisError(.connectionClosed, "gone"))
    else {
      Issue.record("reconnect"); return
    }
    #expect(failed == [1, 2])
    // While reconnecting, commands wait for the new connection.
    guard case (.buffer, _) = machine.send(3, deadline: later) else { Issue.record("buffer"); return }
  }

  @Test func failedConnectsBackOffExponentiallyWithCap() {
    var machine = Machine(backoff: backoff)
    _ = machine.send(1, deadline: later)
    var delays: [TimeAmount] = []
    for attempt in 0..<6 {
      guard
        case .failAndScheduleReconnect(let failed, let error, let delay) = machine.connectFailed(
          RedisError(.connectionFailed, "refused"))
      else { Issue.record("backoff"); return }
      #expect(failed == (attempt == 0 ? [1] : []))
      #expect(error.code == .connectionFailed)
      delays.append(delay)
      guard case (.fail(9, _), _) = machine.send(9, deadline: later) else {
        Issue.record("fail fast"); return
      }
      let elapsed = machine.backoffElapsed()
      #expect(elapsed)
    }
    #expect(delays[0] >= .milliseconds(5) && delays[0] <= .milliseconds(10))
    #expect(delays[2] >= .milliseconds(20) && delays[2] <= .milliseconds(40))
    #expect(delays.allSatisfy { $0 <= .milliseconds(80) })
  }

  @Test func closeFailsEverythingAfterwards() {
    var machine = connectedMachine()
    _ = machine.send(1, deadline: later)
    guard case .closeChannel = machine.close() else { Issue.record("close channel"); return }
    guard case .deliver(1, _) = machine.replyReceived(.integer(1)) else {
      Issue.record("in-flight reply still delivered"); return
    }
    guard
      case .failAndFinishClose(let failed, let error) = machine.channelClosed(
        RedisError(.connectionClosed, ""))
    else {
      Issue.record("finish"); return
    }
    #expect(failed.isEmpty && error.code == .clientShutdown)
    guard case (.fail(2, let error), _) = machine.send(2, deadline: later) else {
      Issue.record("fail"); return
    }
    #expect(error.code == .clientShutdown)
  }

  @Test func handshakeTimeoutClosesTheChannel() {
    var machine = Machine(backoff: backoff)
    _ = machine.send(1, deadline: later + .seconds(10))
    _ = machine.connected(handshakeSteps: 1, handshakeDeadline: later)
    let (expired, close) = machine.timerFired(now: later)
    #expect(expired.isEmpty && close)
  }

  private func connectedMachine() -> Machine {
    var machine = Machine(backoff: backoff)
    _ = machine.send(0, deadline: later)
    _ = machine.connected(handshakeSteps: 0, handshakeDeadline: later)
    _ = machine.replyReceived(.null)
    return machine
  }
}

@Suite struct RESPParserTests {
  @Test func parsesSplitAndNestedReplies() throws {
    let parser = RESPParser()
    let wire = "+OK\r\n-ERR bad\r\n:42\r\n$5\r\nhe\r\nl\r\n$-1\r\n*3\r\n:1\r\n*2\r\n$1\r\na\r\n*0\r\n*-1\r\n"
    var values: [RESPValue] = []
    // Byte by byte: replies must come out whole however the socket splits them.
    for byte in wire.utf8 {
      try parser.feed(ByteBuffer(bytes: [byte]))
      while let value = try parser.next() { values.append(value) }
    }
    #expect(
      values == [
        .simpleString("OK"), .error("ERR bad"), .integer(42), .bulkString(ByteBuffer(string: "he\r\nl")),
        .null,
        .array([.integer(1), .array([.bulkString(ByteBuffer(string: "a")), .array([])]), .null]),
      ])
  }

  @Test func garbageIsAProtocolError() throws {
    let parser = RESPParser()
    try? parser.feed(ByteBuffer(string: "!!! not resp\r\n"))
    #expect(throws: RedisError.self) { _ = try parser.next() }
  }

  @Test func encodesBinarySafeArguments() {
    var command = RedisCommand("SET", "k")
    command.append([0, 13, 10, 255] as [UInt8])
    var buffer = ByteBuffer()
    command.encode(into: &buffer)
    #expect(
      Array(buffer.readableBytesView) == Array("*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$4\r\n".utf8) + [
        0, 13, 10, 255, 13, 10,
      ])
    #expect(command.name == "SET")
  }
}

@Suite struct RedisConfigurationTests {
  @Test func parsesURLs() throws {
    let plain = try RedisConfiguration(url: "redis://localhost")
    #expect(
      plain.endpoint == .tcp(host: "localhost", port: 6379) && plain.password == nil && plain.database == 0)
    let full = try RedisConfiguration(url: "redis://user:p%40ss@10.0.0.1:6380/3")
    #expect(full.endpoint == .tcp(host: "10.0.0.1", port: 6380))
    #expect(full.username == "user" && full.password == "p@ss" && full.database == 3)
    let passwordOnly = try RedisConfiguration(url: "redis://:secret@[::1]:7000")
    #expect(passwordOnly.endpoint == .tcp(host: "::1", port: 7000) && passwordOnly.password == "secret")
    let unix = try RedisConfiguration(url: "unix:///run/redis.sock?db=2")
    #expect(unix.endpoint == .unixSocket(path: "/run/redis.sock") && unix.database == 2)
  }

  @Test(arguments: [
    "http://x", "redis://", "redis://h:0", "redis://h:99999", "redis://h/x", "unix://rel", "redis://:p%zz@h",
  ])
  func rejectsBadURLs(_ url: String) {
    #expect(throws: RedisError.self) { try RedisConfiguration(url: url) }
  }

  @Test func errorsNeverEchoThePassword() {
    do {
      _ = try RedisConfiguration(url: "redis://:hunter2@host:notaport")
    } catch {
      #expect(!"\(error)".contains("hunter2"))
    }
  }
}
