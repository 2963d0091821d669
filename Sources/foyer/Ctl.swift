import ArgumentParser
import Foundation
import FoyerGateway

/// `foyer ctl …`: the operator's CLI, talking to a gateway's admin API.
/// The token comes from FOYER_ADMIN_TOKEN; the API from --admin-url or FOYER_ADMIN_URL.
struct Ctl: AsyncParsableCommand {
  static let configuration = CommandConfiguration(
    abstract: "Operate rooms through a gateway's admin API.",
    subcommands: [Rooms.self, Show.self, Set.self, Pause.self, Resume.self]
  )

  struct Connection: ParsableArguments {
    @Option(help: "Admin API base URL (default: FOYER_ADMIN_URL or http://127.0.0.1:8081).") var adminURL:
      String?

    func client() throws -> AdminClient {
      let environment = ProcessInfo.processInfo.environment
      guard let token = environment["FOYER_ADMIN_TOKEN"], !token.isEmpty else {
        throw ValidationError("set FOYER_ADMIN_TOKEN to the gateway's admin token")
      }
      let text = adminURL ?? environment["FOYER_ADMIN_URL"] ?? "http://127.0.0.1:8081"
      guard let url = URL(string: text), url.scheme == "http" || url.scheme == "https" else {
        throw ValidationError("--admin-url must be an http(s) URL (got '\(text)')")
      }
      return AdminClient(baseURL: url, token: token)
    }
  }

  struct Rooms: AsyncParsableCommand {
    static let configuration = CommandConfiguration(abstract: "List rooms with their live numbers.")
    @OptionGroup var connection: Connection
    func run() async throws {
      print(AdminClient.table(try await Ctl.run { try await connection.client().rooms() }))
    }
  }

  struct Show: AsyncParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Show one room's settings and live numbers.")
    @OptionGroup var connection: Connection
    @Argument(help: "Room id.") var room: String
    func run() async throws {
      print(AdminClient.details(try await Ctl.run { try await connection.client().room(room) }))
    }
  }

  struct Set: AsyncParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Change settings live (every gateway follows).")
    @OptionGroup var connection: Connection
    @Argument(help: "Room id.") var room: String
    @Option(help: "Admissions per minute.") var rate: Int?
    @Option(help: "Most shoppers at once.") var maxActive: Int?
    @Option(help: "Session length in seconds.") var sessionSeconds: Int?
    @Option(help: "passthrough, queue, paused or closed.") var state: String?
    @Option(help: "New places one client may take in a day (0 = no limit).") var maxPlacesPerClient: Int?

    func run() async throws {
      var changes: [String: Any] = [:]
      if let rate { changes["rate_per_minute"] = rate }
      if let maxActive { changes["max_active"] = maxActive }
      if let sessionSeconds { changes["session_seconds"] = sessionSeconds }
      if let state { changes["state"] = state }
      if let maxPlacesPerClient { changes["max_places_per_client"] = maxPlacesPerClient }
      guard !changes.isEmpty else {
        throw ValidationError(
          "nothing to set: give --rate, --max-active, --session-seconds, --state or --max-places-per-client")
      }
      print(AdminClient.details(try await Ctl.run { try await connection.client().update(room, changes) }))
    }
  }

  struct Pause: AsyncParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Stop admitting; everyone keeps their place.")
    @OptionGroup var connection: Connection
    @Argument(help: "Room id.") var room: String
    func run() async throws { try await Ctl.setState("paused", room: room, connection) }
  }

  struct Resume: AsyncParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Admit again.")
    @OptionGroup var connection: Connection
    @Argument(help: "Room id.") var room: String
    func run() async throws { try await Ctl.setState("queue", room: room, connection) }
  }

  static func setState(_ state: String, room: String, _ connection: Connection) async throws {
    print(AdminClient.details(try await run { try await connection.client().update(room, ["state": state]) }))
  }

  /// Turns API failures into a one-line error and exit code 1.
  static func run<T>(_ body: () async throws -> T) async throws -> T {
    do { return try await body() } catch let failure as AdminClient.Failure {
      FileHandle.standardError.write(Data("error: \(failure.description)\n".utf8))
      throw ExitCode.failure
    }
  }
}
