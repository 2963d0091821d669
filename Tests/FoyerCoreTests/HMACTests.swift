import FoyerCore
import Testing

/// RFC 4231 §4 test vectors for HMAC-SHA256 (cases 1–4, 6, 7; case 5 tests truncation).
@Suite struct HMACTests {
  struct Vector: Sendable, CustomTestStringConvertible {
    let name: String
    let key: [UInt8]
    let data: [UInt8]
    let mac: String
    var testDescription: String { name }
  }

  static let vectors: [Vector] = [
    Vector(
      name: "case 1", key: [UInt8](repeating: 0x0b, count: 20), data: Array("Hi There".utf8),
      mac: "b0344c61d8db38535ca8afceaf0bf12b881dc200c9833da726e9376c2e32cff7"),
    Vector(
      name: "case 2", key: Array("Jefe".utf8), data: Array("what do ya want for nothing?".utf8),
      mac: "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"),
    Vector(
      name: "case 3", key: [UInt8](repeating: 0xaa, count: 20), data: [UInt8](repeating: 0xdd, count: 50),
      mac: "773ea91e36800e46854db8ebd09181a72959098b3ef8c122d9635514ced565fe"),
    Vector(
      name: "case 4", key: Array(1...25), data: [UInt8](repeating: 0xcd, count: 50),
      mac: "82558a389a443c0ea4cc819899f2083a85f0faa3e578f8077a2e3ff46729665b"),
    Vector(
      name: "case 6", key: [UInt8](repeating: 0xaa, count: 131),
      data: Array("Test Using Larger Than Block-Size Key - Hash Key First".utf8),
      mac: "60e431591ee0b67f0d8a26aacbf5b77f8e0bc6213728c5140546040f0ee37f54"),
    Vector(
      name: "case 7", key: [UInt8](repeating: 0xaa, count: 131),
      data: Array(
        ("This is a test using a larger than block-size key and a larger than block-size data. "
          + "The key needs to be hashed before being used by the HMAC algorithm.").utf8),
      mac: "9b09ffa71b942fcb27635fbcd5b0e944bfdc63644f0713938a7f51535c3a35e2"),
  ]

  @Test(arguments: vectors)
  func rfc4231(_ vector: Vector) throws {
    let hmac = try HMACSHA256(key: vector.key)
    #expect(hex(hmac.authenticate(vector.data)) == vector.mac)
    // The context is reused: a second message under the same key gives the same answer.
    #expect(hex(hmac.authenticate(vector.data)) == vector.mac)
  }

  @Test func constantTimeComparison() {
    #expect(constantTimeEquals([1, 2, 3], [1, 2, 3]))
    #expect(!constantTimeEquals([1, 2, 3], [1, 2, 4]))
    #expect(!constantTimeEquals([1, 2, 3], [1, 2]))
    #expect(constantTimeEquals([UInt8](), [UInt8]()))
  }

  func hex(_ bytes: [UInt8]) -> String {
    bytes.map { String($0, radix: 16).count == 1 ? "0" + String($0, radix: 16) : String($0, radix: 16) }
      .joined()
  }
}

@Suite struct Base64URLTests {
  @Test func roundTripsEveryLength() {
    for length in 0..<70 {
      let bytes = (0..<length).map { UInt8(truncatingIfNeeded: $0 &* 37 &+ 11) }
      let text = Base64URL.encode(bytes)
      #expect(!text.contains("=") && !text.contains("+") && !text.contains("/"))
      #expect(Base64URL.decode(text) == bytes)
    }
  }

  @Test func knownValues() {
    #expect(Base64URL.encode(Array("foobar".utf8)) == "Zm9vYmFy")
    #expect(Base64URL.encode(Array("fooba".utf8)) == "Zm9vYmE")
    #expect(Base64URL.encode([0xfb, 0xff]) == "-_8")
  }

  @Test func rejectsNonCanonicalAndForeignInput() {
    #expect(Base64URL.decode("Zm9vYmE=") == nil)  // padding
    #expect(Base64URL.decode("Zm9v+mE") == nil)  // standard alphabet
    #expect(Base64URL.decode("Z") == nil)  // impossible length
    #expect(Base64URL.decode("Zm9vYmF") == nil)  // non-zero trailing bits
    #expect(Base64URL.decode("Zm9vYmé") == nil)
  }
}
