internal import CHiredis
internal import NIOCore

/// Incremental RESP parser: bytes in, replies out, through a hiredis `redisReader`.
///
/// Owns the reader and frees it; confined to one channel (not thread-safe).
final class RESPParser {
  private let reader: UnsafeMutablePointer<redisReader>
  private let allocator = ByteBufferAllocator()

  init() {
    guard let reader = redisReaderCreate() else { fatalError("redisReaderCreate failed: out of memory") }
    self.reader = reader
  }

  deinit { redisReaderFree(reader) }

  /// Hands `buffer`'s readable bytes to the reader.
  func feed(_ buffer: ByteBuffer) throws(RedisError) {
    let status = buffer.withUnsafeReadableBytes { bytes in
      redisReaderFeed(reader, bytes.baseAddress?.assumingMemoryBound(to: CChar.self), bytes.count)
    }
    if status != REDIS_OK { throw protocolError() }
  }

  /// The next complete reply, or `nil` when more bytes are needed.
  func next() throws(RedisError) -> RESPValue? {
    var raw: UnsafeMutableRawPointer? = nil
    guard redisReaderGetReply(reader, &raw) == REDIS_OK else { throw protocolError() }
    guard let raw else { return nil }
    let reply = raw.assumingMemoryBound(to: redisReply.self)
    defer { freeReplyObject(raw) }
    return try convert(reply)
  }

  private func convert(_ reply: UnsafeMutablePointer<redisReply>) throws(RedisError) -> RESPValue {
    let node = reply.pointee
    switch node.type {
    case REDIS_REPLY_STRING:
      var buffer = allocator.buffer(capacity: node.len)
      if node.len > 0 { buffer.writeBytes(UnsafeRawBufferPointer(start: node.str, count: node.len)) }
      return .bulkString(buffer)
    case REDIS_REPLY_STATUS:
      return .simpleString(text(node))
    case REDIS_REPLY_ERROR:
      return .error(text(node))
    case REDIS_REPLY_INTEGER:
      return .integer(Int(node.integer))
    case REDIS_REPLY_NIL:
      return .null
    case REDIS_REPLY_ARRAY:
      var values: [RESPValue] = []
      values.reserveCapacity(node.elements)
      for index in 0..<node.elements {
        guard let element = node.element[index] else {
          throw RedisError(.protocolError, "array element missing")
        }
        values.append(try convert(element))
      }
      return .array(values)
    default:
      throw RedisError(.protocolError, "unsupported reply type \(node.type)")
    }
  }

  private func text(_ node: redisReply) -> String {
    guard node.len > 0, let str = node.str else { return "" }
    return String(decoding: UnsafeRawBufferPointer(start: str, count: node.len), as: UTF8.self)
  }

  private func protocolError() -> RedisError {
    let message = withUnsafeBytes(of: reader.pointee.errstr) { raw in
      String(decoding: raw.prefix(while: { $0 != 0 }), as: UTF8.self)
    }
    return RedisError(.protocolError, message.isEmpty ? "malformed reply" : message)
  }
}
