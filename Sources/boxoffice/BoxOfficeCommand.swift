import ArgumentParser
import BoxOffice
import Foundation
import FoyerConfig
import FoyerCore
import FoyerLogging
import Logging
import ServiceLifecycle
import UnixSignals

@main
struct BoxOfficeCommand: AsyncParsableCommand {
  static let configuration = CommandConfiguration(
    commandName: "boxoffice", abstract: "BoxOffice, the booking API behind the Foyer gateway.",
    subcommands: [Serve.self, Migrate.self, Seed.self, VerifyTicket.self])
}

/// Shared by the subcommands: `--config`, and the secrets from the environment.
struct Options: ParsableArguments {
  @Option(help: "YAML configuration file (see config/boxoffice.yaml).") var config: String?
  @Option(help: "Database URL (overrides the file; default from BOXOFFICE_DATABASE_URL).") var database:
    String?

  func load() throws -> BoxOfficeConfiguration {
    let environment = ProcessInfo.processInfo.environment
    let keyRing: KeyRing
    do {
      keyRing = try KeyRing.load(environment: environment) { try String(contentsOfFile: $0, encoding: .utf8) }
    } catch {
      throw ValidationError(error.description)
    }
    var configuration: BoxOfficeConfiguration
    do {
      let yaml = try config.map { try String(contentsOfFile: $0, encoding: .utf8) } ?? ""
      configuration = try BoxOfficeConfiguration.parse(yaml: yaml, keyRing: keyRing)
    } catch let error as ConfigurationError {
      throw ValidationError("\(config ?? "configuration"): \(error)")
    }
    // The database password stays out of the file: BOXOFFICE_DATABASE_URL carries it.
    if let url = database ?? environment["BOXOFFICE_DATABASE_URL"] { configuration.databaseURL = url }
    if let staff = environment["BOXOFFICE_STAFF_TOKEN"] {
      guard staff.utf8.count >= 16 else {
        throw ValidationError("BOXOFFICE_STAFF_TOKEN must be at least 16 characters")
      }
      configuration.staffToken = staff
    }
    return configuration
  }
}

/// The process's logger, in the file's format (once the file is read: it says how to log).
func makeLogger(_ configuration: BoxOfficeConfiguration) -> Logger {
  configuration.log.bootstrap()
  return configuration.log.logger(label: "boxoffice")
}

struct Serve: AsyncParsableCommand {
  static let configuration = CommandConfiguration(abstract: "Serve the booking API until SIGTERM/SIGINT.")
  @OptionGroup var options: Options
  @Option(help: "Listen port (overrides the file).") var port: Int?

  func run() async throws {
    var configuration = try options.load()
    let logger = makeLogger(configuration)
    if let port { configuration.port = port }
    let adminToken = ProcessInfo.processInfo.environment["BOXOFFICE_ADMIN_TOKEN"]
    if let adminToken, adminToken.utf8.count < 16 {
      throw ValidationError("BOXOFFICE_ADMIN_TOKEN must be at least 16 characters")
    }
    let server = try BoxOfficeServer(configuration: configuration, adminToken: adminToken, logger: logger)
    let group = ServiceGroup(
      configuration: .init(
        services: server.services(), gracefulShutdownSignals: [.sigterm, .sigint], logger: logger))
    try await group.run()
  }
}

/// Runs a one-off task against the database with its client running.
func withDatabase<T: Sendable>(
  _ configuration: BoxOfficeConfiguration, logger: Logger,
  _ body: @escaping @Sendable (BoxOfficeServer) async throws -> T
) async throws -> T {
  var configuration = configuration
  configuration.redisURL = nil
  let server = try BoxOfficeServer(configuration: configuration, adminToken: nil, logger: logger)
  return try await withThrowingTaskGroup(of: T?.self) { tasks in
    tasks.addTask {
      await server.runDatabase()
      return nil
    }
    defer { tasks.cancelAll() }
    let value = try await body(server)
    return value
  }
}

struct Migrate: AsyncParsableCommand {
  static let configuration = CommandConfiguration(abstract: "Apply pending database migrations.")
  @OptionGroup var options: Options

  func run() async throws {
    let configuration = try options.load()
    let logger = makeLogger(configuration)
    let applied = try await withDatabase(configuration, logger: logger) { server in
      try await server.migrate()
    }
    print(
      applied.isEmpty
        ? "schema up to date" : "applied migrations \(applied.map(String.init).joined(separator: ", "))")
  }
}

struct Seed: AsyncParsableCommand {
  static let configuration = CommandConfiguration(abstract: "Create demo data.")
  @OptionGroup var options: Options
  @Flag(help: "The demo on-sale: a 20,000-seat arena and a few smaller events.") var demo = false
  @Option(help: "Seconds from now until the headliner goes on sale.") var onSaleIn = 60

  func run() async throws {
    guard demo else { throw ValidationError("nothing to seed: pass --demo") }
    let configuration = try options.load()
    let logger = makeLogger(configuration)
    let onSale = Date().addingTimeInterval(TimeInterval(onSaleIn))
    let id = try await withDatabase(configuration, logger: logger) { server in
      try await server.migrate()
      return try await DemoSeed.seed(server.inventory, onSaleAt: onSale)
    }
    print(id.uuidString.lowercased())
  }
}

/// What a scanner at the door does: checks a ticket code with the published public keys
/// alone (the JSON of `GET /tickets/keys`), no secret and no database.
struct VerifyTicket: ParsableCommand {
  static let configuration = CommandConfiguration(
    commandName: "verify-ticket", abstract: "Check a ticket code offline against BoxOffice's public keys.")
  @Argument(help: "The ticket code (TK2.…).") var code: String
  @Option(help: "The keys file: what GET /tickets/keys serves.") var keys: String

  func run() throws {
    let verifier: TicketVerifier
    do {
      verifier = try TicketVerifier(json: try Data(contentsOf: URL(fileURLWithPath: keys)))
    } catch {
      throw ValidationError("cannot read the keys in \(keys): \(error)")
    }
    guard let ticket = verifier.verify(code) else {
      print("invalid: not a ticket signed by these keys")
      throw ExitCode(1)
    }
    print("valid: ticket \(ticket.ticket.uuidString.lowercased()), seat \(ticket.seat), key \(ticket.keyID)")
  }
}
