/// A proof-of-work challenge (#16 item 3): the gateway signs
/// `c1.<room>.<visitor>.<bits>.<expiry>.<nonce>.<kid>.<mac>` with its signing keys, and a
/// solution is a decimal counter such that SHA-256 of `<challenge>.<counter>` starts with
/// `bits` zero bits: 2^bits hashes expected, one hash and one HMAC to verify, no state.
public struct Challenge: Sendable, Hashable {
  public var room: String
  public var visitor: VisitorID
  public var bits: Int
  /// Unix seconds.
  public var expiry: Int64
  /// Random, so no two challenges are alike (16 base64url characters).
  public var nonce: String

  public static let maximumBits = 32
  /// A counter is at most this many digits (2^53 tries is beyond any budget).
  static let maximumCounterDigits = 16

  public init(room: String, visitor: VisitorID, bits: Int, expiry: Int64, nonce: String? = nil) {
    precondition(Identifier.isValid(room) && (1...Self.maximumBits).contains(bits) && expiry >= 0)
    self.room = room
    self.visitor = visitor
    self.bits = bits
    self.expiry = expiry
    self.nonce =
      nonce
      ?? {
        var bytes = [UInt8](repeating: 0, count: 12)
        bytes.withUnsafeMutableBytes { secureRandomBytes($0) }
        return Base64URL.encode(bytes)
      }()
  }

  public enum Rejection: String, Sendable, Hashable, Error {
    case malformed, badSignature = "bad_signature", expired, wrongRoom = "wrong_room"
    case wrongVisitor = "wrong_visitor", insufficientWork = "insufficient_work"
  }

  var unsigned: String { "c1.\(room).\(visitor).\(bits).\(expiry).\(nonce)" }

  /// The challenge as sent to the visitor.
  public func signed(with signer: TokenSigner) -> String {
    signer.sign(message: unsigned)
  }

  /// Checks `challenge` and `counter` for `visitor` in `room` at `now`: the signature, the
  /// binding, the expiry, then the work.
  public static func verify(
    challenge: some StringProtocol, counter: some StringProtocol, room: String, visitor: VisitorID, now: Int64,
    signer: TokenSigner
  ) -> Result<Challenge, Rejection> {
    let text = String(challenge)
    // Split on the bytes: the fields are ASCII, and a Character split walks grapheme clusters.
    let parts = text.utf8.split(separator: UInt8(ascii: "."), omittingEmptySubsequences: false).map { Substring($0) }
    guard text.utf8.count <= TokenSigner.maximumTokenLength, parts.count == 8, parts[0] == "c1",
      // Canonical numbers only (no sign, no leading zero): one text per challenge.
      parts[3].first != "0", parts[4].first != "0", parts[3].first != "+", parts[4].first != "+",
      let bits = Int(parts[3]), (1...maximumBits).contains(bits),
      let expiry = Int64(parts[4]), parts[5].utf8.count == 16,
      let id = VisitorID(substring: parts[2]), Identifier.isValid(parts[1]),
      (1...maximumCounterDigits).contains(counter.utf8.count),
      counter.utf8.allSatisfy({ $0 >= UInt8(ascii: "0") && $0 <= UInt8(ascii: "9") })
    else { return .failure(.malformed) }
    guard signer.verify(signed: text[..<parts[6].endIndex], keyID: parts[6], mac: parts[7]) else {
      return .failure(.badSignature)
    }
    guard parts[1] == room else { return .failure(.wrongRoom) }
    guard id == visitor else { return .failure(.wrongVisitor) }
    guard expiry > now else { return .failure(.expired) }
    guard isSolved(text, counter: counter, bits: bits, using: signer.sha256) else {
      return .failure(.insufficientWork)
    }
    return .success(Challenge(room: room, visitor: id, bits: bits, expiry: expiry, nonce: String(parts[5])))
  }

  /// Finds a counter by brute force (the reference solver: tests, the load generator's bots).
  public static func solve(_ challenge: String, bits: Int, startingAt start: UInt64 = 0) -> (counter: String, tries: UInt64) {
    let digest = try! SHA256Digest()
    var counter = start
    while true {
      let candidate = String(counter)
      if isSolved(challenge, counter: candidate, bits: bits, using: digest) {
        return (candidate, counter - start + 1)
      }
      counter += 1
    }
  }

  /// Whether SHA-256 of `<challenge>.<counter>` starts with `bits` zero bits.
  public static func isSolved(
    _ challenge: some StringProtocol, counter: some StringProtocol, bits: Int, using sha256: SHA256Digest
  ) -> Bool {
    let length = challenge.utf8.count + 1 + counter.utf8.count
    // `<challenge>.<counter>` assembled on the stack: a check allocates nothing here.
    return withUnsafeTemporaryAllocation(of: UInt8.self, capacity: length) { input in
      var end = input.initialize(fromContentsOf: challenge.utf8)
      input[end] = UInt8(ascii: ".")
      end += 1
      end = UnsafeMutableBufferPointer(rebasing: input[end...]).initialize(fromContentsOf: counter.utf8) + end
      return withUnsafeTemporaryAllocation(of: UInt8.self, capacity: 32) { digest in
        sha256.digest(
          UnsafeRawBufferPointer(UnsafeBufferPointer(rebasing: input[..<length])),
          into: UnsafeMutableRawBufferPointer(digest))
        return leadingZeroBits(UnsafeBufferPointer(digest)) >= bits
      }
    }
  }

  static func leadingZeroBits(_ digest: UnsafeBufferPointer<UInt8>) -> Int {
    var count = 0
    for byte in digest {
      if byte == 0 {
        count += 8
        continue
      }
      return count + byte.leadingZeroBitCount
    }
    return count
  }
}

extension TokenSigner {
  /// `message.<kid>.<mac>` under the first key: formats other than tokens (challenges) share
  /// the key ring and its rotation.
  public func sign(message: String) -> String {
    let signed = message + "." + keyRing.signingKey.id
    return signed + "." + Base64URL.encode(mac(keyIndex: 0, Array(signed.utf8)))
  }
}
