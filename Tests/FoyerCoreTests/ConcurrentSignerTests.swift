import Foundation
import FoyerCore
import Testing

@Suite struct ConcurrentSignerTests {
  /// Signers on different threads share nothing: thousands of tokens signed and verified in
  /// parallel, each with its own signer, all verify.
  @Test func signersOnManyThreadsStayCorrect() async throws {
    let ring = try KeyRing([SigningKey(id: "k", secret: Array(repeating: 3, count: 32))])
    let failures = await withTaskGroup(of: Int.self) { tasks in
      for _ in 0..<8 {
        tasks.addTask {
          let signer = try! TokenSigner(keyRing: ring)
          var failed = 0
          for _ in 0..<5_000 {
            let token = signer.sign(Token(kind: .pass, room: "r", visitor: .random(), time: 4_000_000_000))
            if case .rejected = signer.verify(token, kind: .pass, room: "r", now: 0) { failed += 1 }
          }
          return failed
        }
      }
      return await tasks.reduce(0, +)
    }
    #expect(failures == 0)
  }
}
