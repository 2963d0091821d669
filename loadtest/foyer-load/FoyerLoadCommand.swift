import ArgumentParser
import Foundation
import FoyerConfig
import FoyerLoad
import Logging

/// `foyer-load SCENARIO …`: runs an on-sale crowd against a running gateway and BoxOffice,
/// prints what it measured and exits 1 if any promise was broken.
@main
struct FoyerLoadCommand: AsyncParsableCommand {
  static let configuration = CommandConfiguration(
    commandName: "foyer-load",
    abstract:
      "Thousands of virtual visitors through the Foyer gateway and BoxOffice; checks every invariant.",
    discussion: """
      Secrets come from the environment: FOYER_ADMIN_TOKEN (the gateway's admin API) and
      BOXOFFICE_DATABASE_URL (BoxOffice's PostgreSQL, read after the run for the books).
      Exit status: 0 every invariant held, 1 one was broken, 2 the run could not start (a target
      unreachable or refusing), 64 a bad argument or scenario file.
      """)

  @Argument(help: "The scenario file (see loadtest/onsale-small.yaml).")
  var scenario: String

  @Option(help: "The gateway's public URL; repeat it for several gateways, taken in turn by each visitor.")
  var gateway: [String] = ["http://127.0.0.1:8080"]

  @Option(help: "The gateway's admin API URL; repeat it with several gateways (the first gets the operator's changes).")
  var admin: [String] = ["http://127.0.0.1:8081"]

  @Option(help: "The room protecting the event.")
  var room = "onsale"

  @Option(help: "The event's id (as `boxoffice seed` prints it).")
  var event: String

  @Option(help: "Write the report as JSON to this file too.")
  var json: String?

  @Option(help: "Override the scenario's number of visitors.")
  var visitors: Int?

  @Option(help: "Override the scenario's random seed.")
  var seed: UInt64?

  @Flag(help: "Leave the scenario's bots out: the same humans (with a fixed seed), for a comparison.")
  var withoutBots = false

  func run() async throws {
    let environment = ProcessInfo.processInfo.environment
    let text: String
    do {
      text = try String(contentsOfFile: scenario, encoding: .utf8)
    } catch {
      throw ValidationError("cannot read \(scenario): \(error.localizedDescription)")
    }
    var parsed: Scenario
    do {
      parsed = try Scenario.parse(yaml: text)
    } catch {
      throw ValidationError("\(scenario): \(error)")
    }
    if let visitors {
      parsed.visitors = visitors
      parsed.burst = min(parsed.burst, visitors - min(parsed.prequeue, visitors))
      parsed.prequeue = min(parsed.prequeue, visitors)
    }
    if let seed { parsed.seed = seed }
    if withoutBots { parsed.bots = Scenario.Bots() }
    guard let eventID = UUID(uuidString: event) else { throw ValidationError("--event must be a UUID") }
    guard let token = environment["FOYER_ADMIN_TOKEN"], !token.isEmpty else {
      throw ValidationError("set FOYER_ADMIN_TOKEN to the gateway's admin token")
    }
    guard let database = environment["BOXOFFICE_DATABASE_URL"], !database.isEmpty else {
      throw ValidationError(
        "set BOXOFFICE_DATABASE_URL to BoxOffice's database (postgres://user@host:port/db)")
    }
    var logger = Logger(label: "foyer-load")
    logger.logLevel = .warning
    let simulation = Simulation(
      scenario: parsed,
      target: Target(
        gateways: gateway, admins: admin, adminToken: token, room: room, event: eventID, databaseURL: database),
      logger: logger)
    let report: Report
    do {
      // Unbuffered, so progress shows as it happens also through a pipe.
      report = try await simulation.run { line in FileHandle.standardOutput.write(Data((line + "\n").utf8)) }
    } catch {
      print("foyer-load: the run could not start: \(error)")
      throw ExitCode(2)
    }
    print()
    print(report.text, terminator: "")
    if let json {
      try Data(report.json.utf8).write(to: URL(fileURLWithPath: json))
      print("report written to \(json)")
    }
    if !report.passed { throw ExitCode(1) }
  }
}
