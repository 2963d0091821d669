import ArgumentParser
import Foundation
import FoyerCore

/// Prints visitor tokens (one per line) for visitors that `foyer-bench room` put in the
/// queue, for loadtest/bench-status to poll with. Signed with the key ring in FOYER_KEYS.
struct VisitorTokensCommand: AsyncParsableCommand {
  static let configuration = CommandConfiguration(
    commandName: "visitor-tokens", abstract: "Visitor tokens of benchmark visitors (keys from FOYER_KEYS).")

  @Option(help: "Room id.") var room = "bench"
  @Option(help: "Tokens to print.") var count = 10_000
  @Option(help: "Visitors in the room (ids are drawn from 0..<visitors).") var visitors = 1_000_000

  func run() async throws {
    guard count > 0, visitors > 0 else { throw ValidationError("--count and --visitors must be positive") }
    let keyRing = try KeyRing.load(environment: ProcessInfo.processInfo.environment) {
      try String(contentsOfFile: $0, encoding: .utf8)
    }
    let signer = try TokenSigner(keyRing: keyRing)
    let now = Int64(Date().timeIntervalSince1970)
    var output = ""
    for _ in 0..<count {
      // The ids `foyer-bench room` uses: "benchmark" + 12 digits + "A".
      let id = VisitorID("benchmark" + String(format: "%012d", Int.random(in: 0..<visitors)) + "A")!
      output += signer.sign(Token(kind: .visitor, room: room, visitor: id, time: now)) + "\n"
    }
    FileHandle.standardOutput.write(Data(output.utf8))
  }
}
