/// One HMAC key with its id. The secret is never printed: `description` redacts it.
public struct SigningKey: Sendable, CustomStringConvertible, CustomReflectable {
  /// Minimum secret length: HMAC-SHA256 keys shorter than the hash output weaken it.
  public static let minimumSecretLength = 32

  /// Names the key inside tokens (`kid`), `[A-Za-z0-9_-]{1,64}`.
  public let id: String
  /// The raw secret bytes.
  public let secret: [UInt8]

  public init(id: String, secret: [UInt8]) throws(KeyRingError) {
    guard Identifier.isValid(id) else {
      throw KeyRingError(.invalidKeyID, "key id '\(id.prefix(80))' must match [A-Za-z0-9_-]{1,64}")
    }
    guard secret.count >= Self.minimumSecretLength else {
      throw KeyRingError(
        .secretTooShort,
        "key '\(id)' has \(secret.count) bytes; at least \(Self.minimumSecretLength) are required")
    }
    self.id = id
    self.secret = secret
  }

  public var description: String { "SigningKey(id: \(id), secret: <redacted \(secret.count) bytes>)" }

  /// `dump` and debuggers see the redacted form too.
  public var customMirror: Mirror { Mirror(self, children: ["id": id, "secret": "<redacted>"]) }
}

/// The keys a deployment signs and verifies with: the first key signs, every key verifies,
/// so a new key is added in front and the old one removed once its tokens have expired.
public struct KeyRing: Sendable, CustomStringConvertible {
  public let keys: [SigningKey]

  /// The key that signs new tokens.
  public var signingKey: SigningKey { keys[0] }

  public init(_ keys: [SigningKey]) throws(KeyRingError) {
    guard !keys.isEmpty else { throw KeyRingError(.empty, "the key ring has no keys") }
    var seen = Set<String>()
    for key in keys where !seen.insert(key.id).inserted {
      throw KeyRingError(.duplicateKeyID, "key id '\(key.id)' appears twice")
    }
    self.keys = keys
  }

  /// Parses `kid:secret[,kid:secret…]`, secrets in base64 or base64url (padding optional),
  /// as found in `FOYER_KEYS` or a key file. Whitespace and newlines around entries are ignored.
  public init(parsing specification: String) throws(KeyRingError) {
    var keys: [SigningKey] = []
    let entries = specification.split(whereSeparator: { $0 == "," || $0 == "\n" })
    for rawEntry in entries {
      let entry = rawEntry.trimmingSpaces
      if entry.isEmpty { continue }
      guard let colon = entry.firstIndex(of: ":") else {
        throw KeyRingError(.malformed, "key entry must be 'id:secret' (got an entry without ':')")
      }
      let id = String(entry[..<colon])
      let encoded = entry[entry.index(after: colon)...]
      let normalised = String(
        encoded.compactMap { character -> Character? in
          switch character {
          case "+": "-"
          case "/": "_"
          case "=": nil
          default: character
          }
        })
      guard let secret = Base64URL.decode(normalised) else {
        throw KeyRingError(.malformed, "the secret of key '\(id.prefix(64))' is not valid base64")
      }
      keys.append(try SigningKey(id: id, secret: secret))
    }
    try self.init(keys)
  }

  public var description: String { "KeyRing(\(keys.map(\.id).joined(separator: ", ")))" }
}

/// Why a key or key ring was refused.
public struct KeyRingError: Error, CustomStringConvertible, Sendable {
  public struct Code: Hashable, Sendable, CustomStringConvertible {
    private enum Base: String { case empty, duplicateKeyID, invalidKeyID, secretTooShort, malformed }
    private let base: Base
    private init(_ base: Base) { self.base = base }
    public static let empty = Code(.empty)
    public static let duplicateKeyID = Code(.duplicateKeyID)
    public static let invalidKeyID = Code(.invalidKeyID)
    public static let secretTooShort = Code(.secretTooShort)
    public static let malformed = Code(.malformed)
    public var description: String { base.rawValue }
  }

  public let code: Code
  /// Says what is wrong without ever including secret material.
  public let message: String

  init(_ code: Code, _ message: String) {
    self.code = code
    self.message = message
  }

  public var description: String { "invalid signing keys: \(message)" }
}

/// Room ids and key ids: `[A-Za-z0-9_-]{1,64}`.
public enum Identifier {
  public static let maximumLength = 64

  public static func isValid(_ text: some StringProtocol) -> Bool {
    let utf8 = text.utf8
    return utf8.count >= 1 && utf8.count <= maximumLength && utf8.allSatisfy(isIdentifierByte)
  }

  @inlinable
  static func isIdentifierByte(_ byte: UInt8) -> Bool {
    switch byte {
    case UInt8(ascii: "a")...UInt8(ascii: "z"), UInt8(ascii: "A")...UInt8(ascii: "Z"),
      UInt8(ascii: "0")...UInt8(ascii: "9"), UInt8(ascii: "-"), UInt8(ascii: "_"):
      true
    default:
      false
    }
  }
}

extension Substring {
  fileprivate var trimmingSpaces: Substring {
    var result = self
    while let first = result.first, first.isWhitespace { result.removeFirst() }
    while let last = result.last, last.isWhitespace { result.removeLast() }
    return result
  }
}

extension KeyRing {
  /// The key ring from configuration: the variable `variable` (`kid:secret,…`) or, when it is
  /// unset, the file named by `fileVariable` (one `kid:secret` per line, `#` comments).
  /// The caller passes the environment (only `main` reads the process environment).
  public static func load(
    environment: [String: String], variable: String = "FOYER_KEYS", fileVariable: String = "FOYER_KEYS_FILE",
    readFile: (String) throws -> String
  ) throws(KeyRingError) -> KeyRing {
    if let value = environment[variable], !value.isEmpty {
      return try KeyRing(parsing: value)
    }
    if let path = environment[fileVariable], !path.isEmpty {
      let text: String
      do { text = try readFile(path) } catch {
        throw KeyRingError(.malformed, "cannot read the key file named by \(fileVariable): \(error)")
      }
      let lines = text.split(whereSeparator: \.isNewline).filter { !$0.trimmingSpaces.hasPrefix("#") }
      return try KeyRing(parsing: lines.joined(separator: "\n"))
    }
    throw KeyRingError(
      .empty, "no signing keys: set \(variable) to 'kid:base64secret' or \(fileVariable) to a key file")
  }
}
