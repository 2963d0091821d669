public import Foundation

#if canImport(FoundationNetworking)
public import FoundationNetworking
#endif

/// An HTTP answer as tests read it: header names lowercased.
public struct HTTPReply: Sendable {
  public let status: Int
  public let headers: [String: String]
  public let body: Data

  public var text: String { String(decoding: body, as: UTF8.self) }
  public var json: [String: Any] { (try? JSONSerialization.jsonObject(with: body)) as? [String: Any] ?? [:] }
}

/// One request, without any cookie jar (tests pass and read cookies by hand). Every test
/// suite's own helper is a thin layer over this one.
public func httpRequest(
  _ method: String, _ url: String, headers: [String: String] = [:], body: Data? = nil,
  session: URLSession? = nil
) async throws -> HTTPReply {
  var request = URLRequest(url: URL(string: url)!)
  request.httpMethod = method
  request.httpShouldHandleCookies = false
  for (name, value) in headers { request.setValue(value, forHTTPHeaderField: name) }
  request.httpBody = body
  let session =
    session
    ?? {
      let configuration = URLSessionConfiguration.ephemeral
      configuration.httpCookieStorage = nil
      return URLSession(configuration: configuration)
    }()
  let (data, response) = try await session.data(for: request)
  let http = response as! HTTPURLResponse
  var fields: [String: String] = [:]
  for (name, value) in http.allHeaderFields { fields["\(name)".lowercased()] = "\(value)" }
  return HTTPReply(status: http.statusCode, headers: fields, body: data)
}
