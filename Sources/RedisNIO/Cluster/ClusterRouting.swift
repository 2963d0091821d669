internal import NIOCore

/// What one cluster request does next, decided from its replies alone: the routing rules of
/// the cluster specification as a pure function and a small state machine, tested without
/// sockets (`ClusterRoutingTests`); `ClusterRouter` only runs the steps.
enum ClusterReplyDecision: Equatable {
  /// The replies are final (error replies that are not about routing stay values).
  case done([RESPValue])
  /// `MOVED slot host:port`: the slot lives there now; update the map and send there.
  case moved(slot: Int, node: ClusterTopology.Node)
  /// `ASK slot host:port`: this once, send there after `ASKING` (a slot being migrated).
  case ask(node: ClusterTopology.Node)
  /// `TRYAGAIN`, `CLUSTERDOWN`, `LOADING`, `MASTERDOWN`, or the node unreachable: refresh the
  /// map and try again after a pause, within the deadline.
  case retry(RedisError)
  case fail(RedisError)

  /// `askingSent`: the request began with `ASKING`, whose `+OK` is dropped here.
  static func decide(_ result: Result<[RESPValue], RedisError>, askingSent: Bool) -> ClusterReplyDecision {
    switch result {
    case .failure(let error):
      return error.code == .connectionFailed || error.code == .connectionClosed ? .retry(error) : .fail(error)
    case .success(var replies):
      if askingSent, !replies.isEmpty { replies.removeFirst() }
      for reply in replies {
        guard case .error(let message) = reply else { continue }
        let words = message.split(separator: " ")
        switch words.first {
        case "MOVED", "ASK":
          guard words.count == 3, let slot = Int(words[1]), (0..<HashSlot.count).contains(slot),
            let node = Self.node(words[2])
          else { return .fail(RedisError(.unexpectedReply, "cannot follow redirection '\(message.prefix(100))'")) }
          return words.first == "MOVED" ? .moved(slot: slot, node: node) : .ask(node: node)
        case "TRYAGAIN", "CLUSTERDOWN", "LOADING", "MASTERDOWN":
          return .retry(RedisError(.serverError, message))
        default:
          continue
        }
      }
      return .done(replies)
    }
  }

  /// `host:port`, `[v6]:port`, or `:port` (the node that answered: Redis leaves the host out
  /// when it does not know its own address); the empty host is resolved by the caller.
  static func node(_ text: Substring) -> ClusterTopology.Node? {
    guard let colon = text.lastIndex(of: ":"), let port = Int(text[text.index(after: colon)...]),
      (1...65_535).contains(port)
    else { return nil }
    var host = text[..<colon]
    if host.hasPrefix("["), host.hasSuffix("]") { host = host.dropFirst().dropLast() }
    return ClusterTopology.Node(host: String(host), port: port)
  }
}

/// One request's way through the cluster: where to send it, and how many redirections and
/// retries it has had. Redirections are bounded (a map that keeps pointing elsewhere is a
/// broken cluster); retries are bounded by the deadline, with doubling pauses.
struct ClusterRequestState {
  static let maximumRedirections = 5
  static let firstPause = TimeAmount.milliseconds(10)
  static let longestPause = TimeAmount.milliseconds(500)

  let slot: Int?
  let deadline: NIODeadline
  /// The connections it goes on, at whichever node.
  let lane: RedisClient.Lane
  /// Set by `ASK`, for the next send only.
  private(set) var asking: ClusterTopology.Node?
  private(set) var redirections = 0
  private(set) var retries = 0

  init(slot: Int?, deadline: NIODeadline, lane: RedisClient.Lane = .shared) {
    self.slot = slot
    self.deadline = deadline
    self.lane = lane
  }

  enum Step: Equatable {
    case finish([RESPValue])
    /// Send again now: to the slot's owner (the map already updated), or after `ASKING` to a node.
    case send
    /// Send again after this pause; the map should be refreshed meanwhile.
    case pause(TimeAmount)
    case fail(RedisError)
  }

  /// The step after `decision`, at `now`; `moved` tells the caller to update its map first.
  mutating func next(_ decision: ClusterReplyDecision, now: NIODeadline) -> Step {
    asking = nil
    switch decision {
    case .done(let replies):
      return .finish(replies)
    case .fail(let error):
      return .fail(error)
    case .moved, .ask:
      redirections += 1
      guard redirections <= Self.maximumRedirections else {
        return .fail(RedisError(.unexpectedReply, "too many cluster redirections for slot \(slot.map(String.init) ?? "-")"))
      }
      if case .ask(let node) = decision { asking = node }
      return .send
    case .retry(let error):
      let pause = min(Self.firstPause * Int64(1 << min(retries, 10)), Self.longestPause)
      retries += 1
      guard now + pause < deadline else { return .fail(error) }
      return .pause(pause)
    }
  }
}
