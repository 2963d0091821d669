internal import AsyncHTTPClient
internal import Foundation
internal import NIOCore
internal import NIOHTTP1

/// An answer as a visitor sees it.
struct Reply {
  var status: Int
  var headers: HTTPHeaders
  var body: ByteBuffer

  var text: String { String(buffer: body) }

  func decode<T: Decodable>(_ type: T.Type) -> T? {
    try? JSONDecoder().decode(type, from: Data(body.readableBytesView))
  }

  /// The gateway's own answer (status JSON, which it writes starting with its room), as
  /// opposed to one forwarded from upstream. A prefix test, not a decode: seat maps are large.
  var isGatewayStatus: Bool {
    body.readableBytes < 4_096 && body.readableBytesView.starts(with: Self.statusPrefix)
      && decode(GatewayStatus.self) != nil
  }
  private static let statusPrefix = Array(#"{"room":""#.utf8)
  /// The gateway's `429 poll_too_soon`: a visitor who asked again sooner than told.
  var isPollTooSoon: Bool {
    status == 429 && body.readableBytesView.starts(with: Self.tooSoonPrefix)
  }
  private static let tooSoonPrefix = Array(#"{"error":"poll_too_soon""#.utf8)
}

/// `GET /_foyer/status` (and the JSON waiting answer), as DESIGN §5 defines it.
struct GatewayStatus: Decodable {
  var room: String
  var state: String
  var position: Int?
  var pollAfterMs: Int
  var admitted: Bool
  var pass: String?
  /// A new visitor's proof-of-work challenge, and its difficulty.
  var challenge: String?
  var bits: Int?
}

/// One visitor's HTTP side: its cookie jar and the shared client. A value per visitor; the
/// connection pool is shared by the whole crowd. With several gateways, each request goes to
/// the next one (the cookies are the same host's: gateways on one name behind a balancer).
struct Browser {
  let client: HTTPClient
  let bases: [String]
  private var turn: Int
  let recorder: Recorder
  /// name → value, as a browser would keep them for the gateway's host.
  var cookies: [String: String] = [:]
  /// The client's address, told to the gateway in `X-Forwarded-For` (the simulator is its
  /// trusted proxy).
  var forwardedFor: String?

  init(client: HTTPClient, bases: [String], first: Int, recorder: Recorder) {
    self.client = client
    self.bases = bases
    self.turn = first % bases.count
    self.recorder = recorder
  }

  /// Sends a request with the jar's cookies, stores the cookies set by the answer, and
  /// records latency and status. `nil` after a transport error (counted).
  mutating func send(
    _ kind: RequestKind, _ method: HTTPMethod, _ path: String, headers: [(String, String)] = [],
    body: String? = nil, cookies sendCookies: Bool = true, keepCookies: Bool = true
  ) async -> Reply? {
    var request = HTTPClientRequest(url: bases[turn] + path)
    turn = (turn + 1) % bases.count
    request.method = method
    request.headers.add(name: "accept", value: "application/json")
    if let forwardedFor { request.headers.add(name: "x-forwarded-for", value: forwardedFor) }
    for (name, value) in headers { request.headers.replaceOrAdd(name: name, value: value) }
    if sendCookies, !cookies.isEmpty {
      request.headers.add(
        name: "cookie", value: cookies.map { "\($0.key)=\($0.value)" }.joined(separator: "; "))
    }
    if let body {
      request.headers.add(name: "content-type", value: "application/json")
      request.body = .bytes(ByteBuffer(string: body))
    }
    let started = ContinuousClock.now
    do {
      // No per-request timer: with thousands of requests in flight, NIO's scheduled-task heap
      // became the simulator's hottest code. A hung request is cut off by the run's deadline.
      let response = try await client.execute(request, deadline: .distantFuture)
      let bytes = try await response.body.collect(upTo: 16 << 20)
      let elapsed = ContinuousClock.now - started
      let reply = Reply(status: Int(response.status.code), headers: response.headers, body: bytes)
      recorder.request(kind, status: reply.status, microseconds: Self.microseconds(elapsed))
      if reply.status >= 500 {
        recorder.violation(
          .serverError,
          "\(kind.rawValue) \(method.rawValue) \(path) → \(reply.status): \(reply.text.prefix(120))")
      }
      if keepCookies { store(reply.headers) }
      return reply
    } catch {
      recorder.transportError(kind, error)
      return nil
    }
  }

  /// `send` from a copy of this jar, leaving this one as it was: for concurrent requests and
  /// for requests whose cookies must not stick.
  func sendCopy(
    _ kind: RequestKind, _ method: HTTPMethod, _ path: String, headers: [(String, String)] = [],
    body: String? = nil
  ) async -> Reply? {
    var copy = self
    return await copy.send(kind, method, path, headers: headers, body: body, keepCookies: false)
  }

  /// Applies `Set-Cookie` headers: a value, or a removal (`Max-Age=0` or an empty value).
  mutating func store(_ headers: HTTPHeaders) {
    for header in headers["set-cookie"] {
      let pair = header.prefix { $0 != ";" }
      guard let equals = pair.firstIndex(of: "=") else { continue }
      let name = String(pair[..<equals]).trimmingCharacters(in: .whitespaces)
      let value = String(pair[pair.index(after: equals)...])
      if value.isEmpty || header.lowercased().contains("max-age=0") {
        cookies[name] = nil
      } else {
        cookies[name] = value
      }
    }
  }

  static func microseconds(_ duration: Duration) -> UInt64 {
    let (seconds, attoseconds) = duration.components
    return UInt64(max(seconds, 0)) * 1_000_000 + UInt64(max(attoseconds, 0) / 1_000_000_000_000)
  }
}
