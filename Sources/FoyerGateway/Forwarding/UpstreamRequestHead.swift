internal import FoyerCore
internal import HTTPWire
internal import NIOCore
internal import NIOHTTP1

/// What a client connection adds to every request it forwards: its address in the
/// forwarding chain and the prefix of the request ids it makes. Worked out once per
/// connection.
struct ClientForwarding {
  let address: String
  /// `x-forwarded-proto` and `forwarded`, the same for every request.
  let tail: String
  let connectionTag = String(UInt32.random(in: .min ... .max), radix: 16)

  init(address: String) {
    self.address = address
    tail = "x-forwarded-proto: http\r\nforwarded: for=\"\(address)\";proto=http\r\n"
  }
}

/// The request head as the upstream sees it, written as bytes from the head's bytes: the one
/// request rewriter, whichever parser read the request (a head NIOHTTP1 read is written out
/// as bytes first, `serialize`). Lines kept are copied as they came; it drops the hop-by-hop
/// fields and those `Connection` names, the client's framing (the gateway's own goes in its
/// place), `Expect` (answered by the gateway), the gateway's cookies and a client's copies
/// of its headers; it adds the verified visitor and pass, the forwarding chain and the
/// request id.
enum UpstreamRequestHead {
  /// The head and where its request id is in it (for logs).
  static func write(
    _ bytes: UnsafeRawBufferPointer, _ head: RawHead, framing: RequestFraming,
    holder: (visitor: VisitorID, pass: Range<Int>)?, client: ClientForwarding, requestNumber: Int,
    allocator: ByteBufferAllocator
  ) -> (ByteBuffer, Range<Int>) {
    let (method, target, version) = head.start
    var out = allocator.buffer(capacity: head.length + 320)
    var copier = RunWriter(bytes)
    if bytes[version.upperBound - 1] == UInt8(ascii: "1") {
      // `method SP target SP HTTP/1.1 CRLF` exactly, as the reader took it.
      copier.copy(0..<(version.upperBound + 2), to: &out)
    } else {
      // An HTTP/1.0 client's request goes on as HTTP/1.0 (as nginx sends it): the upstream
      // then answers without chunks, which such a client could not read.
      out.writeBytes(UnsafeRawBufferPointer(rebasing: bytes[method]))
      out.writeStaticString(" ")
      out.writeBytes(UnsafeRawBufferPointer(rebasing: bytes[target]))
      out.writeStaticString(" HTTP/1.0\r\n")
    }
    let listed = connectionOptions(bytes, head)
    var forwardedFor: [Range<Int>] = []
    var givenID: Range<Int>?
    for field in head.fields {
      func named(_ lowercase: StaticString) -> Bool {
        RawHTTP.equals(bytes, field.name, lowercase: lowercase)
      }
      let name = bytes[field.name]
      if ForwardingHeaders.isHopByHop(name) || named("content-length") || named("transfer-encoding")
        || named("expect") || named("foyer-pass") || named("foyer-visitor") || named("x-forwarded-proto")
        || (!listed.isEmpty && listed.contains { ForwardingHeaders.equalsIgnoringCase(bytes[$0], name) })
      {
        continue
      } else if named("x-forwarded-for") {
        forwardedFor.append(field.value)
        continue
      } else if named("x-request-id") {
        if givenID == nil { givenID = field.value }
        continue
      } else if named("cookie") {
        let value = bytes[field.value]
        if Cookies.hasGatewayCookie(inHeader: value) {
          copier.flush(&out)
          var first = true
          for pair in Cookies.foreignPairs(inHeader: value) {
            out.writeStaticString(first ? "cookie: " : "; ")
            out.writeBytes(UnsafeRawBufferPointer(rebasing: bytes[pair]))
            first = false
          }
          if !first { out.writeStaticString("\r\n") }
          continue
        }
      }
      copier.copy(field.line, to: &out)
    }
    copier.flush(&out)
    switch framing {
    case .none: break
    case .length(let length):
      out.writeStaticString("content-length: ")
      out.writeString(String(length))
      out.writeStaticString("\r\n")
    case .chunked:
      out.writeStaticString("transfer-encoding: chunked\r\n")
    }
    if let holder {
      out.writeStaticString("foyer-visitor: ")
      out.writeString(holder.visitor.description)
      out.writeStaticString("\r\nfoyer-pass: ")
      out.writeBytes(UnsafeRawBufferPointer(rebasing: bytes[holder.pass]))
      out.writeStaticString("\r\n")
    }
    out.writeStaticString("x-forwarded-for: ")
    for prior in forwardedFor where !prior.isEmpty {
      out.writeBytes(UnsafeRawBufferPointer(rebasing: bytes[prior]))
      out.writeStaticString(", ")
    }
    out.writeString(client.address)
    out.writeStaticString("\r\n")
    out.writeString(client.tail)
    out.writeStaticString("x-request-id: ")
    let idStart = out.writerIndex - out.readerIndex
    if let givenID = givenID.flatMap({ isSaneID(bytes[$0]) ? $0 : nil }) {
      out.writeBytes(UnsafeRawBufferPointer(rebasing: bytes[givenID]))
    } else {
      out.writeString(client.connectionTag)
      out.writeStaticString("-")
      out.writeString(String(requestNumber))
    }
    let idRange = idStart..<(out.writerIndex - out.readerIndex)
    out.writeStaticString("\r\n\r\n")
    return (out, idRange)
  }

  /// A client's `X-Request-Id` is kept if it is 1–128 visible ASCII bytes.
  static func isSaneID<Bytes: Collection<UInt8>>(_ id: Bytes) -> Bool {
    (1...128).contains(id.count) && id.allSatisfy { $0 > 0x20 && $0 < 0x7f }
  }

  /// The names a `Connection` field lists for this hop (RFC 9110 §7.6.1); almost always
  /// none (`keep-alive`, `close`).
  private static func connectionOptions(_ bytes: UnsafeRawBufferPointer, _ head: RawHead) -> [Range<Int>] {
    var listed: [Range<Int>] = []
    for field in head.fields where RawHTTP.equals(bytes, field.name, lowercase: "connection") {
      if RawHTTP.equals(bytes, field.value, lowercase: "keep-alive")
        || RawHTTP.equals(bytes, field.value, lowercase: "close")
      {
        continue
      }
      for token in bytes[field.value].split(separator: UInt8(ascii: ",")) {
        let trimmed = RawHTTP.trim(token)
        if !trimmed.isEmpty && ForwardingHeaders.dropsListedName(bytes[trimmed]) { listed.append(trimmed) }
      }
    }
    return listed
  }

  /// A head NIOHTTP1 read, as bytes for `write` and `RawHTTP.request`: the request line and
  /// each field as `name: value`, in the order they came.
  static func serialize(_ head: HTTPRequestHead, allocator: ByteBufferAllocator) -> ByteBuffer {
    var out = allocator.buffer(capacity: 512)
    out.writeString(head.method.rawValue)
    out.writeStaticString(" ")
    out.writeString(head.uri)
    out.writeStaticString(head.version.minor == 0 ? " HTTP/1.0\r\n" : " HTTP/1.1\r\n")
    for (name, value) in head.headers {
      out.writeString(name)
      out.writeStaticString(": ")
      out.writeString(value)
      out.writeStaticString("\r\n")
    }
    out.writeStaticString("\r\n")
    return out
  }
}
