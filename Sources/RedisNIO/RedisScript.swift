internal import CLibCrypto

/// A Lua script called by its SHA1 (`EVALSHA`); loaded on demand.
public struct RedisScript: Sendable, Hashable {
  public let source: String
  /// Lower-case hex SHA1 of `source`, as Redis names cached scripts.
  public let sha1: String

  public init(_ source: String) {
    self.source = source
    var digest = [UInt8](repeating: 0, count: 20)
    var length: UInt32 = 0
    let ok = Array(source.utf8).withUnsafeBytes { input in
      EVP_Digest(input.baseAddress, input.count, &digest, &length, EVP_sha1(), nil) == 1
    }
    precondition(ok && length == 20, "SHA1 failed inside OpenSSL")
    let hex = Array("0123456789abcdef".utf8)
    self.sha1 = String(decoding: digest.flatMap { [hex[Int($0 >> 4)], hex[Int($0 & 15)]] }, as: UTF8.self)
  }

  /// The `EVALSHA` command for these keys and arguments.
  public func command(keys: [String], arguments: [String]) -> RedisCommand {
    var command = RedisCommand("EVALSHA", sha1, String(keys.count))
    for key in keys { command.append(key) }
    for argument in arguments { command.append(argument) }
    return command
  }
}
