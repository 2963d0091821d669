import ArgumentParser
import Foundation
import FoyerGateway

/// `foyer ctl …`: the operator's CLI, talking to a gateway's admin API.
/// The token comes from FOYER_ADMIN_TOKEN; the API from --admin-url or FOYER_ADMIN_URL.
struct Ctl: AsyncParsableCommand {
  static let configuration = CommandConfiguration(
    abstract: "Operate rooms through a gateway's admin API.",
    subcommands: [
      Rooms.self, Show.self, Set.self, Pause.self, Resume.self, Rules.self, Allow.self, Block.self, Unrule.self,
    ]
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

extension Ctl {
  struct Rules: AsyncParsableCommand {
    static let configuration = CommandConfiguration(abstract: "List a room's traffic rules with this gateway's hits.")
    @OptionGroup var connection: Connection
    @Argument(help: "Room id.") var room: String
    func run() async throws {
      print(AdminClient.rulesTable(try await Ctl.run { try await connection.client().rules(room) }))
    }
  }

  /// What `allow` and `block` take: the client to match.
  struct Match: ParsableArguments {
    @Option(help: "An address or CIDR block (IPv4 or IPv6).") var cidr: String?
    @Option(help: "A User-Agent substring, any case.") var userAgent: String?
    @Option(help: "What the rule is for.") var note: String?

    func rule(_ action: String) throws -> [String: Any] {
      guard cidr != nil || userAgent != nil else { throw ValidationError("give --cidr, --user-agent or both") }
      var rule: [String: Any] = ["action": action]
      if let cidr { rule["cidr"] = cidr }
      if let userAgent { rule["user_agent"] = userAgent }
      if let note { rule["note"] = note }
      return rule
    }
  }

  /// Appends a rule (tried after the others) and prints the room's rules.
  static func append(_ rule: [String: Any], room: String, connection: Connection) async throws {
    print(
      AdminClient.rulesTable(
        try await run { try await connection.client().editRules(room) { $0.append(rule) } }))
  }

  struct Allow: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
      abstract: "Let matching clients without a pass skip the line (staff, monitoring).")
    @OptionGroup var connection: Connection
    @Argument(help: "Room id.") var room: String
    @OptionGroup var match: Match
    func run() async throws { try await Ctl.append(try match.rule("allow"), room: room, connection: connection) }
  }

  struct Block: AsyncParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Give matching clients without a pass no place.")
    @OptionGroup var connection: Connection
    @Argument(help: "Room id.") var room: String
    @OptionGroup var match: Match
    func run() async throws { try await Ctl.append(try match.rule("block"), room: room, connection: connection) }
  }

  struct Unrule: AsyncParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Remove a room's rule by its number (or --all).")
    @OptionGroup var connection: Connection
    @Argument(help: "Room id.") var room: String
    @Argument(help: "The rule's number in `foyer ctl rules`.") var number: Int?
    @Flag(help: "Remove every rule.") var all = false
    func run() async throws {
      guard all || number != nil else { throw ValidationError("give the rule's number, or --all") }
      print(
        AdminClient.rulesTable(
          try await Ctl.run {
            try await connection.client().editRules(room) { rules in
              if all {
                rules = []
              } else if let number {
                guard rules.indices.contains(number - 1) else {
                  throw AdminClient.Failure(description: "room \(room) has no rule \(number)")
                }
                rules.remove(at: number - 1)
              }
            }
          }))
    }
  }
}
