internal import CLibCrypto

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
    let parts = text.split(separator: ".", omittingEmptySubsequences: false)
    guard text.utf8.count <= TokenSigner.maximumTokenLength, parts.count == 8, parts[0] == "c1",
      let bits = Int(parts[3]), (1...maximumBits).contains(bits), String(bits) == parts[3],
      let expiry = Int64(parts[4]), String(expiry) == parts[4], parts[5].utf8.count == 16,
      let id = VisitorID(parts[2]), Identifier.isValid(parts[1]),
      (1...maximumCounterDigits).contains(counter.utf8.count),
      counter.utf8.allSatisfy({ $0 >= UInt8(ascii: "0") && $0 <= UInt8(ascii: "9") })
    else { return .failure(.malformed) }
    guard signer.verify(message: text[..<parts[5].endIndex], keyID: parts[6], mac: parts[7]) else {
      return .failure(.badSignature)
    }
    guard parts[1] == room else { return .failure(.wrongRoom) }
    guard id == visitor else { return .failure(.wrongVisitor) }
    guard expiry > now else { return .failure(.expired) }
    guard isSolved(text, counter: counter, bits: bits) else {
      return .failure(.insufficientWork)
    }
    return .success(Challenge(room: room, visitor: id, bits: bits, expiry: expiry, nonce: String(parts[5])))
  }

  /// Finds a counter by brute force (the reference solver: tests, the load generator's bots).
  public static func solve(_ challenge: String, bits: Int, startingAt start: UInt64 = 0) -> (counter: String, tries: UInt64) {
    var counter = start
    while true {
      let candidate = String(counter)
      if isSolved(challenge, counter: candidate, bits: bits) {
        return (candidate, counter - start + 1)
      }
      counter += 1
    }
  }

  /// Whether SHA-256 of `<challenge>.<counter>` starts with `bits` zero bits.
  public static func isSolved(_ challenge: some StringProtocol, counter: some StringProtocol, bits: Int) -> Bool {
    leadingZeroBits(sha256(Array("\(challenge).\(counter)".utf8))) >= bits
  }

  static func sha256(_ bytes: [UInt8]) -> [UInt8] {
    var digest = [UInt8](repeating: 0, count: 32)
    var length: UInt32 = 0
    let ok = bytes.withUnsafeBytes { EVP_Digest($0.baseAddress, $0.count, &digest, &length, EVP_sha256(), nil) == 1 }
    precondition(ok && length == 32, "SHA-256 failed inside OpenSSL")
    return digest
  }

  static func leadingZeroBits(_ digest: [UInt8]) -> Int {
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

  /// Whether `mac` is the MAC of `message.<keyID>` under the ring's key `keyID`, compared in
  /// constant time.
  public func verify(message: some StringProtocol, keyID: some StringProtocol, mac: some StringProtocol) -> Bool {
    guard let index = keyRing.keys.firstIndex(where: { $0.id == keyID }), let presented = Base64URL.decode(mac),
      presented.count == HMACSHA256.byteCount
    else { return false }
    return constantTimeEquals(self.mac(keyIndex: index, Array("\(message).\(keyID)".utf8)), presented)
  }
}
