import ArgumentParser
import Foundation
import FoyerCore
import NIOCore
import NIOPosix
import RedisNIO
import WaitingRoom

/// Prints visitor tokens (one per line) for visitors that `foyer-bench room` put in the
/// queue, for loadtest/bench-status to poll with. Signed with the key ring in FOYER_KEYS.
/// With `--places-from`, each line also has the visitor's place token (its queue score as
/// that Redis holds it), as a browser keeps it from its last answer.
struct VisitorTokensCommand: AsyncParsableCommand {
  static let configuration = CommandConfiguration(
    commandName: "visitor-tokens", abstract: "Visitor tokens of benchmark visitors (keys from FOYER_KEYS).")

  @Option(help: "Room id.") var room = "bench"
  @Option(help: "Tokens to print.") var count = 10_000
  @Option(help: "Visitors in the room (ids are drawn from 0..<visitors).") var visitors = 1_000_000
  @Option(help: "Redis URL to read the visitors' queue scores from, for place tokens.") var placesFrom: String?

  func run() async throws {
    guard count > 0, visitors > 0 else { throw ValidationError("--count and --visitors must be positive") }
    let keyRing = try KeyRing.load(environment: ProcessInfo.processInfo.environment) {
      try String(contentsOfFile: $0, encoding: .utf8)
    }
    let signer = try TokenSigner(keyRing: keyRing)
    let now = Int64(Date().timeIntervalSince1970)
    // The ids `foyer-bench room` uses: "benchmark" + 12 digits + "A".
    let ids = (0..<count).map { _ in
      VisitorID("benchmark" + String(format: "%012d", Int.random(in: 0..<visitors)) + "A")!
    }
    var scores: [Int64?] = Array(repeating: nil, count: count)
    if let placesFrom {
      let group = MultiThreadedEventLoopGroup(numberOfThreads: 1)
      let redis = RedisClient(configuration: try RedisConfiguration(url: placesFrom), eventLoopGroup: group)
      let queue = RoomKeys(room: room).queue
      let replies = try await redis.send(pipeline: ids.map { RedisCommand("ZSCORE", queue, $0.description) })
      scores = replies.map { $0.string.flatMap { Double($0) }.map { Int64($0) } }
      await redis.close()
      try await group.shutdownGracefully()
    }
    var output = ""
    for (id, score) in zip(ids, scores) {
      output += signer.sign(Token(kind: .visitor, room: room, visitor: id, time: now))
      if let score { output += " " + signer.sign(Token(kind: .place, room: room, visitor: id, time: score)) }
      output += "\n"
    }
    FileHandle.standardOutput.write(Data(output.utf8))
  }
}
