import Foundation
import NIOCore
import Testing

@testable import FoyerGateway

/// The byte-level pieces a status poll is read and answered with.
@Suite struct StatusWritingTests {
  @Test func queryParametersAreFoundAsTheStringVersionFoundThem() {
    func room(_ query: String) -> String? {
      GatewayHandler.parameter("room", in: Array(query.utf8)).map { String(decoding: $0, as: UTF8.self) }
    }
    #expect(room("room=r1") == "r1")
    #expect(room("a=1&room=r1&b=2") == "r1")
    #expect(room("room=first&room=second") == "first")
    #expect(room("room=") == "")
    #expect(room("&&room=r1&") == "r1")
    // Other names, and names that merely start like it, do not match.
    #expect(room("rooms=r1&xroom=r2&room") == nil)
    #expect(room("roo=r1") == nil)
    #expect(room("") == nil)
    // Values are not decoded: a room id never needs it, and an encoded one matches no room.
    #expect(room("room=a%20b+c") == "a%20b+c")
    // Over a substring's UTF-8 too, as the NIOHTTP1 path calls it.
    let query: Substring = "x=é&room=r9"[...]
    #expect(GatewayHandler.parameter("room", in: query.utf8).map { Substring($0) } == "r9")
  }

  @Test(arguments: [0, 7, -7, 10, 99, 100, 1_000_000, Int.max, Int.min, Int(Int32.min)])
  func decimalsAreWrittenAsStringDescribesThem(value: Int) {
    var buffer = ByteBuffer(string: "x")
    let written = buffer.writeDecimal(value)
    #expect(String(buffer: buffer) == "x\(value)")
    #expect(written == String(value).utf8.count)
  }

  /// The JSON is written into bytes reserved for it; the longest one must fit (a piece past
  /// the reservation would trap).
  @Test func theLongestJSONFitsItsReservation() throws {
    let body = StatusBody(
      room: String(repeating: "r", count: 64), state: "admitted", position: Int.min, waiting: Int.min,
      etaSeconds: Int.min, pollAfterMilliseconds: Int.min, admitted: false,
      pass: String(repeating: "p", count: 300))
    let json = body.json
    #expect(json.utf8.count <= body.maximumJSONLength)
    #expect(try JSONSerialization.jsonObject(with: Data(json.utf8)) is [String: Any])
  }

  @Test func theJSONIsWhatAJSONParserReadsBack() throws {
    let bodies = [
      StatusBody(
        room: "r1", state: "queue", position: 12, waiting: 3_456, etaSeconds: 70,
        pollAfterMilliseconds: 2_150,
        admitted: false),
      StatusBody(
        room: "r1", state: "paused", position: nil, waiting: nil, etaSeconds: nil, pollAfterMilliseconds: 0,
        admitted: true, pass: "v1.p.r1.abc.1.k.mac"),
    ]
    for body in bodies {
      let object = try #require(
        try JSONSerialization.jsonObject(with: Data(body.json.utf8)) as? [String: Any])
      #expect(object["room"] as? String == body.room)
      #expect(object["state"] as? String == body.state)
      #expect((object["position"] as? Int) == body.position)
      #expect((object["waiting"] as? Int) == body.waiting)
      #expect((object["etaSeconds"] as? Int) == body.etaSeconds)
      #expect(object["pollAfterMs"] as? Int == body.pollAfterMilliseconds)
      #expect(object["admitted"] as? Bool == body.admitted)
      #expect(object["pass"] as? String == body.pass)
      #expect(object.count == (body.pass == nil ? 7 : 8))
    }
  }
}
