internal import NIOHTTP1

/// Cookie handling for the gateway's own cookies (DESIGN §4).
enum Cookies {
  static func visitorName(room: String) -> String { "foyer_v_" + room }
  static func passName(room: String) -> String { "foyer_p_" + room }

  /// The value of cookie `name` in the request's `Cookie` headers, if present.
  static func value(named name: String, in headers: HTTPHeaders) -> Substring? {
    for header in headers["cookie"] {
      for pair in header.split(separator: ";") {
        let trimmed = pair.drop(while: { $0 == " " })
        guard trimmed.hasPrefix(name), trimmed.dropFirst(name.count).first == "=" else { continue }
        return trimmed.dropFirst(name.count + 1)
      }
    }
    return nil
  }

  /// A `Set-Cookie` value: `HttpOnly`, `SameSite=Lax`, `Path=/`, `Secure` when configured.
  static func setCookie(name: String, value: String, maxAge: Int64?, secure: Bool) -> String {
    var cookie = "\(name)=\(value); Path=/; HttpOnly; SameSite=Lax"
    if let maxAge { cookie += "; Max-Age=\(max(maxAge, 0))" }
    if secure { cookie += "; Secure" }
    return cookie
  }
}
