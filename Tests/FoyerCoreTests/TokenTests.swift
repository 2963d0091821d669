import FoyerCore
import PropertyBased
import Testing

@Suite struct TokenTests {
  static let now: Int64 = 1_800_000_000
  static let current = try! SigningKey(id: "k2", secret: Array(repeating: 0x42, count: 32))
  static let previous = try! SigningKey(id: "k1", secret: Array(repeating: 0x17, count: 48))

  func signer(_ keys: SigningKey...) throws -> TokenSigner {
    try TokenSigner(keyRing: KeyRing(keys))
  }

  @Test func passRoundTrip() throws {
    let signer = try signer(Self.current)
    let visitor = VisitorID.random()
    let pass = signer.sign(Token(kind: .pass, room: "launch-2026", visitor: visitor, time: Self.now + 600))
    #expect(pass.hasPrefix("v1.p.launch-2026.\(visitor).\(Self.now + 600).k2."))
    #expect(pass.split(separator: ".").last?.count == 43)
    #expect(
      signer.verify(pass, kind: .pass, room: "launch-2026", now: Self.now)
        == .valid(visitor: visitor, time: Self.now + 600))
  }

  @Test func visitorTokenDoesNotExpire() throws {
    let signer = try signer(Self.current)
    let visitor = VisitorID.random()
    let token = signer.sign(Token(kind: .visitor, room: "r", visitor: visitor, time: Self.now))
    #expect(signer.verify(token, kind: .visitor, room: "r", now: Self.now + 86_400 * 365).visitor == visitor)
  }

  @Test func rejectionsHaveTheirReason() throws {
    let signer = try signer(Self.current)
    let visitor = VisitorID.random()
    let pass = signer.sign(Token(kind: .pass, room: "r1", visitor: visitor, time: Self.now + 10))
    #expect(signer.verify(pass, kind: .pass, room: "r1", now: Self.now + 10) == .rejected(.expired))
    #expect(signer.verify(pass, kind: .pass, room: "r2", now: Self.now) == .rejected(.wrongRoom))
    #expect(signer.verify(pass, kind: .visitor, room: "r1", now: Self.now) == .rejected(.wrongKind))
    let other = try self.signer(try SigningKey(id: "k9", secret: Array(repeating: 1, count: 32)))
    #expect(other.verify(pass, kind: .pass, room: "r1", now: Self.now) == .rejected(.unknownKey))
    // Same key id, different secret: the MAC does not match.
    let impostor = try self.signer(try SigningKey(id: "k2", secret: Array(repeating: 1, count: 32)))
    #expect(impostor.verify(pass, kind: .pass, room: "r1", now: Self.now) == .rejected(.badSignature))
  }

  @Test func keyRotation() throws {
    let old = try signer(Self.previous)
    let visitor = VisitorID.random()
    let pass = old.sign(Token(kind: .pass, room: "r", visitor: visitor, time: Self.now + 60))
    // New deployment: the new key signs, the old one still verifies.
    let rotated = try signer(Self.current, Self.previous)
    #expect(rotated.verify(pass, kind: .pass, room: "r", now: Self.now).visitor == visitor)
    #expect(rotated.sign(Token(kind: .pass, room: "r", visitor: visitor, time: 1)).contains(".k2."))
    // Once the old key is removed, its tokens are unknown.
    let retired = try signer(Self.current)
    #expect(retired.verify(pass, kind: .pass, room: "r", now: Self.now) == .rejected(.unknownKey))
  }

  @Test func everySingleByteChangeIsRejected() throws {
    let signer = try signer(Self.current)
    let pass = signer.sign(Token(kind: .pass, room: "room_1", visitor: .random(), time: Self.now + 60))
    let original = Array(pass.utf8)
    var checked = 0
    for position in original.indices {
      for value in 0...255 where UInt8(value) != original[position] {
        var mutated = original
        mutated[position] = UInt8(value)
        let result = mutated.withUnsafeBytes {
          signer.verify(utf8: $0, kind: .pass, room: "room_1", now: Self.now)
        }
        guard case .rejected = result else {
          Issue.record("byte \(position) changed to \(value) was accepted")
          return
        }
        checked += 1
      }
    }
    #expect(checked == original.count * 255)
  }

  @Test func randomEditsAreRejected() async throws {
    let signer = try signer(Self.current)
    let pass = signer.sign(Token(kind: .pass, room: "room_1", visitor: .random(), time: Self.now + 60))
    let length = pass.utf8.count
    // Property: any non-empty set of edits (replace/insert/delete) yields a rejected token.
    await propertyCheck(
      count: 2_000, input: Gen.int(in: 0..<length), Gen.uint8(), Gen.int(in: 0...2), Gen.int(in: 0..<length)
    ) { position, byte, operation, second in
      var bytes = Array(pass.utf8)
      switch operation {
      case 0:
        guard bytes[position] != byte else { return }
        bytes[position] = byte
      case 1:
        bytes.insert(byte, at: position)
      default:
        bytes.remove(at: position)
        if second < bytes.count { bytes.remove(at: second) }
      }
      let result = bytes.withUnsafeBytes {
        signer.verify(utf8: $0, kind: .pass, room: "room_1", now: Self.now)
      }
      #expect(result.visitor == nil)
    }
  }

  @Test(arguments: [
    "", ".", "......", ".......", "v1", "v1.p", "v1.p.r.x.1.k.m", "v1.p.r.AAAAAAAAAAAAAAAAAAAAAA.1.k2.",
    "v2.p.r.AAAAAAAAAAAAAAAAAAAAAA.1.k2.AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA",
    "v1.x.r.AAAAAAAAAAAAAAAAAAAAAA.1.k2.AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA",
    "v1.p.r.AAAAAAAAAAAAAAAAAAAAAA.01.k2.AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA",
    "v1.p.r.AAAAAAAAAAAAAAAAAAAAAA.-1.k2.AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA",
    "v1.p.r.AAAAAAAAAAAAAAAAAAAAAA.99999999999999999.k2.AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA",
    "v1.p.r.AAAAAAAAAAAAAAAAAAAAA=.1.k2.AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA",
    "v1.p.rüm.AAAAAAAAAAAAAAAAAAAAAA.1.k2.AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA",
    "v1.p.r.AAAAAAAAAAAAAAAAAAAAAA.1.k2.AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA*",
    "v1.p.r.AAAAAAAAAAAAAAAAAAAAAA.1.k2.AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA.x",
    String(repeating: "v1.p.", count: 200), String(repeating: "A", count: 100_000),
  ])
  func malformedInputIsRejectedWithoutCrashing(_ input: String) throws {
    let signer = try signer(Self.current)
    let result = signer.verify(input, kind: .pass, room: "r", now: Self.now)
    #expect(
      result == .rejected(.malformed) || result == .rejected(.unknownKey)
        || result == .rejected(.badSignature))
    #expect(result.visitor == nil)
  }

  @Test func wellFormedButForgedIsBadSignature() throws {
    let signer = try signer(Self.current)
    let forged = "v1.p.r.AAAAAAAAAAAAAAAAAAAAAA.1.k2.AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA"
    #expect(signer.verify(forged, kind: .pass, room: "r", now: 0) == .rejected(.badSignature))
  }

  @Test func visitorIDs() {
    let a = VisitorID.random()
    #expect(a != VisitorID.random())
    #expect(a.description.utf8.count == 22)
    #expect(VisitorID(a.description) == a)
    #expect(VisitorID("short") == nil)
    #expect(VisitorID("AAAAAAAAAAAAAAAAAAAAA/") == nil)
  }
}

@Suite struct KeyRingTests {
  @Test func parsesEntriesInOrder() throws {
    let a = Base64URL.encode([UInt8](repeating: 7, count: 32))
    let ring = try KeyRing(parsing: " new:\(a) ,\n old:\(a.replacingDashes)==")
    #expect(ring.keys.map(\.id) == ["new", "old"])
    #expect(ring.signingKey.id == "new")
    #expect(ring.keys[1].secret == [UInt8](repeating: 7, count: 32))
  }

  @Test func refusesWeakOrBrokenKeys() {
    let short = Base64URL.encode([UInt8](repeating: 7, count: 31))
    let good = Base64URL.encode([UInt8](repeating: 7, count: 32))
    #expect(throws: KeyRingError.self) { try KeyRing(parsing: "") }
    #expect(throws: KeyRingError.self) { try KeyRing(parsing: "k:\(short)") }
    #expect(throws: KeyRingError.self) { try KeyRing(parsing: "k:\(good),k:\(good)") }
    #expect(throws: KeyRingError.self) { try KeyRing(parsing: "bad id:\(good)") }
    #expect(throws: KeyRingError.self) { try KeyRing(parsing: "k:not base64!") }
    #expect(throws: KeyRingError.self) { try KeyRing(parsing: "no-colon") }
  }

  @Test func neverPrintsSecrets() throws {
    let secret = [UInt8](repeating: 0x41, count: 32)  // "AAAA…" in ASCII
    let key = try SigningKey(id: "k", secret: secret)
    let ring = try KeyRing([key])
    let encoded = Base64URL.encode(secret)
    for text in [String(describing: key), String(describing: ring), "\(key)", String(reflecting: ring)] {
      #expect(!text.contains(encoded) && !text.contains("AAAAAAAA"))
    }
    do {
      _ = try KeyRing(parsing: "k:\(Base64URL.encode(secret.prefix(20)))")
    } catch {
      #expect(!"\(error)".contains(Base64URL.encode(secret.prefix(20))))
    }
  }
}

extension String {
  fileprivate var replacingDashes: String {
    String(map { $0 == "-" ? "+" : $0 == "_" ? "/" : $0 })
  }
}

@Suite struct KeyRingLoadingTests {
  let secret = Base64URL.encode([UInt8](repeating: 3, count: 32))

  @Test func fromTheEnvironmentFirst() throws {
    let ring = try KeyRing.load(environment: ["FOYER_KEYS": "a:\(secret)", "FOYER_KEYS_FILE": "/nope"]) { _ in
      Issue.record("the file must not be read when the variable is set")
      return ""
    }
    #expect(ring.keys.map(\.id) == ["a"])
  }

  @Test func fromAFileWithComments() throws {
    let ring = try KeyRing.load(environment: ["FOYER_KEYS_FILE": "/etc/foyer/keys"]) { path in
      #expect(path == "/etc/foyer/keys")
      return "# rotated 2026-11\nnew:\(secret)\n  # old one until passes expire\nold:\(secret)\n"
    }
    #expect(ring.keys.map(\.id) == ["new", "old"])
  }

  @Test func missingConfigurationSaysWhatToSet() {
    do {
      _ = try KeyRing.load(environment: [:]) { _ in "" }
      Issue.record("expected an error")
    } catch {
      #expect(error.message.contains("FOYER_KEYS"))
    }
  }
}
