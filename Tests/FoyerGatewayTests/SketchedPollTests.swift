import Foundation
import FoyerCore
import FoyerTestSupport
import NIOCore
import NIOPosix
import RedisNIO
import Testing
import WaitingRoom

@testable import FoyerGateway

/// Issue #20 item 1 through a real gateway and a Redis of its own: a visitor's place in line
/// comes back signed in the `foyer_q_<room>` cookie, and polls that bring it are answered
/// from the room's sketch, on both lanes, with no `ZRANK` (counted with `INFO commandstats`)
/// and within 0.5 % of the exact position; a place cookie that is forged, altered or someone
/// else's is ignored and the poll asks Redis, as without one.
@Suite(.serialized, .timeLimit(.minutes(3))) struct SketchedPollTests {
  let group = MultiThreadedEventLoopGroup.singleton
  static let json = ["Accept": "application/json"]

  typealias Room = PollDisciplineTests.Room

  /// A started, paused room (nobody is admitted) with `ahead` entries in line before anyone
  /// joins through the gateway. Six admissions a minute: however old the gateway's snapshot
  /// (kept 10 s here, so that no poll is sent to Redis to refresh it), the exact zone stays
  /// the first 1,000 places.
  func room(ahead: Int) async throws -> Room {
    try await PollDisciplineTests.room(
      "sk", settings: RoomSettings(state: .paused, ratePerMinute: 6), ahead: ahead, percent: 0,
      snapshotMaxAge: .seconds(10), group: group)
  }

  struct Visitor {
    var id: String
    var cookie: String
    var place: String
    var cookies: String { "foyer_v_\(room)=\(cookie); foyer_q_\(room)=\(place)" }
    let room: String
  }

  func join(_ room: Room) async throws -> Visitor {
    let reply = try await MultiGatewayTests.request(room.status, headers: Self.json)
    #expect(reply.status == 200 && reply.json["state"] as? String == "paused", "\(reply.status) \(reply.body)")
    let cookie = try #require(MultiGatewayTests.cookie("foyer_v_\(room.id)", in: reply))
    let place = try #require(MultiGatewayTests.cookie("foyer_q_\(room.id)", in: reply), "the join signs the place")
    // The place token names its visitor: v1.q.<room>.<visitor>.<score>.<kid>.<mac>.
    let fields = place.split(separator: ".")
    #expect(fields.count == 7 && fields[1] == "q" && fields[2] == Substring(room.id))
    return Visitor(id: String(fields[3]), cookie: cookie, place: place, room: room.id)
  }

  func poll(_ room: Room, _ cookies: String, page: Bool = false) async throws -> MultiGatewayTests.Reply {
    try await MultiGatewayTests.request(
      page ? room.page : room.status, headers: page ? ["Cookie": cookies] : Self.json.merging(["Cookie": cookies]) { $1 })
  }

  @Test func pollsWithAPlaceAreAnsweredFromTheSketchWithoutRedis() async throws {
    let room = try await room(ahead: 50_000)
    defer { room.channel.close(promise: nil) }
    var visitors: [Visitor] = []
    for _ in 0..<20 { visitors.append(try await join(room)) }
    // The first polls read the sketch (answered by Redis meanwhile).
    _ = try await poll(room, visitors[0].cookies)
    try await Task.sleep(for: .milliseconds(500))

    let ranks = try await room.calls("zrank")
    let scores = try await room.calls("zscore")
    let scripts = try await room.calls("evalsha")
    let started = ContinuousClock.now
    var answered: [(Visitor, Int)] = []
    for visitor in visitors {
      for page in [false, true] {
        let reply = try await poll(room, visitor.cookies, page: page)
        #expect(reply.status == 200)
        if !page {
          #expect(reply.json["state"] as? String == "paused")
          answered.append((visitor, try #require(reply.json["position"] as? Int)))
        } else {
          #expect(reply.body.contains("<html") || reply.body.contains("<!doctype"), "the waiting page")
        }
        // Nothing new to sign: the place is the same.
        #expect(MultiGatewayTests.cookie("foyer_q_\(room.id)", in: reply) == nil)
      }
    }
    let ranksAfter = try await room.calls("zrank")
    let scriptsAfter = try await room.calls("evalsha")
    #expect(ranksAfter == ranks, "40 polls from the sketch: no ZRANK (\(ranksAfter - ranks), \(scriptsAfter - scripts) scripts)")
    #expect(try await room.calls("zscore") == scores)
    // The only scripts: the sketch, read again once a second (whichever gateway asks first
    // makes it; the rest read it).
    let seconds = Int((ContinuousClock.now - started) / .seconds(1)) + 1
    #expect(try await room.calls("evalsha") - scripts <= seconds)
    for (visitor, position) in answered {
      let exact = try await room.exact(visitor.id)
      #expect(exact > 50_000 && Double(abs(position - exact)) <= 0.005 * Double(exact), "\(position) for \(exact)")
    }
  }

  @Test func aPlaceThatIsForgedAlteredOrAnothersIsIgnored() async throws {
    let room = try await room(ahead: 20_000)
    defer { room.channel.close(promise: nil) }
    let first = try await join(room)
    let second = try await join(room)
    _ = try await poll(room, first.cookies)
    try await Task.sleep(for: .milliseconds(500))
    let signer = try TokenSigner(keyRing: StatusEndpointTests.keyRing)
    let scoreOfFirst = Int64(first.place.split(separator: ".")[4])!
    // The gateway's key id with another secret.
    let forgedKey = try TokenSigner(keyRing: KeyRing([SigningKey(id: "test", secret: Array(repeating: 9, count: 32))]))
    let secondVisitor = try #require(VisitorID(second.id))
    let wrong: [(String, String)] = [
      // The first visitor's place, presented by the second (whose own is behind it).
      ("another's", first.place),
      // The second's own place with a better score: the MAC no longer matches.
      ("altered", second.place.replacingOccurrences(of: second.place.split(separator: ".")[4], with: String(scoreOfFirst))),
      // A better score signed with a key the gateway does not hold.
      ("forged", forgedKey.sign(Token(kind: .place, room: room.id, visitor: secondVisitor, time: 8_192))),
      // A pass where a place should be.
      ("a pass", signer.sign(Token(kind: .pass, room: room.id, visitor: secondVisitor, time: 4_000_000_000))),
    ]
    for (what, place) in wrong {
      let ranks = try await room.calls("zrank")
      let reply = try await poll(room, "foyer_v_\(room.id)=\(second.cookie); foyer_q_\(room.id)=\(place)")
      #expect(reply.status == 200, "\(what)")
      #expect(try await room.calls("zrank") == ranks + 1, "\(what): asked of Redis")
      #expect(reply.json["position"] as? Int == (try await room.exact(second.id)), "\(what): the second's own place")
    }
    // Leaving clears the place with the other cookies.
    let left = try await MultiGatewayTests.request(
      "http://127.0.0.1:\(room.port)/_foyer/leave?room=\(room.id)", method: "POST",
      headers: ["Cookie": second.cookies])
    #expect(left.headers["set-cookie"]?.contains("foyer_q_\(room.id)=;") == true, "\(left.headers)")
  }

  /// `positions.exact_below` in the gateway's file moves the exact front: a `foyer gateway`
  /// process whose file says 10,000 asks Redis for visitors behind 5,000 on every poll, where
  /// a gateway with the defaults (1,000) answers the same polls from the sketch.
  @Test func theExactFrontComesFromTheConfigurationFile() async throws {
    let room = try await room(ahead: 5_000)
    defer { room.channel.close(promise: nil) }
    let file = FileManager.default.temporaryDirectory.appendingPathComponent("foyer-\(UUID().uuidString).yaml")
    try "positions:\n  exact_below: 10000\n".write(to: file, atomically: true, encoding: .utf8)
    defer { try? FileManager.default.removeItem(at: file) }
    let configured = try await GatewayProcess.start(
      redisURL: room.server.url, rooms: ["\(room.id):/shop"], upstream: nil,
      keys: "test:" + Base64URL.encode(Array(repeating: UInt8(7), count: 32)), adminToken: "positions-admin-token",
      extraArguments: ["--config", file.path, "--min-poll-interval-percent", "0"])
    defer { Task { await configured.stop() } }
    var visitors: [Visitor] = []
    for _ in 0..<5 { visitors.append(try await join(room)) }
    let configuredStatus = "http://127.0.0.1:\(configured.port)/_foyer/status?room=\(room.id)"
    // The first polls on each gateway read the sketch.
    _ = try await poll(room, visitors[0].cookies)
    _ = try await MultiGatewayTests.request(
      configuredStatus, headers: Self.json.merging(["Cookie": visitors[0].cookies]) { $1 })
    try await Task.sleep(for: .milliseconds(500))

    for (name, url) in [("defaults", room.status), ("exact_below 10000", configuredStatus)] {
      let ranks = try await room.calls("zrank")
      for visitor in visitors {
        let reply = try await MultiGatewayTests.request(
          url, headers: Self.json.merging(["Cookie": visitor.cookies]) { $1 })
        #expect(reply.status == 200, "\(name): \(reply.body)")
        let position = try #require(reply.json["position"] as? Int, "\(name): \(reply.body)")
        #expect(position > 5_000 && position < 10_000, "\(name): \(position)")
      }
      let asked = try await room.calls("zrank") - ranks
      #expect(asked == (name == "defaults" ? 0 : visitors.count), "\(name): \(asked) ZRANK for 5 polls")
    }
  }
}

extension PollDisciplineTests.Room {
  var page: String { base + "/shop/seats" }
  var queue: String { "foyer:{\(id)}:queue" }

  /// The exact position of `visitor` (`ZRANK` + 1).
  func exact(_ visitor: String) async throws -> Int {
    try #require(try await redis.send(RedisCommand("ZRANK", queue, visitor)).int) + 1
  }
}
