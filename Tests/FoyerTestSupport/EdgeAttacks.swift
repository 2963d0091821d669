/// Requests an attacker sends at the gateway's edge (issue #15), each with what must happen.
/// `{P}` is a protected room's path prefix, `{H}` the Host, `{PASS}` a valid pass for the room,
/// `{R}` the room id; `/after` and `/public…` are outside every room.
public struct EdgeAttack: Sendable, CustomStringConvertible {
  public enum Expectation: Sendable {
    /// Answered with one of these statuses, the connection closed, nothing forwarded (not
    /// even what was pipelined behind it).
    case refused([Int])
    /// Answered by the queue (the room's JSON status); nothing forwarded.
    case queued
    /// The upstream saw exactly these requests, `METHOD target bodyLength`, and the client got
    /// one answer for each, in order.
    case forwarded([String])
  }

  public var name: String
  public var request: String
  public var expect: Expectation
  public var description: String { name }

  public init(_ name: String, _ request: String, _ expect: Expectation) {
    self.name = name
    self.request = request
    self.expect = expect
  }

  /// The request with its placeholders filled.
  public func bytes(prefix: String, host: String, room: String, pass: String) -> [UInt8] {
    Array(
      request.replacingAll("{P}", with: prefix).replacingAll("{H}", with: host)
        .replacingAll("{R}", with: room).replacingAll("{PASS}", with: pass).utf8)
  }

  static let json = "Accept: application/json\r\n"
  static let after = "GET /after HTTP/1.1\r\nHost: {H}\r\n\r\n"
  /// A request hidden in a body: if the gateway's framing and the upstream's disagree, the
  /// upstream reads it as the next request, with a forged visitor.
  static let hidden = "GET /smuggled HTTP/1.1\r\nHost: x\r\nFoyer-Visitor: 00000000000000000000000000000000\r\n\r\n"
  static let hiddenChunked = "\(String(hidden.utf8.count, radix: 16))\r\n\(hidden)\r\n0\r\n\r\n"

  static func get(_ target: String, version: String = "1.1", extra: String = json) -> String {
    "GET \(target) HTTP/\(version)\r\nHost: {H}\r\n\(extra)\r\n"
  }

  static func withPass(_ target: String) -> String { get(target, extra: "Foyer-Pass: {PASS}\r\n") }

  static func chunked(_ method: String, _ coding: String, path: String = "/public/a") -> String {
    "\(method) \(path) HTTP/1.1\r\nHost: {H}\r\nTransfer-Encoding: \(coding)\r\n\r\n\(hiddenChunked)" + after
  }

  /// At least 40 requests over every mechanism of the issue: re-framing, path forms, methods
  /// and versions, cookie spellings. Passes given back and passthrough bodies have tests of
  /// their own (they need state).
  public static let corpus: [EdgeAttack] = [
    // 1. Re-framing: every body is framed by the gateway, or the request is refused.
    EdgeAttack(
      "TRACE with a body",
      "TRACE / HTTP/1.1\r\nHost: {H}\r\nContent-Length: \(hidden.utf8.count)\r\n\r\n\(hidden)" + after,
      .refused([400])),
    EdgeAttack("TRACE chunked", chunked("TRACE", "chunked"), .refused([400])),
    EdgeAttack(
      "GET, Transfer-Encoding: Chunked", chunked("GET", "Chunked"),
      .forwarded(["GET /public/a \(hidden.utf8.count)", "GET /after 0"])),
    EdgeAttack(
      "GET, Transfer-Encoding: CHUNKED", chunked("GET", "CHUNKED"),
      .forwarded(["GET /public/a \(hidden.utf8.count)", "GET /after 0"])),
    EdgeAttack(
      "DELETE, Transfer-Encoding: Chunked", chunked("DELETE", "Chunked"),
      .forwarded(["DELETE /public/a \(hidden.utf8.count)", "GET /after 0"])),
    EdgeAttack(
      "OPTIONS, Transfer-Encoding: chunked", chunked("OPTIONS", "chunked"),
      .forwarded(["OPTIONS /public/a \(hidden.utf8.count)", "GET /after 0"])),
    EdgeAttack(
      "POST, Transfer-Encoding: chunked to a pass holder's room path",
      "POST {P}/buy HTTP/1.1\r\nHost: {H}\r\nFoyer-Pass: {PASS}\r\nTransfer-Encoding: chunked\r\n\r\n\(hiddenChunked)"
        + after,
      .forwarded(["POST {P}/buy \(hidden.utf8.count)", "GET /after 0"])),
    EdgeAttack("gzip, chunked", chunked("GET", "gzip, chunked"), .refused([400, 501])),
    EdgeAttack("identity, chunked", chunked("POST", "identity, chunked"), .refused([400, 501])),
    EdgeAttack(
      "two Transfer-Encoding fields",
      "POST /public/a HTTP/1.1\r\nHost: {H}\r\nTransfer-Encoding: gzip\r\nTransfer-Encoding: chunked\r\n\r\n"
        + hiddenChunked + after,
      .refused([400, 501])),
    EdgeAttack("chunked, then gzip", chunked("POST", "chunked, gzip"), .refused([400, 501])),
    EdgeAttack(
      "Transfer-Encoding and Content-Length",
      "POST /public/a HTTP/1.1\r\nHost: {H}\r\nContent-Length: 4\r\nTransfer-Encoding: chunked\r\n\r\n"
        + hiddenChunked + after,
      .refused([400])),
    EdgeAttack(
      "two different Content-Lengths",
      "POST /public/a HTTP/1.1\r\nHost: {H}\r\nContent-Length: 4\r\nContent-Length: 5\r\n\r\nabcde" + after,
      .refused([400])),
    EdgeAttack(
      "a signed Content-Length",
      "POST /public/a HTTP/1.1\r\nHost: {H}\r\nContent-Length: +4\r\n\r\nabcd" + after, .refused([400])),
    EdgeAttack(
      "chunked in HTTP/1.0",
      "POST /public/a HTTP/1.0\r\nHost: {H}\r\nTransfer-Encoding: chunked\r\n\r\n" + hiddenChunked + after,
      .refused([400])),
    EdgeAttack(
      "Transfer-Encoding folded over two lines",
      "POST /public/a HTTP/1.1\r\nHost: {H}\r\nTransfer-Encoding: gzip,\r\n chunked\r\n\r\n" + hiddenChunked + after,
      .refused([400, 501])),
    EdgeAttack(
      "Transfer-Encoding with a space before the colon",
      "POST /public/a HTTP/1.1\r\nHost: {H}\r\nTransfer-Encoding : chunked\r\n\r\n" + hiddenChunked + after,
      .refused([400])),
    EdgeAttack(
      "a GET's Content-Length body is its body",
      "GET /public/a HTTP/1.1\r\nHost: {H}\r\nContent-Length: \(hidden.utf8.count)\r\n\r\n\(hidden)" + after,
      .forwarded(["GET /public/a \(hidden.utf8.count)", "GET /after 0"])),
    EdgeAttack(
      "chunk extensions and trailers (a forged visitor in a trailer is dropped)",
      "POST /public/a HTTP/1.1\r\nHost: {H}\r\nTransfer-Encoding: chunked\r\n\r\n4;ext=1\r\nabcd\r\n0\r\nFoyer-Visitor: 00000000000000000000000000000000\r\nX-Checksum: 1\r\n\r\n"
        + after,
      .forwarded(["POST /public/a 4 trailers=X-Checksum", "GET /after 0"])),

    // 2. Path forms: rooms match the canonical path, which is what goes upstream.
    EdgeAttack("empty first segment", get("/{P}"), .queued),
    EdgeAttack("three slashes and a query", get("///{P}?x=1"), .queued),
    EdgeAttack("empty segment inside", get("/{P}//a"), .queued),
    EdgeAttack("dot-dot from elsewhere", get("/x/..{P}"), .queued),
    EdgeAttack("two dot-dots", get("/a/b/../..{P}/c"), .queued),
    EdgeAttack("a dot segment", get("/.{P}"), .queued),
    EdgeAttack("encoded dots", get("/x/%2e%2e{P}"), .queued),
    EdgeAttack("upper-case encoded dot", get("/%2E{P}"), .queued),
    EdgeAttack("an encoded letter", get("{P}".replacingAll("/s", with: "/%73")), .queued),
    EdgeAttack("upper-case path", get("{P}".uppercased()), .queued),
    EdgeAttack("out of the gateway's own endpoints", get("/_foyer/..{P}"), .queued),
    EdgeAttack("absolute-form", get("http://{H}{P}/a"), .queued),
    EdgeAttack("absolute-form, upper-case scheme", get("HTTP://{H}{P}"), .queued),
    EdgeAttack("absolute-form in HTTP/1.0 without Host", "GET http://{H}{P} HTTP/1.0\r\n\(json)\r\n", .queued),
    EdgeAttack("HTTP/1.0 without Host", "GET {P} HTTP/1.0\r\n\(json)\r\n", .queued),
    EdgeAttack("an encoded slash", get("/%2F{P}"), .refused([400])),
    EdgeAttack("dot-dot and an encoded slash", get("/x/..%2F{P}"), .refused([400])),
    EdgeAttack("an encoded backslash", get("/x%5C..{P}"), .refused([400])),
    EdgeAttack("a raw backslash", get("/x\\..{P}"), .refused([400])),
    EdgeAttack("an encoded NUL", get("{P}%00"), .refused([400])),
    EdgeAttack("a malformed escape", get("{P}%zz"), .refused([400])),
    EdgeAttack("a cut-off escape", get("{P}%6"), .refused([400])),
    EdgeAttack("absolute-form for another host", get("http://elsewhere.example{P}"), .refused([400])),
    EdgeAttack("absolute-form with user info", get("http://user@{H}{P}"), .refused([400])),
    EdgeAttack("asterisk with GET", get("*"), .refused([400])),
    EdgeAttack(
      "pass holder's dot-dot path goes upstream canonical", withPass("/x/..{P}/a"),
      .forwarded(["GET {P}/a 0"])),
    EdgeAttack(
      "pass holder's empty segments and encoded query", withPass("/{P}//a?q=%2F"),
      .forwarded(["GET {P}/a?q=%2F 0"])),
    EdgeAttack(
      "pass holder's absolute-form", withPass("http://{H}{P}/b?x"), .forwarded(["GET {P}/b?x 0"])),
    EdgeAttack("an unprotected encoded letter", get("/public/%41%7e"), .forwarded(["GET /public/A~ 0"])),

    // 6. Methods and versions.
    EdgeAttack("CONNECT", "CONNECT {H}:443 HTTP/1.1\r\nHost: {H}:443\r\n\r\n", .refused([405])),
    EdgeAttack("HTTP/1.2", get("{P}", version: "1.2"), .refused([400, 505])),
    EdgeAttack("HTTP/1.1 without Host", "GET {P} HTTP/1.1\r\n\(json)\r\n" + after, .refused([400])),
    EdgeAttack(
      "two Hosts", "GET {P} HTTP/1.1\r\nHost: {H}\r\nHost: other\r\n\(json)\r\n" + after, .refused([400])),

    // 5. Cookie spellings: the gateway's cookies never reach the upstream.
    EdgeAttack(
      "cookies after tabs and in other cases",
      "GET /public/c HTTP/1.1\r\nHost: {H}\r\nCookie: a=1;\tfoyer_p_{R}={PASS}; \t foyer_v_{R}=x;FOYER_P_{R}=y\r\n\r\n",
      .forwarded(["GET /public/c 0 cookie=a=1"])),
  ]
}

extension String {
  func replacingAll(_ target: String, with replacement: String) -> String {
    split(separator: target, omittingEmptySubsequences: false).joined(separator: replacement)
  }
}
