import Foundation
import FoyerCore
import FoyerTestSupport
import NIOCore
import NIOPosix
import RedisNIO
import Testing
import WaitingRoom

@testable import FoyerGateway

#if canImport(FoundationNetworking)
import FoundationNetworking
#endif

@Suite(.timeLimit(.minutes(2))) struct AdminAPITests {
  let group = MultiThreadedEventLoopGroup.singleton
  let token = "test-admin-token-\(UUID().uuidString)"

  func admin() async throws -> (base: String, store: RoomStore, channel: any Channel) {
    let redis = RedisClient(
      configuration: try RedisConfiguration(url: RedisServer.sharedURL()), eventLoopGroup: group)
    let store = RoomStore(redis: redis, snapshotMaxAge: .zero)
    let server = AdminServer(
      configuration: AdminConfiguration(port: 0, token: token), store: store, eventLoopGroup: group)
    let channel = try await server.start()
    return ("http://127.0.0.1:\(channel.localAddress!.port!)", store, channel)
  }

  func call(
    _ method: String, _ url: String, token: String?, body: String? = nil
  ) async throws -> (Int, [String: Any]) {
    var headers: [String: String] = [:]
    if let token { headers["Authorization"] = "Bearer \(token)" }
    if body != nil { headers["Content-Type"] = "application/json" }
    let reply = try await httpRequest(method, url, headers: headers, body: body.map { Data($0.utf8) })
    return (reply.status, reply.json)
  }

  @Test func theDashboardPageNeedsNoTokenButItsDataDoes() async throws {
    let (base, _, channel) = try await admin()
    defer { channel.close(promise: nil) }
    let (data, response) = try await URLSession(configuration: .ephemeral).data(
      from: URL(string: base + "/")!)
    let http = response as! HTTPURLResponse
    let page = String(decoding: data, as: UTF8.self)
    #expect(http.statusCode == 200)
    #expect(
      (http.allHeaderFields["Content-Security-Policy"] as? String)?.contains("default-src 'none'") == true)
    #expect(page.contains("Foyer — operations") && page.contains("id=\"token\"") && page.contains("/rooms"))
    #expect(!page.contains("http://") && !page.contains("https://"), "no external assets")
    #expect(try await call("GET", base + "/rooms", token: nil).0 == 401)
  }

  @Test func everyRequestNeedsTheToken() async throws {
    let (base, _, channel) = try await admin()
    defer { channel.close(promise: nil) }
    #expect(try await call("GET", base + "/rooms", token: nil).0 == 401)
    #expect(try await call("GET", base + "/rooms", token: "wrong").0 == 401)
    #expect(try await call("GET", base + "/rooms", token: token + "x").0 == 401)
    #expect(try await call("GET", base + "/rooms", token: token).0 == 200)
  }

  @Test func createShowPatchAndErrors() async throws {
    let (base, store, channel) = try await admin()
    defer { channel.close(promise: nil) }
    let room = "adm-" + UUID().uuidString.prefix(8)
    let created = try await call(
      "POST", base + "/rooms", token: token,
      body: #"{"id":"\#(room)","settings":{"rate_per_minute":120,"state":"paused"}}"#)
    #expect(created.0 == 201)
    #expect((created.1["settings"] as? [String: Any])?["rate_per_minute"] as? Int == 120)
    #expect(try await call("POST", base + "/rooms", token: token, body: #"{"id":"\#(room)"}"#).0 == 409)

    let shown = try await call("GET", base + "/rooms/\(room)", token: token)
    #expect(shown.0 == 200 && (shown.1["live"] as? [String: Any])?["waiting"] as? Int == 0)

    // A change through this gateway's admin API governs any other store's next tick.
    _ = try await store.join(room: room, visitor: .random())
    let other = RoomStore(
      redis: RedisClient(
        configuration: try RedisConfiguration(url: RedisServer.sharedURL()), eventLoopGroup: group))
    #expect(try await other.admit(room: room).admitted.isEmpty)  // paused
    let patched = try await call(
      "PATCH", base + "/rooms/\(room)", token: token, body: #"{"state":"queue","max_active":3}"#)
    #expect(patched.0 == 200 && (patched.1["settings"] as? [String: Any])?["state"] as? String == "queue")
    #expect(try await other.admit(room: room).admitted.count == 1)

    let invalid = try await call(
      "PATCH", base + "/rooms/\(room)", token: token, body: #"{"session_seconds":5}"#)
    #expect(invalid.0 == 400 && (invalid.1["message"] as? String)?.contains("session_seconds") == true)
    #expect(try await call("PATCH", base + "/rooms/\(room)", token: token, body: "not json").0 == 400)
    // The number of shards is a valid setting to make a room with, but no change afterwards.
    let sharded = room + "-k3"
    #expect(
      try await call(
        "POST", base + "/rooms", token: token, body: #"{"id":"\#(sharded)","settings":{"shards":3}}"#
      ).0 == 201)
    let resharded = try await call("PATCH", base + "/rooms/\(sharded)", token: token, body: #"{"shards":2}"#)
    #expect(resharded.0 == 409 && resharded.1["error"] as? String == "fixedSetting", "\(resharded)")
    #expect((resharded.1["message"] as? String)?.contains("it has 3") == true)
    let same = try await call("PATCH", base + "/rooms/\(sharded)", token: token, body: #"{"shards":3,"max_active":7}"#)
    #expect(same.0 == 200 && (same.1["settings"] as? [String: Any])?["max_active"] as? Int == 7, "\(same)")
    #expect(try await call("GET", base + "/rooms/nope-\(UUID().uuidString.prefix(6))", token: token).0 == 404)
    #expect(try await call("DELETE", base + "/rooms/\(room)", token: token).0 == 405)
    #expect(try await call("GET", base + "/elsewhere", token: token).0 == 404)
    let huge = "{\"state\":\"" + String(repeating: "x", count: 70_000) + "\"}"
    #expect(try await call("PATCH", base + "/rooms/\(room)", token: token, body: huge).0 == 413)
  }

  @Test func ctlClientShowsTablesAndChangesRooms() async throws {
    let (base, store, channel) = try await admin()
    defer { channel.close(promise: nil) }
    let room = "ctl-" + UUID().uuidString.prefix(8)
    try await store.createRoom(room, settings: RoomSettings(ratePerMinute: 90))
    // The suite's first phase runs most tests at once: on two cores that can outlast the CLI's 10 s.
    let client = AdminClient(baseURL: URL(string: base)!, token: token, timeout: 30)
    let table = AdminClient.table(try await client.rooms())
    #expect(table.hasPrefix("ROOM"))
    let line = try #require(table.split(separator: "\n").first { $0.hasPrefix(room) })
    #expect(line.contains("queue") && line.contains("90"))
    let updated = try await client.update(room, ["state": "paused", "rate_per_minute": 30])
    #expect(updated.settings["state"] == "paused" && updated.settings["rate_per_minute"] == "30")
    let rateLine = AdminClient.details(updated).split(separator: "\n").first {
      $0.hasPrefix("rate_per_minute ")
    }
    #expect(rateLine?.hasSuffix(" 30") == true)
    #expect(try await store.settings(room).state == .paused)
    await #expect(throws: AdminClient.Failure.self) { _ = try await client.update(room, ["state": "open"]) }
    let stranger = AdminClient(baseURL: URL(string: base)!, token: "nope", timeout: 30)
    do {
      _ = try await stranger.rooms()
      Issue.record("expected unauthorized")
    } catch let failure as AdminClient.Failure {
      #expect(failure.description.contains("FOYER_ADMIN_TOKEN"))
    }
  }
}
