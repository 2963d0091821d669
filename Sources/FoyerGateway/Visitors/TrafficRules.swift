internal import Foundation
internal import Logging
internal import NIOConcurrencyHelpers
internal import NIOCore
internal import NIOHTTP1
internal import WaitingRoom

/// One of a room's traffic rules (#16 item 6): requests without a pass from matching clients
/// skip the line (`allow`: staff, monitoring) or get no place at all (`block`). A rule names
/// a CIDR block, a User-Agent substring (any case), or both (then both must match).
struct TrafficRule: Codable, Hashable, Sendable {
  enum Action: String, Codable, Sendable { case allow, block }
  var action: Action
  var cidr: String?
  var userAgent: String?
  /// What the rule is for, for the operators who read it later.
  var note: String?

  enum CodingKeys: String, CodingKey {
    case action, cidr, note
    case userAgent = "user_agent"
  }

  static let maximumRules = 100

  init(action: Action, cidr: String? = nil, userAgent: String? = nil, note: String? = nil) {
    (self.action, self.cidr, self.userAgent, self.note) = (action, cidr, userAgent, note)
  }

  /// Strict: an unknown field (`useragent`) is a mistake to report, not a field to drop.
  init(from decoder: any Decoder) throws {
    try StrictKeys.check(decoder, known: CodingKeys.self)
    let container = try decoder.container(keyedBy: CodingKeys.self)
    action = try container.decode(Action.self, forKey: .action)
    cidr = try container.decodeIfPresent(String.self, forKey: .cidr)
    userAgent = try container.decodeIfPresent(String.self, forKey: .userAgent)
    note = try container.decodeIfPresent(String.self, forKey: .note)
  }

  /// Why the rule cannot be kept, or nil.
  var problem: String? {
    if cidr == nil && userAgent == nil { return "a rule needs cidr, user_agent or both" }
    if let cidr, AddressBlock(cidr) == nil { return "cidr '\(cidr.prefix(60))' is not an address or CIDR block" }
    if let userAgent, !(1...200).contains(userAgent.count) || userAgent.unicodeScalars.contains(where: { $0.value < 0x20 }) {
      return "user_agent must be 1-200 printable characters"
    }
    if let note, note.count > 200 { return "note must be at most 200 characters" }
    return nil
  }
}

/// A room's rules as the gateway matches them, with this gateway's hit counts.
final class RoomTrafficRules: Sendable {
  let rules: [TrafficRule]
  private let blocks: [AddressBlock?]
  private let agents: [[UInt8]?]
  private let hits: NIOLockedValueBox<[Int]>

  init(_ rules: [TrafficRule]) {
    self.rules = rules
    blocks = rules.map { $0.cidr.flatMap(AddressBlock.init) }
    agents = rules.map { $0.userAgent.map { Array($0.lowercased().utf8) } }
    hits = NIOLockedValueBox(Array(repeating: 0, count: rules.count))
  }

  var hitCounts: [Int] { hits.withLockedValue { $0 } }

  /// The first rule that matches, counted.
  func match(address: [UInt8]?, userAgent: String?) -> TrafficRule? {
    let agent = userAgent.map { Array($0.lowercased().utf8) }
    for index in rules.indices {
      if let block = blocks[index] {
        guard let address, block.contains(address) else { continue }
      }
      if let pattern = agents[index] {
        guard let agent, agent.firstRange(of: pattern) != nil else { continue }
      }
      hits.withLockedValue { $0[index] += 1 }
      return rules[index]
    }
    return nil
  }
}

/// Every room's rules, read from Redis every `interval` (`foyer:{R}:rules`) and shared by
/// the event loops; a request reads them only when it has no pass (the queue's path, never
/// the express lane's).
public final class TrafficRuleBook: Sendable {
  public init() {}

  private let rooms: NIOLockedValueBox<[String: RoomTrafficRules]> = NIOLockedValueBox([:])

  func rules(room: String) -> RoomTrafficRules? {
    rooms.withLockedValue { $0[room] }
  }

  /// Installs `rules` for `room`; an unchanged list keeps its hit counts.
  func install(room: String, _ rules: [TrafficRule]) {
    rooms.withLockedValue { rooms in
      if let current = rooms[room], current.rules == rules { return }
      rooms[room] = rules.isEmpty ? nil : RoomTrafficRules(rules)
    }
  }

  /// Reads every room's rules until the returned task is cancelled.
  func refresh(
    store: RoomStore, rooms: [String], every interval: TimeAmount, on loop: any EventLoop, logger: Logger
  ) -> RepeatedTask {
    loop.scheduleRepeatedAsyncTask(initialDelay: .zero, delay: interval) { _ in
      let reads = rooms.map { room in
        store.trafficRules(room: room, on: loop).map { text -> Void in
          self.install(room: room, Self.decode(text) ?? [])
        }.recover { error in
          logger.debug("traffic rules unavailable", metadata: ["room": "\(room)", "error": "\(error)"])
        }
      }
      return EventLoopFuture.andAllComplete(reads, on: loop)
    }
  }

  /// The stored form, `foyer:{R}:rules`: a JSON array; nil (no key) for no rules.
  static func encode(_ rules: [TrafficRule]) -> String? {
    guard !rules.isEmpty, let data = try? JSONEncoder().encode(rules) else { return nil }
    return String(decoding: data, as: UTF8.self)
  }

  static func decode(_ text: String?) -> [TrafficRule]? {
    guard let text else { return [] }
    return try? JSONDecoder().decode([TrafficRule].self, from: Data(text.utf8))
  }
}

/// A rule as the admin API shows it: its fields and this gateway's hits.
struct ShownTrafficRule: Encodable {
  var rule: TrafficRule
  var hits: Int

  enum CodingKeys: String, CodingKey { case hits }

  func encode(to encoder: any Encoder) throws {
    try rule.encode(to: encoder)
    var container = encoder.container(keyedBy: CodingKeys.self)
    try container.encode(hits, forKey: .hits)
  }
}

/// Refuses JSON objects with fields a type does not know.
enum StrictKeys {
  struct Key: CodingKey {
    var stringValue: String
    var intValue: Int? { nil }
    init(stringValue: String) { self.stringValue = stringValue }
    init?(intValue: Int) { nil }
  }

  static func check<Known: CodingKey>(_ decoder: any Decoder, known: Known.Type) throws {
    let container = try decoder.container(keyedBy: Key.self)
    if let unknown = container.allKeys.first(where: { Known(stringValue: $0.stringValue) == nil }) {
      throw DecodingError.dataCorruptedError(
        forKey: unknown, in: container, debugDescription: "unknown field '\(unknown.stringValue.prefix(40))'")
    }
  }
}
