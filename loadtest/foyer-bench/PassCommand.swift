import ArgumentParser
import Foundation
import FoyerCore

/// Prints a pass for `room`, signed with the key ring in FOYER_KEYS (for benchmarks and
/// manual tests of pass-bearing requests).
struct PassCommand: AsyncParsableCommand {
  static let configuration = CommandConfiguration(
    commandName: "pass", abstract: "Sign a pass (keys from FOYER_KEYS).")

  @Option(help: "Room id.") var room: String
  @Option(help: "Lifetime in seconds.") var seconds = 3_600

  func run() async throws {
    let keyRing = try KeyRing.load(environment: ProcessInfo.processInfo.environment) {
      try String(contentsOfFile: $0, encoding: .utf8)
    }
    let signer = try TokenSigner(keyRing: keyRing)
    let expiry = Int64(Date().timeIntervalSince1970) + Int64(seconds)
    print(signer.sign(Token(kind: .pass, room: room, visitor: .random(), time: expiry)))
  }
}
