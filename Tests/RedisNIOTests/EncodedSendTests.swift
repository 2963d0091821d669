import Foundation
import FoyerTestSupport
import NIOCore
import NIOPosix
import Testing

@testable import RedisNIO

/// The status poll's way to Redis: commands encoded from templates, replies to a callback.
@Suite(.timeLimit(.minutes(2))) struct EncodedSendTests {
  let group = MultiThreadedEventLoopGroup.singleton

  func key(_ name: String = #function) -> String { "test:\(name):\(UUID().uuidString)" }

  func encoded(_ command: RedisCommand) -> [UInt8] {
    var buffer = ByteBuffer()
    command.encode(into: &buffer)
    return Array(buffer.readableBytesView)
  }

  func encoded(_ template: RedisCommandTemplate, slot: [UInt8]) -> [UInt8] {
    var buffer = ByteBuffer(bytes: [0x2A])  // something before, as in a connection's outbound buffer
    template.encode(into: &buffer) { raw in raw.copyBytes(from: slot) }
    return Array(buffer.readableBytesView.dropFirst())
  }

  @Test(arguments: [0, 1, 2])
  func aTemplateEncodesExactlyAsTheCommandWithThatArgument(slotIndex: Int) {
    let arguments = ["foyer:{room}:queue", "XX"]
    let slot = Array("AAECAwQFBgcICQoLDA0ODw".utf8)
    let template = RedisCommandTemplate("ZADD", arguments, slotIndex: slotIndex, slotLength: slot.count)
    var command = RedisCommand("ZADD", Array(arguments[..<slotIndex]))
    command.append(slot)
    for argument in arguments[slotIndex...] { command.append(argument) }
    #expect(encoded(template, slot: slot) == encoded(command))
    #expect(template.slotLength == 22)
  }

  @Test func aSlotMayHoldAnyBytesIncludingTheFillersUsedToFindIt() {
    let template = RedisCommandTemplate("ECHO", [], slotIndex: 0, slotLength: 4)
    for slot: [UInt8] in [[0, 0, 0, 0], [0xFF, 0xFF, 0xFF, 0xFF], [0x0D, 0x0A, 0x24, 0x31]] {
      var command = RedisCommand("ECHO")
      command.append(slot)
      #expect(encoded(template, slot: slot) == encoded(command))
    }
  }

  @Test func templatedCommandsAnswerTheCallbackInOrderOnTheLoop() async throws {
    let redis = RedisClient(
      configuration: try RedisConfiguration(url: RedisServer.sharedURL()), eventLoopGroup: group)
    defer { Task { await redis.close() } }
    let k = key()
    let members = (0..<50).map { String(format: "member-%06d", $0) }
    var add = RedisCommand("ZADD", k)
    for (index, member) in members.enumerated() {
      add.append(String(index * 10))
      add.append(member)
    }
    _ = try await redis.send(add)
    let score = RedisCommandTemplate("ZSCORE", [k], slotIndex: 1, slotLength: 13)
    let rank = RedisCommandTemplate("ZRANK", [k], slotIndex: 1, slotLength: 13)
    let loop = group.next()
    let connection = redis.connection(on: loop)
    // Every member's pair of replies, plus one for a member that is not there.
    let answers: [[RESPValue]] = try await loop.submit {
      let all = loop.makePromise(of: [[RESPValue]].self)
      var collected: [[RESPValue]] = []
      for member in members + ["member-absent"] {
        connection.send(count: 2) { buffer in
          score.encode(into: &buffer) { $0.copyBytes(from: member.utf8) }
          rank.encode(into: &buffer) { $0.copyBytes(from: member.utf8) }
        } completion: { result in
          loop.preconditionInEventLoop()
          switch result {
          case .success(let replies): collected.append(replies)
          case .failure(let error): all.fail(error)
          }
          if collected.count == members.count + 1 { all.succeed(collected) }
        }
      }
      return all.futureResult
    }.flatMap { $0 }.get()
    #expect(answers.count == 51)
    for (index, replies) in answers.prefix(50).enumerated() {
      #expect(replies == [.bulkString(ByteBuffer(string: String(index * 10))), .integer(index)])
    }
    #expect(answers.last == [.null, .null])
    _ = try await redis.send(RedisCommand("DEL", k))
  }

  @Test func theCallbackIsToldOnceWhenTheCommandsTimeOut() async throws {
    let redis = RedisClient(
      configuration: try RedisConfiguration(url: RedisServer.sharedURL()), eventLoopGroup: group)
    defer { Task { await redis.close() } }
    let loop = group.next()
    let connection = redis.connection(on: loop)
    let blpop = RedisCommand("BLPOP", key(), "3")
    let outcome: (calls: Int, error: RedisError?) = try await loop.flatSubmit {
      let done = loop.makePromise(of: (calls: Int, error: RedisError?).self)
      var calls = 0
      var failure: RedisError?
      connection.send(count: 2, timeout: .milliseconds(100)) { buffer in
        blpop.encode(into: &buffer)
        RedisCommand("PING").encode(into: &buffer)
      } completion: { result in
        calls += 1
        if case .failure(let error) = result { failure = error }
        // Give a second completion (from the late replies) time to show itself.
        loop.assumeIsolated().scheduleTask(in: .seconds(4)) { done.succeed((calls, failure)) }
      }
      return done.futureResult
    }.get()
    #expect(outcome.calls == 1)
    #expect(outcome.error?.code == .timeout)
  }

  @Test(
    arguments: [
      ("0", 0), ("42", 42), ("-17", -17), ("+5", 5), ("9223372036854775807", Int.max),
      ("-9223372036854775808", Int.min), ("9223372036854775808", nil), ("", nil), ("-", nil), ("1.5", nil),
      ("12a", nil), (" 1", nil),
    ] as [(String, Int?)])
  func bulkStringsReadAsIntegersLikeIntOfTheirText(text: String, expected: Int?) {
    #expect(RESPValue.bulkString(ByteBuffer(string: text)).int == expected)
    #expect(expected == Int(text))
  }
}
