import HTTPWire
import NIOCore
import NIOHTTP1
import Testing

@testable import FoyerGateway

@Suite struct CookiesTests {
  func value(_ headers: [String], room: String = "r1") -> Substring? {
    Cookies.value(
      prefix: Cookies.visitorPrefix, room: room, in: HTTPHeaders(headers.map { ("Cookie", $0) }))
  }

  @Test func findsTheRoomsCookieExactly() {
    #expect(value(["foyer_v_r1=abc"]) == "abc")
    #expect(value(["a=1; foyer_v_r1=abc; b=2"]) == "abc")
    #expect(value(["a=1;foyer_v_r1=abc"]) == "abc")
    #expect(value(["a=1;   foyer_v_r1="]) == "")
    #expect(value(["a=1", "foyer_v_r1=second-header"]) == "second-header")
    // Longer names, other rooms, other kinds and values that merely contain the name do not match.
    #expect(value(["foyer_v_r10=x; foyer_v_r=y; foyer_p_r1=z; x=foyer_v_r1=w"]) == nil)
    #expect(value(["foyer_v_r10=x; foyer_v_r1=right"]) == "right")
    #expect(value(["foyer_v_r1"]) == nil)
    #expect(value([""]) == nil)
    #expect(value([";;; ;"]) == nil)
    #expect(value(["ü=ö; foyer_v_r1=é"]) == "é")
  }

  /// The one-scan lookup of both cookies finds what two `valueRange` lookups find.
  @Test func passVisitorAndPlaceAreFoundInOneScanAsInThree() {
    let headers = [
      "foyer_v_r1=abc", "a=1; foyer_p_r1=pass; foyer_v_r1=visitor", "foyer_v_r1=first; foyer_v_r1=second",
      "foyer_p_r1=p1; foyer_p_r1=p2; foyer_v_r1=v", "foyer_v_r10=x; foyer_p_r=y; foyer_v_r1", "", ";;",
      "x=foyer_p_r1=w; foyer_p_r1", "ü=ö; foyer_p_r1=é", "foyer_q_r1=q; foyer_v_r1=v", "foyer_q_r1=1; foyer_q_r1=2",
      "foyer_q_r10=x; foyer_q_r1",
    ]
    for header in headers {
      let bytes = Array(header.utf8)
      func text(_ range: Range<Int>?) -> String? { range.map { String(decoding: bytes[$0], as: UTF8.self) } }
      let both = Cookies.pollRanges(room: "r1", inHeader: bytes)
      #expect(
        text(both.pass) == text(Cookies.valueRange(prefix: Cookies.passPrefix, room: "r1", inHeader: bytes)),
        "\(header)")
      #expect(
        text(both.visitor)
          == text(Cookies.valueRange(prefix: Cookies.visitorPrefix, room: "r1", inHeader: bytes)), "\(header)"
      )
      #expect(
        text(both.place) == text(Cookies.valueRange(prefix: Cookies.placePrefix, room: "r1", inHeader: bytes)),
        "\(header)")
    }
    let all = Cookies.pollRanges(
      room: "r1", inHeader: Array("a=1; foyer_p_r1=pass; foyer_v_r1=v; foyer_q_r1=q".utf8))
    #expect(all.pass != nil && all.visitor != nil && all.place != nil)
  }

  @Test func gatewayCookiesAreStrippedAndTheRestKept() {
    // Through the one request rewriter: each Cookie line keeps its foreign pairs.
    func strip(_ values: [String]) -> [String] {
      let request = "GET / HTTP/1.1\r\nHost: x\r\n" + values.map { "Cookie: \($0)\r\n" }.joined() + "\r\n"
      let bytes = Array(request.utf8)
      let upstream = bytes.withUnsafeBytes { raw -> [UInt8] in
        guard case .head(let head) = RawHTTP.request(raw) else { return [] }
        let (out, _) = UpstreamRequestHead.write(
          raw, head, framing: .none, holder: nil, client: ClientForwarding(address: "10.0.0.1"),
          requestNumber: 1, allocator: ByteBufferAllocator())
        return Array(out.readableBytesView)
      }
      return upstream.withUnsafeBytes { raw in
        guard case .head(let head) = RawHTTP.request(raw) else { return ["unreadable"] }
        return head.fields.filter { String(decoding: raw[$0.name], as: UTF8.self).lowercased() == "cookie" }
          .map { String(decoding: raw[$0.value], as: UTF8.self) }
      }
    }
    #expect(strip(["theme=dark; foyer_p_r=x;a=1"]) == ["theme=dark; a=1"])
    #expect(strip(["foyer_v_r=1", "foyer_p_r=2"]) == [])
    #expect(strip(["a=1", "b=2; foyer_v_r=3"]) == ["a=1", "b=2"])
    #expect(strip(["theme=dark"]) == ["theme=dark"])
    #expect(strip(["xfoyer_v_=1; my_foyer_=2"]) == ["xfoyer_v_=1; my_foyer_=2"])
    #expect(strip(["a=1;\tFOYER_P_r=2"]) == ["a=1"])
    #expect(strip(["a=1; foyer_q_r=3; Foyer_Q_r=4"]) == ["a=1"])
  }
}
