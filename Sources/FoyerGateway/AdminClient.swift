public import Foundation

#if canImport(FoundationNetworking)
import FoundationNetworking
#endif

/// The admin API from the operator's side, for `foyer ctl`: a handful of requests, so
/// Foundation's URLSession serves (no HTTP client dependency for the CLI).
public struct AdminClient: Sendable {
  public let baseURL: URL
  private let token: String
  /// How long a call may wait for the admin API's answer, in seconds.
  public let timeout: TimeInterval

  public init(baseURL: URL, token: String, timeout: TimeInterval = 10) {
    self.baseURL = baseURL
    self.token = token
    self.timeout = timeout
  }

  public struct Failure: Error, CustomStringConvertible {
    public let description: String

    public init(description: String) {
      self.description = description
    }
  }

  /// One room as the admin API shows it.
  public struct Room: Sendable {
    public let id: String
    public let settings: [String: String]
    public let live: [String: Int]
  }

  public func rooms() async throws -> [Room] {
    let object = try await call("GET", "rooms")
    return (object["rooms"] as? [[String: Any]] ?? []).compactMap(Self.room)
  }

  public func room(_ id: String) async throws -> Room {
    guard let room = Self.room(try await call("GET", "rooms/\(id)")) else {
      throw Failure(description: "unexpected answer")
    }
    return room
  }

  /// Applies settings by their stored names (`rate_per_minute`, `state`, …).
  public func update(_ id: String, _ changes: [String: Any]) async throws -> Room {
    let body = try JSONSerialization.data(withJSONObject: changes)
    guard let room = Self.room(try await call("PATCH", "rooms/\(id)", body: body)) else {
      throw Failure(description: "unexpected answer")
    }
    return room
  }

  /// A room's traffic rules, each as the API shows it (`action`, `cidr`, `user_agent`,
  /// `note`, `hits`).
  public func rules(_ id: String) async throws -> [[String: Any]] {
    try await call("GET", "rooms/\(id)/rules")["rules"] as? [[String: Any]] ?? []
  }

  /// Replaces a room's traffic rules; returns them as stored.
  public func setRules(_ id: String, _ rules: [[String: Any]]) async throws -> [[String: Any]] {
    let body = try JSONSerialization.data(withJSONObject: ["rules": rules])
    return try await call("PUT", "rooms/\(id)/rules", body: body)["rules"] as? [[String: Any]] ?? []
  }

  /// Reads a room's rules (without their hits), lets `change` edit the list, and stores it:
  /// what `foyer ctl allow`, `block` and `unrule` do.
  public func editRules(
    _ id: String, _ change: (inout [[String: Any]]) throws -> Void
  ) async throws -> [[String: Any]] {
    var rules = try await rules(id).map { $0.filter { $0.key != "hits" } }
    try change(&rules)
    return try await setRules(id, rules)
  }

  /// `foyer ctl rules ROOM`: one rule per line, numbered from 1, in the order they are tried.
  public static func rulesTable(_ rules: [[String: Any]]) -> String {
    guard !rules.isEmpty else { return "no rules: everyone without a pass waits in line" }
    return rules.enumerated().map { index, rule in
      var words = ["\(index + 1)", rule["action"] as? String ?? "?"]
      if let cidr = rule["cidr"] as? String { words.append("cidr=\(cidr)") }
      if let agent = rule["user_agent"] as? String { words.append("user_agent=\"\(agent)\"") }
      words.append("hits=\(rule["hits"] as? Int ?? 0)")
      if let note = rule["note"] as? String { words.append("# \(note)") }
      return words.joined(separator: "  ")
    }.joined(separator: "\n")
  }

  private func call(_ method: String, _ path: String, body: Data? = nil) async throws -> [String: Any] {
    var request = URLRequest(url: baseURL.appendingPathComponent(path))
    request.httpMethod = method
    request.httpBody = body
    request.timeoutInterval = timeout
    request.setValue("Bearer \(token)", forHTTPHeaderField: "Authorization")
    let data: Data
    let response: URLResponse
    do {
      (data, response) = try await URLSession(configuration: .ephemeral).data(for: request)
    } catch {
      throw Failure(
        description: "cannot reach the admin API at \(baseURL.absoluteString): \(error.localizedDescription)")
    }
    let status = (response as? HTTPURLResponse)?.statusCode ?? 0
    let object = (try? JSONSerialization.jsonObject(with: data)) as? [String: Any] ?? [:]
    guard (200..<300).contains(status) else {
      let message = object["message"] as? String ?? "HTTP \(status)"
      throw Failure(description: status == 401 ? "unauthorized: check FOYER_ADMIN_TOKEN" : message)
    }
    return object
  }

  private static func room(_ object: [String: Any]) -> Room? {
    guard let id = object["id"] as? String else { return nil }
    let settings = (object["settings"] as? [String: Any] ?? [:]).mapValues { "\($0)" }
    let live = (object["live"] as? [String: Any] ?? [:]).compactMapValues { ($0 as? NSNumber)?.intValue }
    return Room(id: id, settings: settings, live: live)
  }

  // MARK: Tables

  /// `foyer ctl rooms`: one line per room, aligned columns.
  public static func table(_ rooms: [Room]) -> String {
    let header = ["ROOM", "STATE", "RATE/MIN", "MAX ACTIVE", "WAITING", "ACTIVE", "ADMITTED/MIN", "NO-SHOWS"]
    let rows = rooms.map { room in
      [
        room.id, room.settings["state"] ?? "?", room.settings["rate_per_minute"] ?? "?",
        room.settings["max_active"] ?? "?", String(room.live["waiting"] ?? 0),
        String(room.live["active"] ?? 0),
        String(room.live["admitted_last_minute"] ?? 0), String(room.live["no_shows"] ?? 0),
      ]
    }
    return align([header] + rows)
  }

  /// `foyer ctl show ROOM`: settings and live numbers, one per line.
  public static func details(_ room: Room) -> String {
    var lines = [["room", room.id]]
    lines += room.settings.keys.sorted().map { [$0, room.settings[$0]!] }
    lines += room.live.keys.sorted().map { [$0, String(room.live[$0]!)] }
    return align(lines)
  }

  static func align(_ rows: [[String]]) -> String {
    let widths = (0..<(rows.map(\.count).max() ?? 0)).map { column in
      rows.map { column < $0.count ? $0[column].count : 0 }.max() ?? 0
    }
    return rows.map { row in
      row.enumerated().map { index, cell in
        index == row.count - 1 ? cell : cell.padding(toLength: widths[index], withPad: " ", startingAt: 0)
      }.joined(separator: "  ")
    }.joined(separator: "\n")
  }
}
