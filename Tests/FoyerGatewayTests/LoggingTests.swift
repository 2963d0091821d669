import Foundation
import FoyerCore
import FoyerTestSupport
import Logging
import RedisNIO
import Testing
import WaitingRoom

@testable import FoyerLogging

/// Issue #19 item 3: `log.format: json` writes one JSON object per event, with the request's
/// id, room, status and duration where the event has them, and never a secret.
@Suite(.timeLimit(.minutes(2))) struct LoggingTests {
  @Test func eachEventIsOneJSONObjectWhateverItsText() throws {
    let message = "quote \" backslash \\ newline \n tab \t bell \u{7} del \u{7f} line sep \u{2028} café 🎟"
    let line = JSONLogHandler.line(
      timestamp: "2026-12-03T15:04:05.123Z", level: .notice, label: "foyer", message: message,
      metadata: [
        "request_id": "abc-1", "status": "502", "nested": ["a": ["1", "2"]],
        "message": "not a second message",
      ])
    #expect(!line.contains("\n"))
    let object = try #require(try JSONSerialization.jsonObject(with: Data(line.utf8)) as? [String: Any])
    #expect(object["message"] as? String == message)
    #expect(object["level"] as? String == "notice" && object["label"] as? String == "foyer")
    #expect(object["ts"] as? String == "2026-12-03T15:04:05.123Z")
    #expect(object["request_id"] as? String == "abc-1" && object["status"] as? String == "502")
    #expect((object["nested"] as? [String: [String]])?["a"] == ["1", "2"])
    // Metadata cannot forge the event's own fields.
    #expect(line.components(separatedBy: "\"message\"").count == 2)
    #expect(line.hasPrefix(#"{"ts":"2026-12-03T15:04:05.123Z","level":"notice","label":"foyer","message":"#))
  }

  @Test func aRealGatewayLogsJSONWithRequestFieldsAndNoSecrets() async throws {
    let redis = try await RedisServer.start()
    let room = "log-" + UUID().uuidString.prefix(8)
    let secret = Array(repeating: UInt8(9), count: 32)
    let keySpec = "logkey:" + Base64URL.encode(secret)
    let adminToken = "logging-admin-token-" + UUID().uuidString.prefix(8)
    let config = FileManager.default.temporaryDirectory.appendingPathComponent("foyer-log-\(UUID()).yaml")
    try "log:\n  format: json\n  level: info\n".write(to: config, atomically: true, encoding: .utf8)
    defer { try? FileManager.default.removeItem(at: config) }
    // An upstream nobody listens on: a pass holder's request fails and is logged.
    let deadPort = try freeLoopbackPort()
    let gateway = try await GatewayProcess.start(
      redisURL: redis.url, rooms: ["\(room):/shop"], upstream: "http://127.0.0.1:\(deadPort)", keys: keySpec,
      adminToken: adminToken, extraArguments: ["--config", config.path])
    let signer = try TokenSigner(keyRing: try KeyRing([SigningKey(id: "logkey", secret: secret)]))
    let pass = signer.sign(
      Token(kind: .pass, room: room, visitor: .random(), time: Int64(Date().timeIntervalSince1970) + 60))
    let base = "http://127.0.0.1:\(gateway.port)"
    let failed = try await httpRequest(
      "GET", base + "/shop/seat",
      headers: ["Cookie": "foyer_p_\(room)=\(pass)", "X-Request-Id": "log-test-1"])
    #expect(failed.status == 502)
    let waiting = try await httpRequest("GET", base + "/_foyer/status?room=\(room)", headers: [:])
    let visitorCookie = waiting.headers["set-cookie"] ?? ""
    let admin = "http://127.0.0.1:\(gateway.adminPort)"
    #expect(
      try await httpRequest("GET", admin + "/rooms", headers: ["Authorization": "Bearer wrong-token-000000"])
        .status == 401)
    #expect(
      try await httpRequest(
        "PATCH", admin + "/rooms/\(room)", headers: ["Authorization": "Bearer \(adminToken)"],
        body: Data(#"{"rate_per_minute": 120}"#.utf8)
      ).status == 200)
    await gateway.stop()
    let log = try String(contentsOfFile: gateway.logPath, encoding: .utf8)
    let lines = log.split(separator: "\n")
    #expect(lines.count >= 3, "\(log)")
    var events: [[String: Any]] = []
    for line in lines {
      let object = try? JSONSerialization.jsonObject(with: Data(line.utf8)) as? [String: Any]
      #expect(object != nil, "not one JSON object: \(line)")
      if let object {
        #expect(object["ts"] is String && object["level"] is String && object["message"] is String, "\(line)")
        events.append(object)
      }
    }
    let failure = events.first { $0["message"] as? String == "request failed" }
    #expect(failure?["request_id"] as? String == "log-test-1", "\(log)")
    #expect(failure?["room"] as? String == room)
    #expect(failure?["status"] as? String == "502")
    #expect(Int(failure?["duration_ms"] as? String ?? "") != nil)
    #expect(events.contains { $0["message"] as? String == "gateway listening" })
    // No secret, ever: not the signing key (in any encoding), the admin token, a pass or a
    // visitor token.
    let visitorToken = visitorCookie.split(separator: "=").dropFirst().first.map {
      String($0.prefix { $0 != ";" })
    }
    for (name, value) in [
      ("the signing key", Base64URL.encode(secret)), ("the key spec", keySpec),
      ("the admin token", adminToken),
      ("the pass", pass), ("the visitor token", visitorToken ?? "no visitor token"),
    ] {
      #expect(!log.contains(value), "\(name) is in the log")
    }
    #expect(visitorToken != nil && (visitorToken?.count ?? 0) > 20)
    await redis.stop()
  }
}
