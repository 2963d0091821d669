@testable import BoxOffice
import Foundation
import FoyerCore
@testable import FoyerGateway
import FoyerTestSupport
import Testing
import WaitingRoom

/// Issue #19: the OpenAPI documents of the admin API, the gateway's `/_foyer/*` endpoints and
/// BoxOffice say what the servers serve, no more and no less, and schemathesis's checks find
/// nothing against the live servers: no 5xx, no answer outside its schema, every error a
/// `{error, message}` JSON.
@Suite(.serialized, .timeLimit(.minutes(15))) struct APIContractTests {
  static let keyRing = try! KeyRing([SigningKey(id: "contract", secret: Array(repeating: 5, count: 32))])
  static let adminToken = "contract-admin-token-0123456789"
  static let boxOfficeToken = "contract-boxoffice-token-0123456789"
  static let staffToken = "contract-staff-token-0123456789"

  struct Document {
    var name: String
    var served: [UInt8]
    var file: String
    var routes: [Route]
  }

  static let documents = [
    Document(
      name: "admin", served: OpenAPIDocuments.admin, file: "Sources/FoyerGateway/OpenAPI/admin.openapi.json",
      routes: AdminRoute.table.routes),
    Document(
      name: "public", served: OpenAPIDocuments.public, file: "Sources/FoyerGateway/OpenAPI/public.openapi.json",
      routes: GatewayEndpoint.table.routes),
    Document(
      name: "boxoffice", served: BoxOfficeAPI.openAPIDocument,
      file: "Sources/BoxOffice/OpenAPI/boxoffice.openapi.json", routes: BoxOfficeRoute.table.routes),
  ]

  /// `"METHOD /template"` for every operation of a document.
  static func operations(_ document: [UInt8]) throws -> Set<String> {
    let object = try #require(try JSONSerialization.jsonObject(with: Data(document)) as? [String: Any])
    #expect(object["openapi"] as? String == "3.1.0")
    let paths = try #require(object["paths"] as? [String: [String: Any]])
    let methods = ["get", "head", "post", "put", "patch", "delete", "options"]
    return Set(paths.flatMap { path, item in item.keys.filter(methods.contains).map { "\($0.uppercased()) \(path)" } })
  }

  @Test func everyRouteIsDescribedAndEveryDescribedRouteIsServed() async throws {
    for document in Self.documents {
      let described = try Self.operations(document.served)
      #expect(Set(document.routes.map(\.description)) == described, "\(document.name)")
      // What is served is what is committed, byte for byte.
      let committed = try Data(contentsOf: ShippedMonitoring.root.appendingPathComponent(document.file))
      #expect(Array(committed) == document.served, "\(document.name)")
    }

    let stack = try await OnSaleStack.start(
      room: "contract", keyRing: Self.keyRing, adminToken: Self.adminToken,
      sections: [EventSpec.Section(name: "Floor", rows: 1, seatsPerRow: 4, priceCents: 1_000)],
      settings: RoomSettings(), boxOfficeAdminToken: Self.boxOfficeToken)
    defer { Task { await stack.stop() } }
    // BoxOffice's router is built from its table: the routes Hummingbird holds are the same.
    #expect(Set(stack.boxOffice.api.registeredRoutes()) == Set(BoxOfficeRoute.table.routes.map(\.description)))

    let bases = ["admin": stack.adminBase, "public": stack.base, "boxoffice": stack.boxOfficeBase]
    let pass = Self.pass(room: stack.room)
    for document in Self.documents {
      let base = try #require(bases[document.name])
      let headers = [
        "Authorization": "Bearer \(document.name == "admin" ? Self.adminToken : Self.boxOfficeToken)",
        "Foyer-Pass": pass, "Idempotency-Key": "probe", "Content-Type": "application/json",
      ]
      var paths: [String: Set<String>] = [:]
      for route in document.routes { paths[route.template, default: []].insert(route.method) }
      for (template, methods) in paths.sorted(by: { $0.key < $1.key }) {
        let path = Self.fill(template, room: stack.room)
        // Every described operation is answered by its handler, never "no such endpoint".
        for method in methods.sorted() {
          let reply = try await httpRequest(
            method, base + path, headers: headers, body: method == "POST" || method == "PATCH" ? Data("{}".utf8) : nil)
          #expect(reply.status != 405, "\(document.name): \(method) \(template)")
          #expect(!reply.text.contains("no such endpoint"), "\(document.name): \(method) \(template): \(reply.text)")
        }
        // A method it does not describe is 405, naming exactly the described ones.
        let other = try #require(["PUT", "PATCH", "DELETE", "POST"].first { !methods.contains($0) })
        let refused = try await httpRequest(other, base + path, headers: headers, body: Data("{}".utf8))
        #expect(refused.status == 405, "\(document.name): \(other) \(template): \(refused.status)")
        #expect(
          Set((refused.headers["allow"] ?? "").split(separator: ",").map { $0.trimmingCharacters(in: .whitespaces) })
            == methods, "\(document.name): \(template)")
        #expect(refused.json["error"] as? String == "method_not_allowed", "\(document.name): \(template)")
      }
    }
  }

  /// `docs/api.md` is the documents rendered: the prose reference says what the servers serve.
  @Test func theAPIReferenceIsRenderedFromTheDocuments() throws {
    let rendered = try APIReference.render([
      .init(heading: "Gateway: public endpoints", servedAt: "GET /_foyer/openapi.json", json: OpenAPIDocuments.public),
      .init(
        heading: "Gateway: admin API", servedAt: "GET /openapi.json on the admin listener", json: OpenAPIDocuments.admin),
      .init(heading: "BoxOffice", servedAt: "GET /openapi.json", json: BoxOfficeAPI.openAPIDocument),
    ])
    let file = ShippedMonitoring.root.appendingPathComponent("docs/api.md")
    if ProcessInfo.processInfo.environment["FOYER_WRITE_API_DOC"] == "1" {
      try rendered.write(to: file, atomically: true, encoding: .utf8)
    }
    let committed = try String(contentsOf: file, encoding: .utf8)
    #expect(committed == rendered, "docs/api.md is stale: run FOYER_WRITE_API_DOC=1 … --filter APIContractTests")
    // Each operation has its own section.
    for document in Self.documents {
      for operation in try Self.operations(document.served) {
        let parts = operation.split(separator: " ")
        #expect(rendered.contains("### `\(parts[0]) \(parts[1])`"), "\(operation)")
      }
    }
  }

  /// Schemathesis (PyPI, pinned; `make test` installs it) with every check it has, against
  /// the three documents as the servers serve them.
  @Test func schemathesisFindsNothingAgainstTheLiveServers() async throws {
    let stack = try await OnSaleStack.start(
      room: "contract", keyRing: Self.keyRing, adminToken: Self.adminToken,
      sections: [EventSpec.Section(name: "Floor", rows: 4, seatsPerRow: 10, priceCents: 1_000)],
      settings: RoomSettings(ratePerMinute: 6_000), boxOfficeAdminToken: Self.boxOfficeToken,
      staffToken: Self.staffToken)
    defer { Task { await stack.stop() } }
    let environment = [
      "FOYER_ADMIN_TOKEN": Self.adminToken, "BOXOFFICE_ADMIN_TOKEN": Self.boxOfficeToken,
      "BOXOFFICE_STAFF_TOKEN": Self.staffToken,
      "FOYER_ROOM": stack.room, "FOYER_PASS": Self.pass(room: stack.room),
      "FOYER_EVENT": stack.event.id.uuidString,
    ]
    let runs = [
      ("admin", stack.adminBase + "/openapi.json", stack.adminBase),
      ("public", stack.base + "/_foyer/openapi.json", stack.base),
      ("boxoffice", stack.boxOfficeBase + "/openapi.json", stack.boxOfficeBase),
    ]
    for (name, document, base) in runs {
      let (status, output) = try await Schemathesis.run(
        config: ShippedMonitoring.root.appendingPathComponent("Tests/schemathesis/\(name).toml").path,
        document: document, base: base, environment: environment)
      #expect(status == 0, "schemathesis against \(name):\n\(output.suffix(6_000))")
      #expect(output.contains("Test cases:"), "schemathesis did not run against \(name):\n\(output.suffix(2_000))")
      // The run's size, for the log: "N generated, N passed, N skipped".
      let lines = output.split(separator: "\n")
      if let index = lines.firstIndex(where: { $0.contains("Test cases:") }), index + 1 < lines.count {
        print("schemathesis against \(name):\(lines[index + 1])")
      }
    }
  }

  static func pass(room: String) -> String {
    try! TokenSigner(keyRing: keyRing).sign(
      Token(kind: .pass, room: room, visitor: .random(), time: Int64(Date().timeIntervalSince1970) + 3_600))
  }

  /// A concrete path for a template: unknown ids, so no handler finds anything to change.
  static func fill(_ template: String, room: String) -> String {
    var path = template.replacingOccurrences(of: "{visitor}", with: VisitorID.random().description)
    path = path.replacingOccurrences(of: "{id}", with: template.hasPrefix("/rooms") ? room : UUID().uuidString)
    if template.hasPrefix("/_foyer/status") || template.hasPrefix("/_foyer/leave") { path += "?room=\(room)" }
    return path
  }
}

/// The schemathesis command: `FOYER_SCHEMATHESIS`, else the one `make test` installs into
/// `.build/schemathesis`, else `st` on the PATH.
enum Schemathesis {
  static var executable: String {
    if let given = ProcessInfo.processInfo.environment["FOYER_SCHEMATHESIS"], !given.isEmpty { return given }
    let installed = ShippedMonitoring.root.appendingPathComponent(".build/schemathesis/bin/st").path
    return FileManager.default.isExecutableFile(atPath: installed) ? installed : "st"
  }

  /// A fixed seed, so a failure in CI is the same failure here (`FOYER_SCHEMATHESIS_SEED` to vary).
  static var seed: String { ProcessInfo.processInfo.environment["FOYER_SCHEMATHESIS_SEED"] ?? "19" }

  /// Runs it to the end without holding a cooperative thread (BoxOffice's handlers need them).
  static func run(config: String, document: String, base: String, environment: [String: String]) async throws
    -> (Int32, String)
  {
    let process = Process()
    process.executableURL = URL(fileURLWithPath: "/usr/bin/env")
    process.arguments = [
      executable, "--config-file", config, "run", document, "--url", base, "--checks", "all",
      "--max-examples", "25", "--seed", seed, "--workers", "1", "--no-color", "--request-timeout", "20",
    ]
    process.environment = ProcessInfo.processInfo.environment.merging(environment) { $1 }
    let output = FileManager.default.temporaryDirectory.appendingPathComponent("schemathesis-\(UUID()).log")
    FileManager.default.createFile(atPath: output.path, contents: nil)
    let handle = try FileHandle(forWritingTo: output)
    defer { try? FileManager.default.removeItem(at: output) }
    process.standardOutput = handle
    process.standardError = handle
    let status = try await withCheckedThrowingContinuation { (done: CheckedContinuation<Int32, any Error>) in
      process.terminationHandler = { done.resume(returning: $0.terminationStatus) }
      do { try process.run() } catch { done.resume(throwing: error) }
    }
    try handle.close()
    return (status, (try? String(contentsOf: output, encoding: .utf8)) ?? "")
  }
}
