public import Foundation
import Logging
import PostgresNIO

/// A fresh, empty PostgreSQL database for one test, on the server `make test` started
/// (`BOXOFFICE_TEST_DATABASE_URL`). Each test gets its own database, so tests run in parallel
/// without seeing each other's rows.
public enum PostgresDatabase {
  /// Creates `boxoffice_test_<random>` and returns its URL.
  public static func create() async throws -> String {
    guard let adminURL = ProcessInfo.processInfo.environment["BOXOFFICE_TEST_DATABASE_URL"],
      var components = URLComponents(string: adminURL), components.host != nil
    else {
      throw TestServiceError(
        "BOXOFFICE_TEST_DATABASE_URL is not set: run `make test` (it starts PostgreSQL) or "
          + "`scripts/services.sh swift test`")
    }
    let name =
      "boxoffice_test_" + UUID().uuidString.replacingOccurrences(of: "-", with: "").lowercased().prefix(16)
    try await execute(adminURL, "CREATE DATABASE \(name)")
    components.path = "/" + name
    return components.string!
  }

  /// Runs one statement on the database at `url` (a test's own set-up, such as a table in
  /// the way of a migration).
  public static func execute(_ url: String, _ sql: String) async throws {
    guard let components = URLComponents(string: url), let host = components.host else {
      throw TestServiceError("not a database URL: \(url)")
    }
    let configuration = PostgresClient.Configuration(
      host: host, port: components.port ?? 5432, username: components.user ?? "postgres",
      password: components.password, database: String(components.path.dropFirst()), tls: .disable)
    // The query may be issued before the child task calls `run()`: the client then waits for
    // it and warns that it has not been called yet, which here is expected, not a problem.
    var logger = Logger(label: "test-postgres")
    logger.logLevel = .error
    let client = PostgresClient(configuration: configuration, backgroundLogger: logger)
    try await withThrowingTaskGroup(of: Void.self) { tasks in
      tasks.addTask { await client.run() }
      try await client.query(PostgresQuery(unsafeSQL: sql))
      tasks.cancelAll()
    }
  }
}
