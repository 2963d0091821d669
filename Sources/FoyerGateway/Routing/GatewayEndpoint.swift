internal import FoyerCore

/// The gateway's own endpoints on the public listener, under `/_foyer/`: the handler
/// dispatches on this table, and the OpenAPI test checks it against `public.openapi.json`.
/// `HEAD` is served wherever `GET` is.
enum GatewayEndpoint: Sendable, CaseIterable {
  case healthz, readyz, status, leave, solve, openAPI

  var route: Route {
    switch self {
    case .healthz: Route("GET", "/_foyer/healthz")
    case .readyz: Route("GET", "/_foyer/readyz")
    case .status: Route("GET", "/_foyer/status")
    case .leave: Route("POST", "/_foyer/leave")
    case .solve: Route("POST", "/_foyer/solve")
    case .openAPI: Route("GET", "/_foyer/openapi.json")
    }
  }

  static let table = RouteTable(allCases.map { ($0.route, $0) }, headFromGet: true)
}
