/// The OpenAPI 3.1 documents of the gateway's two listeners, as committed next to this file
/// and embedded at build time (no resource bundle to lose when the binary is copied).
public enum OpenAPIDocuments {
  /// The admin API, served at `GET /openapi.json` on the admin listener.
  public static var admin: [UInt8] { PackageResources.admin_openapi_json }
  /// The `/_foyer/*` endpoints, served at `GET /_foyer/openapi.json` on the public listener.
  public static var `public`: [UInt8] { PackageResources.public_openapi_json }
}
