internal import HTTPWire
internal import NIOHTTP1

/// A request the gateway answers itself at its head and then closes the connection on: what
/// follows a head the gateway will not frame cannot be trusted to be the next request.
struct Refusal: Error, Equatable {
  var status: HTTPResponseStatus
  var code: String
  var message: String
  var allow: String?

  /// Every code a refusal has, for the metric's series.
  static let codes = [
    "version_not_supported", "method_not_allowed", "host_required", "bad_framing",
    "unsupported_transfer_coding", "bad_target", "body_too_large",
    // Joins refused: per-client limits (`Scripts.join`), invite-only rooms, bad solutions to a
    // challenge, traffic rules.
    "too_many_places", "too_many_visitors", "enqueue_token_required", "invalid_enqueue_token",
    "invalid_solution", "blocked",
    // A status poll sooner than its `pollAfterMs` allowed (`PollDiscipline`).
    "poll_too_soon",
  ]

  var json: String { "{\"error\":\"\(code)\",\"message\":\"\(message)\"}" }
}

/// How a request's body is delimited, as the gateway frames it to the upstream: the
/// received `Content-Length`, or chunked re-encoded by the gateway. Never the client's
/// header as it came.
enum RequestFraming: Equatable {
  case none
  case length(Int64)
  case chunked
}

/// The framing and form rules every request passes before anything else looks at it
/// (RFC 9112 §3, §6–7). One place, whichever parser read the head: the express lane leaves
/// every head with a body, an unusual method or version to the NIOHTTP1 path, which asks here.
enum RequestRules {
  static let allowedMethods = "GET, HEAD, POST, PUT, PATCH, DELETE, OPTIONS"

  /// The body framing of `head`, or why it is refused.
  static func framing(_ head: HTTPRequestHead) -> Result<RequestFraming, Refusal> {
    guard head.version.major == 1 && (head.version.minor == 0 || head.version.minor == 1) else {
      return .failure(
        Refusal(
          status: .httpVersionNotSupported, code: "version_not_supported",
          message: "only HTTP/1.0 and HTTP/1.1 are served"))
    }
    if head.method == .CONNECT {
      return .failure(
        Refusal(
          status: .methodNotAllowed, code: "method_not_allowed",
          message: "CONNECT is not served by this gateway", allow: allowedMethods))
    }
    if head.version.minor == 1 {
      var hosts = 0
      for field in head.headers where ForwardingHeaders.equalsLowercase(field.name.utf8, "host") { hosts += 1 }
      if hosts != 1 {
        return .failure(
          Refusal(
            status: .badRequest, code: "host_required",
            message: "an HTTP/1.1 request carries exactly one Host header"))
      }
    }
    let codings = head.headers[canonicalForm: "transfer-encoding"]
    let lengths = head.headers["content-length"]
    let framing: RequestFraming
    if head.headers.contains(name: "transfer-encoding") {
      guard head.version.minor == 1 else {
        return .failure(badFraming("Transfer-Encoding is not allowed in HTTP/1.0"))
      }
      guard lengths.isEmpty else {
        return .failure(badFraming("Transfer-Encoding and Content-Length together"))
      }
      // Exactly one coding, `chunked`: any other coding would have to be undone or passed
      // on, and an upstream that reads the list differently reads a different body.
      guard let last = codings.last, ForwardingHeaders.equalsIgnoringCase(last, "chunked") else {
        return .failure(badFraming("the last transfer coding must be chunked"))
      }
      guard codings.count == 1 else {
        return .failure(
          Refusal(
            status: .notImplemented, code: "unsupported_transfer_coding",
            message: "only the chunked transfer coding is accepted"))
      }
      framing = .chunked
    } else if let first = lengths.first {
      guard let length = contentLength(first), lengths.allSatisfy({ contentLength($0) == length }) else {
        return .failure(badFraming("Content-Length must be one decimal number"))
      }
      framing = length == 0 ? .none : .length(length)
    } else {
      framing = .none
    }
    if head.method == .TRACE && framing != .none {
      return .failure(badFraming("a TRACE request has no body"))
    }
    return .success(framing)
  }

  /// `head` as the gateway routes and forwards it: its target canonical (see
  /// `CanonicalTarget`), absolute-form turned into origin-form with its authority checked
  /// against (or, in HTTP/1.0 without one, made) the `Host`.
  static func canonical(_ head: HTTPRequestHead) -> Result<HTTPRequestHead, Refusal> {
    if head.uri == "*" {
      guard head.method == .OPTIONS else {
        return .failure(badTarget("the asterisk target is for OPTIONS only"))
      }
      return .success(head)
    }
    switch CanonicalTarget.canonicalize(head.uri) {
    case .canonical:
      return .success(head)
    case .refused(let message):
      return .failure(badTarget(message))
    case .rewritten(let target, let authority):
      var head = head
      head.uri = target
      if let authority {
        if let host = head.headers.first(name: "host") {
          guard CanonicalTarget.normalizedHost(host[...]) == CanonicalTarget.normalizedHost(authority[...])
          else { return .failure(badTarget("the target's authority is not the Host")) }
        } else {
          head.headers.add(name: "host", value: authority)
        }
      }
      return .success(head)
    }
  }

  private static func contentLength(_ value: String) -> Int64? {
    guard !value.isEmpty, value.utf8.count <= 18, value.utf8.allSatisfy({ $0 >= 0x30 && $0 <= 0x39 }) else {
      return nil
    }
    return Int64(value)
  }

  private static func badFraming(_ message: String) -> Refusal {
    Refusal(status: .badRequest, code: "bad_framing", message: message)
  }

  private static func badTarget(_ message: String) -> Refusal {
    Refusal(status: .badRequest, code: "bad_target", message: message)
  }
}
