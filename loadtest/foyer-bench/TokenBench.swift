import ArgumentParser
import FoyerCore
import MallocInterposerSwift

/// Pass verifications per second on one thread, and heap allocations per verification.
struct TokenBench: AsyncParsableCommand {
  static let configuration = CommandConfiguration(
    commandName: "tokens", abstract: "Pass verification speed and allocations.")

  @Option(help: "Verifications per timed round.") var iterations = 1_000_000
  @Option(help: "Timed rounds (the median is reported).") var rounds = 5

  func run() async throws {
    let key = try SigningKey(id: "bench", secret: (0..<32).map { UInt8($0) })
    let signer = try TokenSigner(
      keyRing: KeyRing([key, try SigningKey(id: "old", secret: Array(repeating: 9, count: 32))]))
    let now: Int64 = 1_800_000_000
    let pass = signer.sign(Token(kind: .pass, room: "onsale-2026", visitor: .random(), time: now + 900))
    let room = "onsale-2026"

    var rates: [Double] = []
    var valid = 0
    for _ in 0..<rounds {
      let start = ContinuousClock.now
      for _ in 0..<iterations {
        if case .valid = signer.verify(pass, kind: .pass, room: room, now: now) { valid += 1 }
      }
      let elapsed = ContinuousClock.now - start
      let seconds = Double(elapsed.components.seconds) + Double(elapsed.components.attoseconds) / 1e18
      rates.append(Double(iterations) / seconds)
    }
    precondition(valid == iterations * rounds, "benchmark token did not verify")
    rates.sort()
    print("token verifications per second (one thread, median of \(rounds)): \(Int(rates[rounds / 2]))")

    // Proof of work: what the gateway pays to check a solution, and what a bot with native
    // SHA-256 pays to find one (the waiting page's figures: loadtest/bench-challenge).
    let visitor = VisitorID.random()
    let challenge = Challenge(room: room, visitor: visitor, bits: 12, expiry: now + 600).signed(with: signer)
    let counter = Challenge.solve(challenge, bits: 12).counter
    var checks: [Double] = []
    for _ in 0..<rounds {
      let start = ContinuousClock.now
      for _ in 0..<100_000 {
        guard case .success = Challenge.verify(
          challenge: challenge, counter: counter, room: room, visitor: visitor, now: now, signer: signer)
        else { fatalError("benchmark solution did not verify") }
      }
      let elapsed = ContinuousClock.now - start
      checks.append(Double(elapsed.components.attoseconds) / 1e18 + Double(elapsed.components.seconds))
    }
    checks.sort()
    print("challenge solutions checked per second (one thread): \(Int(100_000 / checks[rounds / 2]))")
    let start = ContinuousClock.now
    var tries: UInt64 = 0
    for index in 0..<8 {
      tries += Challenge.solve(challenge + String(index), bits: 16).tries
    }
    let elapsed = ContinuousClock.now - start
    let seconds = Double(elapsed.components.seconds) + Double(elapsed.components.attoseconds) / 1e18
    print("native solver hashes per second (one thread, what a bot pays): \(Int(Double(tries) / seconds))")

    // Allocation count: needs the interposer preloaded (loadtest/bench-tokens does that).
    MallocInterposerSwift.initialize()
    MallocInterposerSwift.hook()
    let probe = [Int](repeating: 1, count: 64)
    MallocInterposerSwift.unhook()
    let counting = MallocInterposerSwift.getStatistics().mallocCount > 0
    guard counting, probe.count == 64 else {
      print("allocations per verification: not measured (run with LD_PRELOAD=libMallocInterposerSwift.so)")
      return
    }
    let sample = 100_000
    MallocInterposerSwift.initialize()
    MallocInterposerSwift.hook()
    for _ in 0..<sample { _ = signer.verify(pass, kind: .pass, room: room, now: now) }
    MallocInterposerSwift.unhook()
    let stats = MallocInterposerSwift.getStatistics()
    print("allocations per verification: \(Double(stats.mallocCount) / Double(sample))")

    // How many of those OpenSSL makes: one bare HMAC-SHA256 over a token-sized message.
    let hmac = try HMACSHA256(key: key.secret)
    let message = [UInt8](repeating: 0x61, count: pass.utf8.count - 44)
    var output = [UInt8](repeating: 0, count: 32)
    MallocInterposerSwift.initialize()
    MallocInterposerSwift.hook()
    message.withUnsafeBytes { input in
      output.withUnsafeMutableBytes { out in
        for _ in 0..<sample { hmac.authenticate(input, into: out) }
      }
    }
    MallocInterposerSwift.unhook()
    let macStats = MallocInterposerSwift.getStatistics()
    print(
      "  of which inside OpenSSL's HMAC (EVP_MAC_init/update/final): \(Double(macStats.mallocCount) / Double(sample))"
    )
  }
}
