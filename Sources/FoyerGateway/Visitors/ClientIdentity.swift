public import NIOCore
internal import NIOHTTP1

/// A block of addresses, `10.0.0.0/8` or `2001:db8::/32` (a bare address is its own block).
public struct AddressBlock: Sendable, Hashable, CustomStringConvertible {
  /// 4 bytes for IPv4, 16 for IPv6.
  let bytes: [UInt8]
  let prefix: Int

  public init?(_ text: String) {
    let parts = text.split(separator: "/", maxSplits: 1, omittingEmptySubsequences: false)
    guard let bytes = ClientIdentity.address(parts[0]) else { return nil }
    let bits = bytes.count * 8
    if parts.count == 2 {
      guard parts[1].allSatisfy({ $0.isASCII && $0.isNumber }), let prefix = Int(parts[1]), (0...bits).contains(prefix)
      else { return nil }
      self.prefix = prefix
    } else {
      self.prefix = bits
    }
    self.bytes = bytes
  }

  func contains(_ address: [UInt8]) -> Bool {
    guard address.count == bytes.count else { return false }
    var left = prefix
    for (a, b) in zip(address, bytes) where left > 0 {
      let mask: UInt8 = left >= 8 ? 0xFF : ~(0xFF >> UInt8(left))
      if a & mask != b & mask { return false }
      left -= 8
    }
    return true
  }

  public var description: String { "\(ClientIdentity.text(bytes))/\(prefix)" }
}

/// Who a client is, for the per-client limits (#16): the socket's peer, or — only when that
/// peer is a trusted proxy — the nearest address in `Forwarded` (else `X-Forwarded-For`)
/// that no trusted proxy added. IPv6 clients are grouped by /64, the block one subscriber is
/// given, so rotating through it gives no new identity.
enum ClientIdentity {
  /// The client's address (4 or 16 bytes); `nil` for a peer that is no IP socket (a Unix
  /// socket or an embedded test channel).
  static func address(peer: SocketAddress?, headers: HTTPHeaders, trusted: [AddressBlock]) -> [UInt8]? {
    guard var client = peer.flatMap(bytes(of:)) else { return nil }
    if !trusted.isEmpty {
      // Each proxy appends the address it was connected from: walk back from the right while
      // the hop that appended the value is trusted.
      let hops = forwardedHops(headers)
      for hop in hops.reversed() {
        guard trusted.contains(where: { $0.contains(client) }), let next = address(hop) else { break }
        client = next
      }
    }
    return client
  }

  /// What the per-client counters are named by: `a.b.c.d`, or the first four IPv6 groups and
  /// `::/64`.
  static func key(_ address: [UInt8]) -> String {
    if address.count == 4 { return text(address) }
    return text(Array(address.prefix(8))) + "::/64"
  }

  /// The hop addresses, leftmost (the original client) first: `Forwarded`'s `for=` values if
  /// any element has one (RFC 7239), else the `X-Forwarded-For` lists.
  static func forwardedHops(_ headers: HTTPHeaders) -> [Substring] {
    var hops: [Substring] = []
    for line in headers[canonicalForm: "forwarded"] {
      for element in line.split(separator: ",") {
        for pair in element.split(separator: ";") {
          let parts = pair.split(separator: "=", maxSplits: 1)
          guard parts.count == 2, parts[0].trimmingSpaces.lowercased() == "for" else { continue }
          var value = parts[1].trimmingSpaces
          if value.hasPrefix("\""), value.hasSuffix("\""), value.count >= 2 { value = value.dropFirst().dropLast() }
          hops.append(value)
        }
      }
    }
    if !hops.isEmpty { return hops }
    for line in headers[canonicalForm: "x-forwarded-for"] {
      hops += line.split(separator: ",").map(\.trimmingSpaces)
    }
    return hops
  }

  /// An IPv4 or IPv6 address as bytes, with an optional port (`1.2.3.4:80`, `[::1]:80`);
  /// IPv4-mapped IPv6 is the IPv4 address. NIO's `SocketAddress` (libc's `inet_pton`) parses.
  static func address(_ text: Substring) -> [UInt8]? {
    var host = text.trimmingSpaces
    if host.hasPrefix("[") {
      guard let end = host.firstIndex(of: "]") else { return nil }
      host = host[host.index(after: host.startIndex)..<end]
    } else if host.filter({ $0 == ":" }).count == 1 {
      host = host[..<host.firstIndex(of: ":")!]
    }
    guard !host.isEmpty, host.count <= 45, host.allSatisfy({ $0.isHexDigit || $0 == "." || $0 == ":" }),
      let parsed = try? SocketAddress(ipAddress: String(host), port: 0)
    else { return nil }
    return bytes(of: parsed)
  }

  /// The address's bytes, read at their offsets in `sockaddr_in` (4) and `sockaddr_in6` (8).
  static func bytes(of address: SocketAddress) -> [UInt8]? {
    switch address {
    case .v4(let v4):
      return withUnsafeBytes(of: v4.address) { Array($0[4..<8]) }
    case .v6(let v6):
      return unmapped(withUnsafeBytes(of: v6.address) { Array($0[8..<24]) })
    case .unixDomainSocket:
      return nil
    }
  }

  /// `::ffff:a.b.c.d` is the IPv4 client it carries.
  static func unmapped(_ bytes: [UInt8]) -> [UInt8] {
    bytes.count == 16 && bytes[0..<10].allSatisfy { $0 == 0 } && bytes[10] == 0xFF && bytes[11] == 0xFF
      ? Array(bytes[12...]) : bytes
  }

  /// Dotted IPv4, or IPv6 as eight groups of hex (not shortened: a key, not for people).
  static func text(_ bytes: [UInt8]) -> String {
    if bytes.count == 4 { return bytes.map(String.init).joined(separator: ".") }
    return stride(from: 0, to: bytes.count, by: 2).map {
      String(UInt16(bytes[$0]) << 8 | UInt16(bytes[$0 + 1]), radix: 16)
    }.joined(separator: ":")
  }
}

extension Substring {
  fileprivate var trimmingSpaces: Substring {
    var value = self
    while let first = value.first, first == " " || first == "\t" { value.removeFirst() }
    while let last = value.last, last == " " || last == "\t" { value.removeLast() }
    return value
  }
}
