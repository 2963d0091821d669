import BoxOffice
import Foundation
import FoyerCore
import FoyerTestSupport
import Testing

/// Issue #17 item 1: ticket codes signed with Ed25519, checked offline with the public keys
/// BoxOffice publishes (`GET /tickets/keys`), by the library and by `boxoffice verify-ticket`.
@Suite(.timeLimit(.minutes(3))) struct TicketCodeTests {
  /// Sells two seats through the real server; their codes and the published keys document.
  func sold() async throws -> (box: TestBoxOffice, codes: [String], keys: Data, seats: [Int64]) {
    let box = try await TestBoxOffice.start()
    let seats = Array(try await box.seatIds().prefix(2))
    let order = try await box.sell(2, pass: box.pass())
    #expect(order.status == 201)
    let tickets = try #require(order.json["tickets"] as? [[String: Any]])
    let keys = try await box.request("GET", "/tickets/keys")
    #expect(keys.status == 200)
    return (box, tickets.compactMap { $0["code"] as? String }, Data(keys.text.utf8), seats)
  }

  @Test func codesVerifyWithThePublishedKeysAloneAndForgeriesDoNot() async throws {
    let (box, codes, keys, seats) = try await sold()
    defer { Task { await box.stop() } }
    // The scanner's side: the keys document and nothing else.
    let verifier = try TicketVerifier(json: keys)
    #expect(codes.count == 2)
    for code in codes {
      #expect(code.hasPrefix("TK2.") && code.utf8.count <= 140, "\(code)")
      let ticket = try #require(verifier.verify(code))
      #expect(seats.contains(ticket.seat) && ticket.keyID == TestBoxOffice.keyRing.signingKey.id)
    }
    let published = try #require(try JSONSerialization.jsonObject(with: keys) as? [String: Any])
    #expect(published["algorithm"] as? String == "Ed25519")
    #expect((published["keys"] as? [String: String])?.keys.sorted() == [TestBoxOffice.keyRing.signingKey.id])
    #expect(!String(decoding: keys, as: UTF8.self).contains(Base64URL.encode(TestBoxOffice.keyRing.signingKey.secret)))

    // 1,000 forgeries, none accepted: every byte flipped in turn, every truncation, another
    // seat, another kid, and codes signed with another key under the same kid.
    let code = codes[0]
    var forged: Set<String> = []
    let bytes = Array(code.utf8)
    for index in bytes.indices {
      var flipped = bytes
      flipped[index] = flipped[index] == UInt8(ascii: "A") ? UInt8(ascii: "B") : UInt8(ascii: "A")
      forged.insert(String(decoding: flipped, as: UTF8.self))
      forged.insert(String(decoding: bytes.prefix(index), as: UTF8.self))
    }
    let fields = code.split(separator: ".").map(String.init)
    for seat in 1...200 { forged.insert(([fields[0], fields[1], String(seat)] + fields[3...]).joined(separator: ".")) }
    let stranger = TicketCodes(
      keyRing: try KeyRing([SigningKey(id: TestBoxOffice.keyRing.signingKey.id, secret: Array(repeating: 3, count: 32))]))
    for seat in 1...600 { forged.insert(stranger.code(ticket: UUID(), seat: Int64(seat))) }
    forged.insert(code.replacingOccurrences(of: ".\(fields[3]).", with: ".other."))
    forged.insert(code + "x")
    forged.insert(code.lowercased())
    forged.remove(code)
    #expect(forged.count >= 1_000)
    let accepted = forged.filter { verifier.verify($0) != nil }
    #expect(accepted.isEmpty, "accepted: \(accepted.prefix(3))")
    // The server's own codes object agrees.
    let own = TicketCodes(keyRing: TestBoxOffice.keyRing)
    #expect(codes.allSatisfy { own.verify($0) != nil } && forged.allSatisfy { own.verify($0) == nil })
  }

  @Test func anOlderKeyStillInTheRingVerifiesTheTicketsItSigned() throws {
    let old = try SigningKey(id: "old", secret: Array(repeating: 4, count: 32))
    let new = try SigningKey(id: "new", secret: Array(repeating: 5, count: 32))
    let before = TicketCodes(keyRing: try KeyRing([old]))
    let after = TicketCodes(keyRing: try KeyRing([new, old]))
    let ticket = UUID()
    let oldCode = before.code(ticket: ticket, seat: 7)
    let verified = try #require(after.verify(oldCode))
    #expect(verified.ticket == ticket && verified.seat == 7 && verified.keyID == "old")
    #expect(after.verify(after.code(ticket: ticket, seat: 7))?.keyID == "new")
    // Once the old key leaves the ring, its tickets no longer verify.
    #expect(TicketCodes(keyRing: try KeyRing([new])).verify(oldCode) == nil)
  }

  @Test func boxofficeVerifyTicketChecksACodeOffline() async throws {
    let (box, codes, keys, _) = try await sold()
    await box.stop()  // offline: nothing is running
    let file = FileManager.default.temporaryDirectory.appendingPathComponent("keys-\(UUID().uuidString).json")
    try keys.write(to: file)
    defer { try? FileManager.default.removeItem(at: file) }
    let executable = URL(fileURLWithPath: try GatewayProcess.executable()).deletingLastPathComponent()
      .appendingPathComponent("boxoffice").path
    let valid = try runToEnd(executable, ["verify-ticket", codes[0], "--keys", file.path])
    #expect(valid.status == 0 && valid.output.hasPrefix("valid: ticket "), "\(valid)")
    var flipped = Array(codes[0].utf8)
    flipped[flipped.count - 3] = flipped[flipped.count - 3] == UInt8(ascii: "A") ? UInt8(ascii: "B") : UInt8(ascii: "A")
    let invalid = try runToEnd(executable, ["verify-ticket", String(decoding: flipped, as: UTF8.self), "--keys", file.path])
    #expect(invalid.status == 1 && invalid.output.hasPrefix("invalid"), "\(invalid)")
    let noKeys = try runToEnd(executable, ["verify-ticket", codes[0], "--keys", file.path + ".missing"])
    #expect(noKeys.status != 0 && noKeys.output.contains("cannot read the keys"), "\(noKeys)")
  }
}
