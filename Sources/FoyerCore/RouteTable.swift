/// An HTTP route as its API document writes it: a method and a path template such as
/// `/rooms/{id}`. The admin API dispatches on a table of these, and BoxOffice's router
/// answers a known path with the wrong method from one, so `405` with `Allow` and the
/// OpenAPI test both read the routes the servers really serve.
public struct Route: Sendable, Hashable, CustomStringConvertible {
  public let method: String
  public let template: String

  public init(_ method: String, _ template: String) {
    self.method = method
    self.template = template
  }

  public var description: String { "\(method) \(template)" }

  /// The template's segments: `nil` for a `{parameter}`, else the literal text.
  var segments: [Substring?] {
    Self.segments(of: template).map { $0.hasPrefix("{") && $0.hasSuffix("}") ? nil : $0 }
  }

  /// The path's values for the template's parameters, in order, or `nil` if it does not
  /// match. A parameter matches one non-empty segment; literals match exactly.
  public func parameters(of path: Substring) -> [Substring]? {
    let parts = Self.segments(of: path)
    let segments = self.segments
    guard parts.count == segments.count else { return nil }
    var values: [Substring] = []
    for (part, segment) in zip(parts, segments) {
      if let literal = segment {
        guard part == literal else { return nil }
      } else {
        guard !part.isEmpty else { return nil }
        values.append(part)
      }
    }
    return values
  }

  /// `/a//b/` has four segments, `a`, ``, `b`, ``: an empty segment is not skipped, so
  /// `/rooms/` is not `/rooms`.
  static func segments<S: StringProtocol>(of path: S) -> [Substring] where S.SubSequence == Substring {
    guard path.hasPrefix("/") else { return [path[...]] }
    return path.dropFirst().split(separator: "/", omittingEmptySubsequences: false)
  }
}

/// What a request's method and path are in a route table.
public enum RouteMatch<Name: Sendable>: Sendable {
  case route(Name, parameters: [Substring])
  /// The path is served, by other methods: the `Allow` value lists them.
  case methodNotAllowed(allow: String)
  case notFound
}

/// Routes and what each names, matched in order.
public struct RouteTable<Name: Sendable>: Sendable {
  public let entries: [(route: Route, name: Name)]
  /// `HEAD` is answered where `GET` is (RFC 9110 §9.3.2).
  public let headFromGet: Bool

  public init(_ entries: [(route: Route, name: Name)], headFromGet: Bool) {
    self.entries = entries
    self.headFromGet = headFromGet
  }

  /// Every method and template served, `HEAD` included where it is derived from `GET`.
  public var routes: [Route] {
    entries.flatMap { entry in
      headFromGet && entry.route.method == "GET"
        ? [entry.route, Route("HEAD", entry.route.template)] : [entry.route]
    }
  }

  public func match(method: String, path: Substring) -> RouteMatch<Name> {
    var allowed: Set<String> = []
    for (route, name) in entries {
      guard let parameters = route.parameters(of: path) else { continue }
      if route.method == method || (headFromGet && method == "HEAD" && route.method == "GET") {
        return .route(name, parameters: parameters)
      }
      allowed.insert(route.method)
      if headFromGet && route.method == "GET" { allowed.insert("HEAD") }
    }
    if allowed.isEmpty { return .notFound }
    return .methodNotAllowed(allow: Self.allowValue(allowed))
  }

  /// The methods in the order RFC 9110 lists them.
  static func allowValue(_ methods: Set<String>) -> String {
    let order = ["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"]
    func rank(_ method: String) -> Int { order.firstIndex(of: method) ?? order.count }
    return methods.sorted { (rank($0), $0) < (rank($1), $1) }.joined(separator: ", ")
  }
}
