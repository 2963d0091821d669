import BoxOffice
import Foundation
import FoyerCore
import FoyerTestSupport
import Testing
import WaitingRoom

/// Issue #15's attack corpus against the gateway in front of the real BoxOffice (Hummingbird,
/// llhttp): nothing reaches the booking API without a pass, and no request hidden in a body
/// is ever answered (the answers on a connection are exactly one per request meant).
@Suite(.timeLimit(.minutes(3))) struct EdgeAttackBoxOfficeTests {
  @Test func theCorpusFailsAgainstBoxOffice() async throws {
    let keyRing = try KeyRing([SigningKey(id: "edge", secret: Array(repeating: 9, count: 32))])
    let room = "edge" + UUID().uuidString.prefix(6)
    let stack = try await OnSaleStack.start(
      room: room, keyRing: keyRing, adminToken: "edge-admin-token-0123456789",
      sections: [EventSpec.Section(name: "Stalls", rows: 2, seatsPerRow: 4, priceCents: 1_000)],
      settings: RoomSettings(state: .paused))
    defer { Task { await stack.stop() } }
    let port = try #require(URL(string: stack.base)?.port)
    let signer = try TokenSigner(keyRing: keyRing)
    let pass = signer.sign(
      Token(kind: .pass, room: room, visitor: .random(), time: Int64(Date().timeIntervalSince1970) + 120))

    for attack in EdgeAttack.corpus {
      let bytes = attack.bytes(prefix: "/events", host: "127.0.0.1", room: room, pass: pass)
      switch attack.expect {
      case .refused(let statuses):
        let (answers, closed) = await rawAnswers(port: port, send: bytes, answers: 2)
        #expect(answers.count == 1 && statuses.contains(answers[0].status), "\(attack): \(answers)")
        #expect(closed, "\(attack): the connection stayed open")
      case .queued:
        let (answers, _) = await rawAnswers(port: port, send: bytes, answers: 1)
        // The queue's answer, never BoxOffice's event list.
        #expect(answers.count == 1 && answers.first?.text.contains("\"room\":\"\(room)\"") == true, "\(attack): \(answers)")
      case .forwarded(let expected):
        // One more answer than requests would be a smuggled request's: after the answers
        // meant, a second of quiet (BoxOffice answers a pipelined request right after the last).
        let (answers, _) = await rawAnswers(port: port, send: bytes, answers: expected.count, timeout: 15, quiet: 1)
        #expect(answers.count == expected.count, "\(attack): \(answers)")
        #expect(answers.allSatisfy { $0.status != 401 }, "\(attack): forwarded without its pass: \(answers)")
      }
    }
  }
}
