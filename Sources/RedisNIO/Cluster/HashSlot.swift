/// Redis Cluster's key → slot mapping: CRC16-CCITT (XMODEM) of the key, or of its hash tag
/// (the part between the first `{` and the next `}`, when not empty), modulo 16384.
///
/// Written here rather than taken from a library: it is the cluster specification's twenty
/// lines, and its test vectors are in the specification (`HashSlotTests`).
public enum HashSlot {
  public static let count = 16_384

  public static func of(_ key: some Collection<UInt8>) -> Int {
    let bytes = Array(key)
    var hashed = bytes[...]
    if let open = bytes.firstIndex(of: UInt8(ascii: "{")),
      let close = bytes[(open + 1)...].firstIndex(of: UInt8(ascii: "}")), close > open + 1
    {
      hashed = bytes[(open + 1)..<close]
    }
    return Int(crc16(hashed) & 0x3FFF)
  }

  public static func of(_ key: String) -> Int { of(key.utf8) }

  static func crc16(_ bytes: some Sequence<UInt8>) -> UInt16 {
    var crc: UInt16 = 0
    for byte in bytes {
      crc ^= UInt16(byte) << 8
      for _ in 0..<8 { crc = crc & 0x8000 != 0 ? (crc << 1) ^ 0x1021 : crc << 1 }
    }
    return crc
  }
}

extension RedisCommand {
  /// The slot of the command's first key, or `nil` for a command without keys (which any
  /// node answers). The key's position follows the command: `EVAL`/`EVALSHA` name their
  /// keys after the key count; the server commands below have none; every other command
  /// Foyer sends takes its key first.
  public var slot: Int? {
    if let routingSlot { return routingSlot }
    let arguments = self.arguments
    guard let name = arguments.first.map({ String(decoding: $0, as: UTF8.self).uppercased() }) else { return nil }
    switch name {
    case "EVAL", "EVALSHA":
      guard arguments.count > 3, let keys = Int(String(decoding: arguments[2], as: UTF8.self)), keys > 0 else {
        return nil
      }
      return HashSlot.of(arguments[3])
    case "PING", "INFO", "TIME", "SCRIPT", "CLUSTER", "ASKING", "READONLY", "CONFIG", "DBSIZE", "FLUSHALL",
      "FLUSHDB", "WAIT", "SLOWLOG", "COMMAND", "ECHO", "AUTH", "SELECT", "HELLO", "CLIENT", "MEMORY":
      return nil
    default:
      return arguments.count > 1 ? HashSlot.of(arguments[1]) : nil
    }
  }
}
