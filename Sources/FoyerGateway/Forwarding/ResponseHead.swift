internal import HTTPWire
internal import NIOCore

/// The upstream's answer head as the client gets it: read from the bytes, its framing
/// decided once (RFC 9112 §6.3), hop-by-hop fields and those `Connection` names dropped,
/// `Foyer-Release` taken out (and the pass cleared when it says `done`). The body after it is
/// passed on as it came.
enum ResponseHead {
  enum Outcome { case wait, invalid, skipped, written }

  enum Rewrite {
    case wait
    case invalid
    /// A 1xx head of this length, not passed on.
    case informational(length: Int)
    case head(Rewritten)
  }

  struct Rewritten {
    /// The client's head (and a small body that came with it).
    var bytes: ByteBuffer
    /// Upstream bytes it took.
    var consumed: Int
    var body: ForwardingExchange.ResponseBody
    /// The upstream keeps the connection after this answer.
    var upstreamKeepAlive: Bool
    /// The upstream said `Foyer-Release: done`.
    var released: Bool
    var status: Int
  }

  /// A body up to this size that arrived with its head is copied into the head's write.
  static let coalesceLimit = 16 * 1024

  /// Rewrites the head at the start of `bytes`. `clearPassOf` is the room whose pass the
  /// request carried: a release clears that cookie.
  static func rewrite(
    _ bytes: UnsafeRawBufferPointer, isHead: Bool, closeClient: Bool, clearPassOf room: String?,
    secureCookies: Bool, allocator: ByteBufferAllocator
  ) -> Rewrite {
    let head: RawHead
    switch RawHTTP.response(bytes) {
    case .incomplete: return .wait
    case .unsupported: return .invalid
    case .head(let h): head = h
    }
    let (version, code, reason) = head.start
    let status = bytes[code].reduce(0) { $0 * 10 + Int($1 - UInt8(ascii: "0")) }
    if status < 200 { return status == 101 ? .invalid : .informational(length: head.length) }
    var contentLength: Int?
    var chunked = false
    var keepAlive = bytes[version.upperBound - 1] == UInt8(ascii: "1")
    var listed: [Range<Int>] = []
    for field in head.fields {
      if RawHTTP.equals(bytes, field.name, lowercase: "content-length") {
        guard let length = RawHTTP.contentLength(bytes, field.value),
          contentLength == nil || contentLength == length
        else { return .invalid }
        contentLength = length
      } else if RawHTTP.equals(bytes, field.name, lowercase: "transfer-encoding") {
        guard !chunked, RawHTTP.equals(bytes, field.value, lowercase: "chunked") else { return .invalid }
        chunked = true
      } else if RawHTTP.equals(bytes, field.name, lowercase: "connection") {
        // Almost always exactly one of the two; only a list is split.
        if RawHTTP.equals(bytes, field.value, lowercase: "keep-alive") {
          keepAlive = true
          continue
        } else if RawHTTP.equals(bytes, field.value, lowercase: "close") {
          keepAlive = false
          continue
        }
        for token in bytes[field.value].split(separator: UInt8(ascii: ",")) {
          let trimmed = RawHTTP.trim(token)
          if RawHTTP.equals(bytes, trimmed, lowercase: "close") {
            keepAlive = false
          } else if RawHTTP.equals(bytes, trimmed, lowercase: "keep-alive") {
            keepAlive = true
          } else if !trimmed.isEmpty && ForwardingHeaders.dropsListedName(bytes[trimmed]) {
            listed.append(trimmed)
          }
        }
      }
    }
    if chunked && contentLength != nil { return .invalid }
    var framing = ForwardingExchange.ResponseBody.untilClose
    if isHead || status == 204 || status == 304 {
      framing = .done
    } else if chunked {
      framing = .chunked(ChunkedBodyScanner())
    } else if let contentLength {
      framing = contentLength == 0 ? .done : .fixed(remaining: contentLength)
    }
    if case .untilClose = framing { keepAlive = false }

    var small = 0
    if case .fixed(let length) = framing, length <= coalesceLimit { small = length }
    var out = allocator.buffer(capacity: head.length + 160 + small)
    var copier = RunWriter(bytes)
    if bytes[version.upperBound - 1] == UInt8(ascii: "1") && reason.upperBound > 12 {
      // `HTTP/1.1 SP code SP [reason] CRLF` as it came (one without the second space gets it).
      copier.copy(0..<(reason.upperBound + 2), to: &out)
    } else {
      out.writeStaticString("HTTP/1.1 ")
      out.writeBytes(UnsafeRawBufferPointer(rebasing: bytes[code]))
      out.writeStaticString(" ")
      out.writeBytes(UnsafeRawBufferPointer(rebasing: bytes[reason]))
      out.writeStaticString("\r\n")
    }
    var released = false
    for field in head.fields {
      let name = field.name
      if ForwardingHeaders.isHopByHop(bytes[name])
        || listed.contains(where: { ForwardingHeaders.equalsIgnoringCase(bytes[$0], bytes[name]) })
      {
        continue
      }
      if RawHTTP.equals(bytes, name, lowercase: "foyer-release") {
        released = released || RawHTTP.equals(bytes, field.value, lowercase: "done")
        continue
      }
      copier.copy(field.line, to: &out)
    }
    copier.flush(&out)
    if released, let room {
      out.writeStaticString("set-cookie: ")
      out.writeString(
        Cookies.setCookie(name: Cookies.passName(room: room), value: "", maxAge: 0, secure: secureCookies))
      out.writeStaticString("\r\n")
    }
    if closeClient || framing.isUntilClose {
      out.writeStaticString("connection: close\r\n")
    }
    out.writeStaticString("\r\n")
    var consumed = head.length
    // A small body that came with the head goes out in the same write.
    if case .fixed(let length) = framing, length <= coalesceLimit, bytes.count - head.length >= length {
      out.writeBytes(UnsafeRawBufferPointer(rebasing: bytes[head.length..<(head.length + length)]))
      framing = .done
      consumed += length
    }
    return .head(
      Rewritten(
        bytes: out, consumed: consumed, body: framing, upstreamKeepAlive: keepAlive, released: released,
        status: status))
  }
}
