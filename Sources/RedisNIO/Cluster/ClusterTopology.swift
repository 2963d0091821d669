/// Which node serves each of the 16,384 slots, as `CLUSTER SHARDS` (Redis 7) or
/// `CLUSTER SLOTS` told it: the primaries only (Foyer reads and writes on primaries).
public struct ClusterTopology: Sendable, Hashable {
  public struct Node: Sendable, Hashable, CustomStringConvertible {
    public var host: String
    public var port: Int
    public init(host: String, port: Int) {
      self.host = host
      self.port = port
    }
    public var description: String { "\(host):\(port)" }
  }

  /// The primaries, each once.
  public private(set) var nodes: [Node]
  /// Slot → index in `nodes`; -1 for a slot nobody serves (yet).
  private var owners: [Int16]

  public init() {
    nodes = []
    owners = Array(repeating: -1, count: HashSlot.count)
  }

  public func node(forSlot slot: Int) -> Node? {
    let index = owners[slot]
    return index < 0 ? nil : nodes[Int(index)]
  }

  /// Every slot has a node.
  public var isComplete: Bool { !owners.contains(-1) }

  /// `MOVED`: `slot` is `node`'s now (the rest of the map is refreshed separately).
  public mutating func assign(slot: Int, to node: Node) {
    owners[slot] = Int16(index(of: node))
  }

  private mutating func index(of node: Node) -> Int {
    if let index = nodes.firstIndex(of: node) { return index }
    nodes.append(node)
    return nodes.count - 1
  }

  private mutating func assign(_ range: ClosedRange<Int>, to node: Node) {
    let index = Int16(index(of: node))
    for slot in range { owners[slot] = index }
  }

  /// From a `CLUSTER SLOTS` reply: `[[start, end, [host, port, id, …], replicas…], …]`.
  /// `replyHost` names the node that answered, for entries that leave the host empty.
  public init(slots reply: RESPValue, replyHost: String) throws(RedisError) {
    self.init()
    guard let ranges = reply.array else { throw Self.invalid(reply) }
    for range in ranges {
      guard let fields = range.array, fields.count >= 3, let start = fields[0].int, let end = fields[1].int,
        (0..<HashSlot.count).contains(start), (start..<HashSlot.count).contains(end),
        let primary = fields[2].array, primary.count >= 2, let port = primary[1].int
      else { throw Self.invalid(reply) }
      let host = primary[0].string.flatMap { $0.isEmpty || $0 == "?" ? nil : $0 } ?? replyHost
      assign(start...end, to: Node(host: host, port: port))
    }
  }

  /// From a `CLUSTER SHARDS` reply (RESP2: maps as flat key/value arrays):
  /// `[["slots", [start, end, …], "nodes", [[ "id", …, "port", p, "ip", …, "role", "master",
  /// "health", "online", …], …]], …]`.
  public init(shards reply: RESPValue, replyHost: String) throws(RedisError) {
    self.init()
    guard let shards = reply.array else { throw Self.invalid(reply) }
    for shard in shards {
      guard let shard = Self.map(shard), let slots = shard["slots"]?.array, let nodes = shard["nodes"]?.array,
        slots.count % 2 == 0
      else { throw Self.invalid(reply) }
      let primary = nodes.compactMap(Self.map).first {
        $0["role"]?.string == "master" && ($0["health"]?.string ?? "online") == "online"
      }
      guard let primary else { continue }  // a shard without a healthy primary serves nothing now
      guard let port = primary["port"]?.int ?? primary["tls-port"]?.int else { throw Self.invalid(reply) }
      let host =
        [primary["ip"], primary["endpoint"]].compactMap { $0?.string }.first { !$0.isEmpty && $0 != "?" }
        ?? replyHost
      for index in stride(from: 0, to: slots.count, by: 2) {
        guard let start = slots[index].int, let end = slots[index + 1].int,
          (0..<HashSlot.count).contains(start), (start..<HashSlot.count).contains(end)
        else { throw Self.invalid(reply) }
        assign(start...end, to: Node(host: host, port: port))
      }
    }
  }

  private static func map(_ value: RESPValue) -> [String: RESPValue]? {
    guard let pairs = value.array, pairs.count % 2 == 0 else { return nil }
    var map: [String: RESPValue] = [:]
    for index in stride(from: 0, to: pairs.count, by: 2) {
      guard let key = pairs[index].string else { return nil }
      map[key] = pairs[index + 1]
    }
    return map
  }

  private static func invalid(_ reply: RESPValue) -> RedisError {
    RedisError(.unexpectedReply, "cluster topology reply not understood: \(String(describing: reply).prefix(200))")
  }
}
