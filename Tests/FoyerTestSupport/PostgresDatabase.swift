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
      var components = URLComponents(string: adminURL), let host = components.host
    else {
      throw TestServiceError(
        "BOXOFFICE_TEST_DATABASE_URL is not set: run `make test` (it starts PostgreSQL) or "
          + "`scripts/services.sh swift test`")
    }
    let name =
      "boxoffice_test_" + UUID().uuidString.replacingOccurrences(of: "-", with: "").lowercased().prefix(16)
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
      try await client.query(PostgresQuery(unsafeSQL: "CREATE DATABASE \(name)"))
      tasks.cancelAll()
    }
    components.path = "/" + name
    return components.string!
  }
}
