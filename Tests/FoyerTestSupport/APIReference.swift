import Foundation

/// `docs/api.md`, rendered from the servers' OpenAPI documents, so the prose reference cannot
/// drift from what the servers serve: `APIContractTests` compares the file with this text, and
/// `FOYER_WRITE_API_DOC=1` writes it instead.
public enum APIReference {
  public struct Document {
    public var heading: String
    public var servedAt: String
    public var json: [UInt8]

    public init(heading: String, servedAt: String, json: [UInt8]) {
      self.heading = heading
      self.servedAt = servedAt
      self.json = json
    }
  }

  static let methods = ["get", "head", "post", "put", "patch", "delete"]

  public static func render(_ documents: [Document]) throws -> String {
    var out = """
      # HTTP interfaces

      Generated from the OpenAPI 3.1 documents the servers serve (`Sources/*/OpenAPI/*.json`);
      `APIContractTests` fails when this file and the documents differ, and
      `FOYER_WRITE_API_DOC=1 scripts/services.sh swift test --filter APIContractTests` rewrites it.
      The same tests check that every route the servers register is described, and run
      schemathesis against the live servers.

      """
    for document in documents {
      out += try render(document)
    }
    return out
  }

  static func render(_ document: Document) throws -> String {
    guard let root = try JSONSerialization.jsonObject(with: Data(document.json)) as? [String: Any],
      let info = root["info"] as? [String: Any], let paths = root["paths"] as? [String: [String: Any]]
    else { throw CocoaError(.coderReadCorrupt) }
    var out = "\n## \(document.heading)\n\n"
    out += "Served at `\(document.servedAt)` (\(info["title"] as? String ?? ""), version \(info["version"] as? String ?? "")).\n\n"
    if let text = info["description"] as? String { out += text + "\n" }
    let schemes = ((root["components"] as? [String: Any])?["securitySchemes"] as? [String: [String: Any]]) ?? [:]
    let defaultSecurity = root["security"] as? [[String: Any]]
    for path in paths.keys.sorted() {
      let item = paths[path]!
      for method in methods {
        guard let operation = item[method] as? [String: Any] else { continue }
        out += "\n### `\(method.uppercased()) \(path)`\n\n"
        out += "**\(operation["summary"] as? String ?? "")**"
        if let id = operation["operationId"] as? String { out += " (`\(id)`)" }
        out += "\n\n"
        if let text = operation["description"] as? String { out += text + "\n\n" }
        let security = (operation["security"] as? [[String: Any]]) ?? defaultSecurity ?? []
        let names = security.flatMap(\.keys).sorted()
        out += "Credentials: " + (names.isEmpty ? "none" : names.map { credential($0, schemes[$0]) }.joined(separator: " or "))
        out += ".\n\n"
        let parameters = (operation["parameters"] as? [[String: Any]] ?? []) + (item["parameters"] as? [[String: Any]] ?? [])
        if !parameters.isEmpty {
          out += "| parameter | in | required | meaning |\n| --- | --- | --- | --- |\n"
          for parameter in parameters {
            out += "| `\(parameter["name"] as? String ?? "")` | \(parameter["in"] as? String ?? "") | "
            out += "\((parameter["required"] as? Bool ?? false) ? "yes" : "no") | \(cell(parameter["description"])) |\n"
          }
          out += "\n"
        }
        if let body = operation["requestBody"] as? [String: Any] {
          out += "Body: \(content(body["content"]))"
          if let text = body["description"] as? String { out += ". \(text)" }
          out += "\n\n"
        }
        out += "| status | meaning | body |\n| --- | --- | --- |\n"
        let responses = operation["responses"] as? [String: [String: Any]] ?? [:]
        for status in responses.keys.sorted() {
          let response = responses[status]!
          out += "| \(status) | \(cell(response["description"])) | \(content(response["content"])) |\n"
        }
      }
    }
    if let schemas = (root["components"] as? [String: Any])?["schemas"] as? [String: [String: Any]], !schemas.isEmpty {
      out += "\n### Schemas\n"
      for name in schemas.keys.sorted() {
        let schema = schemas[name]!
        out += "\n#### `\(name)`\n\n"
        if let text = schema["description"] as? String { out += text + "\n\n" }
        guard let properties = schema["properties"] as? [String: [String: Any]], !properties.isEmpty else {
          out += "A \(type(schema)).\n"
          continue
        }
        let required = Set(schema["required"] as? [String] ?? [])
        out += "| field | type | required | meaning |\n| --- | --- | --- | --- |\n"
        for field in properties.keys.sorted() {
          let property = properties[field]!
          out += "| `\(field)` | \(type(property)) | \(required.contains(field) ? "yes" : "no") | \(cell(property["description"])) |\n"
        }
      }
    }
    return out
  }

  static func credential(_ name: String, _ scheme: [String: Any]?) -> String {
    guard let scheme else { return "`\(name)`" }
    if scheme["type"] as? String == "http" { return "`Authorization: Bearer …` (`\(name)`)" }
    if let header = scheme["name"] as? String { return "`\(header)` \(scheme["in"] as? String ?? "") (`\(name)`)" }
    return "`\(name)`"
  }

  static func content(_ value: Any?) -> String {
    guard let content = value as? [String: [String: Any]], !content.isEmpty else { return "—" }
    return content.keys.sorted().map { media in
      let schema = content[media]?["schema"] as? [String: Any]
      return schema.map { "\(media) \(type($0))" } ?? media
    }.joined(separator: ", ")
  }

  /// A schema's type in a few words: a `$ref`'s name, `array of …`, or its JSON type.
  static func type(_ schema: [String: Any]) -> String {
    if let ref = schema["$ref"] as? String { return "`\(ref.split(separator: "/").last ?? "")`" }
    if let items = schema["items"] as? [String: Any] { return "array of \(type(items))" }
    for key in ["oneOf", "anyOf"] {
      if let options = schema[key] as? [[String: Any]] { return options.map(type).joined(separator: " or ") }
    }
    if let values = schema["enum"] as? [Any] { return "one of " + values.map { "`\($0)`" }.joined(separator: ", ") }
    if let kind = schema["type"] as? String {
      return schema["format"].map { "\(kind) (\($0))" } ?? kind
    }
    if let kinds = schema["type"] as? [String] { return kinds.joined(separator: " or ") }
    return "any JSON"
  }

  static func cell(_ value: Any?) -> String {
    (value as? String ?? "").replacingOccurrences(of: "|", with: "\\|").replacingOccurrences(of: "\n", with: " ")
  }
}
