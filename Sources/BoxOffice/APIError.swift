public import Foundation
public import HTTPTypes
public import Hummingbird

/// Every failure the API answers: a status and `{error, message, …}` (DESIGN §5). Anything
/// else thrown by a handler is a bug or an outage and becomes a logged `500`/`503` without
/// details.
public struct APIError: Error, Sendable, HTTPResponseError, CustomStringConvertible {
  public let status: HTTPResponse.Status
  public let code: String
  public let message: String
  /// Extra fields, e.g. the unavailable seats of a `409`: JSON values (numbers, strings,
  /// arrays of them).
  public var details: [String: any Sendable]
  public var extraHeaders: HTTPFields

  public init(
    _ status: HTTPResponse.Status, _ code: String, _ message: String, details: [String: any Sendable] = [:],
    headers: HTTPFields = [:]
  ) {
    self.status = status
    self.code = code
    self.message = message
    self.details = details
    self.extraHeaders = headers
  }

  public var description: String { "\(status.code) \(code): \(message)" }

  public var json: String {
    var object: [String: Any] = ["error": code, "message": message]
    for (key, value) in details { object[key] = value }
    let data = (try? JSONSerialization.data(withJSONObject: object, options: [.sortedKeys])) ?? Data()
    return String(decoding: data, as: UTF8.self)
  }

  public func response(from request: Request, context: some RequestContext) throws -> Response {
    var headers = extraHeaders
    headers[.contentType] = "application/json"
    headers[.cacheControl] = "no-store"
    return Response(status: status, headers: headers, body: .init(byteBuffer: ByteBuffer(string: json)))
  }

  /// PostgreSQL's text cannot hold U+0000: a client's NUL is refused here as its mistake,
  /// before a query fails on it as a `500`.
  static func checkText(_ value: String?, _ name: String) throws(APIError) {
    if let value, value.utf8.contains(0) {
      throw APIError(.badRequest, "invalid_text", "\(name) must not contain NUL characters")
    }
  }

  static func notFound(_ what: String) -> APIError {
    APIError(.notFound, "not_found", "no such \(what)")
  }
}
