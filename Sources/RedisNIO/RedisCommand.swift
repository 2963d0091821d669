internal import CHiredis
public import NIOCore

/// One Redis command: binary-safe arguments, stored contiguously so encoding needs one
/// pointer table rather than one allocation per argument.
public struct RedisCommand: Sendable, Hashable {
  @usableFromInline var storage: [UInt8]
  @usableFromInline var lengths: [Int]

  /// A command from its name and text arguments: `RedisCommand("ZRANK", key, member)`.
  public init(_ name: String, _ arguments: String...) {
    self.init(name, arguments)
  }

  public init(_ name: String, _ arguments: [String]) {
    storage = []
    lengths = []
    storage.reserveCapacity(arguments.reduce(name.utf8.count) { $0 + $1.utf8.count })
    lengths.reserveCapacity(arguments.count + 1)
    append(name)
    for argument in arguments { append(argument) }
  }

  public var argumentCount: Int { lengths.count }

  public mutating func append(_ argument: String) {
    storage.append(contentsOf: argument.utf8)
    lengths.append(argument.utf8.count)
  }

  public mutating func append(_ argument: some Collection<UInt8>) {
    storage.append(contentsOf: argument)
    lengths.append(argument.count)
  }

  public mutating func append(_ argument: ByteBuffer) {
    storage.append(contentsOf: argument.readableBytesView)
    lengths.append(argument.readableBytes)
  }

  public mutating func append(_ argument: Int) {
    append(String(argument))
  }

  /// The arguments, each as bytes (for logs of command names and tests).
  public var arguments: [[UInt8]] {
    var offset = 0
    return lengths.map { length in
      defer { offset += length }
      return Array(storage[offset..<offset + length])
    }
  }

  /// The command name, for logs and errors (arguments may hold secrets and are never logged).
  public var name: String {
    String(decoding: storage.prefix(lengths.first ?? 0), as: UTF8.self).uppercased()
  }

  /// Appends the RESP encoding to `buffer`, through hiredis' `redisFormatCommandArgv`.
  func encode(into buffer: inout ByteBuffer) {
    let count = lengths.count
    storage.withUnsafeBufferPointer { bytes in
      lengths.withUnsafeBufferPointer { lengths in
        withUnsafeTemporaryAllocation(of: UnsafePointer<CChar>?.self, capacity: count) { argv in
          // An empty storage has no base address; hiredis never reads zero-length arguments.
          let base = UnsafeRawPointer(bytes.baseAddress) ?? UnsafeRawPointer(bitPattern: 1)!
          var offset = 0
          for index in 0..<count {
            argv[index] = (base + offset).assumingMemoryBound(to: CChar.self)
            offset += lengths[index]
          }
          var target: UnsafeMutablePointer<CChar>? = nil
          let length = redisFormatCommandArgv(&target, Int32(count), argv.baseAddress, lengths.baseAddress)
          guard length > 0, let target else {
            // Only allocation failure makes hiredis fail here.
            fatalError("redisFormatCommandArgv failed: out of memory")
          }
          defer { redisFreeCommand(target) }
          buffer.writeBytes(UnsafeRawBufferPointer(start: target, count: Int(length)))
        }
      }
    }
  }
}
