internal import CHiredis
public import NIOCore

/// One Redis command: binary-safe arguments, stored contiguously so encoding needs one
/// pointer table rather than one allocation per argument.
public struct RedisCommand: Sendable, Hashable {
  @usableFromInline var storage: [UInt8]
  @usableFromInline var lengths: [Int]
  /// Where a cluster sends a keyless command that belongs with another (`withSlotOf`).
  var routingSlot: Int?

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
  public func encode(into buffer: inout ByteBuffer) {
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

/// A command encoded once, with one argument of fixed length (the slot) written anew per use.
///
/// For the hottest commands (a status poll's `ZSCORE`/`ZRANK` of a room's queue and a 22-byte
/// visitor id), so that each use is two copies and the slot's bytes rather than a hiredis
/// format call with its allocations. hiredis still does the encoding, once.
public struct RedisCommandTemplate: Sendable {
  private let prefix: [UInt8]
  private let suffix: [UInt8]
  /// How many bytes the slot argument takes.
  public let slotLength: Int

  /// `name` and `arguments`, with a slot of `slotLength` bytes at `slotIndex` among the arguments.
  public init(_ name: String, _ arguments: [String], slotIndex: Int, slotLength: Int) {
    precondition((0...arguments.count).contains(slotIndex) && slotLength > 0)
    func encoded(filler: UInt8) -> [UInt8] {
      var command = RedisCommand(name, Array(arguments[..<slotIndex]))
      command.append(repeatElement(filler, count: slotLength))
      for argument in arguments[slotIndex...] { command.append(argument) }
      var buffer = ByteBuffer()
      command.encode(into: &buffer)
      return Array(buffer.readableBytesView)
    }
    // Two encodings that differ only in the slot's bytes locate it without this type knowing RESP.
    let zeros = encoded(filler: 0x00)
    let ones = encoded(filler: 0xFF)
    let start = zeros.indices.first { zeros[$0] != ones[$0] }!
    precondition(zeros.count == ones.count && zeros[start..<start + slotLength].allSatisfy { $0 == 0 })
    prefix = Array(zeros[..<start])
    suffix = Array(zeros[(start + slotLength)...])
    self.slotLength = slotLength
  }

  /// Appends the command to `buffer`; `fill` writes exactly `slotLength` bytes of the slot.
  public func encode(into buffer: inout ByteBuffer, fill: (UnsafeMutableRawBufferPointer) -> Void) {
    buffer.reserveCapacity(minimumWritableBytes: prefix.count + slotLength + suffix.count)
    buffer.writeBytes(prefix)
    buffer.writeWithUnsafeMutableBytes(minimumWritableBytes: slotLength) { free in
      fill(UnsafeMutableRawBufferPointer(rebasing: free[..<slotLength]))
      return slotLength
    }
    buffer.writeBytes(suffix)
  }
}
