import Testing

@testable import FoyerGateway
import HTTPWire

@Suite struct CanonicalTargetTests {
  static let rewrites: [(String, String)] = [
    ("//events", "/events"),
    ("///events?x=1//", "/events?x=1//"),
    ("/a/b/../c", "/a/c"),
    ("/a/./b/.", "/a/b/"),
    ("/a/b/..", "/a/"),
    ("/..", "/"),
    ("/../../x", "/x"),
    ("/%65vents", "/events"),
    ("/%2e%2E/events", "/events"),
    ("/x/%7e", "/x/~"),
    ("/x/%3a%c3%a9", "/x/%3A%C3%A9"),
    ("/events//", "/events/"),
  ]

  @Test(arguments: rewrites) func pathsBecomeCanonical(input: String, canonical: String) {
    #expect(CanonicalTarget.canonicalize(input) == .rewritten(target: canonical, authority: nil))
    // The canonical form is a fixed point, and the express lane's quick test agrees with it.
    #expect(CanonicalTarget.canonicalize(canonical) == .canonical)
  }

  @Test func canonicalTargetsAreLeftAlone() {
    for target in ["/", "/events", "/events/", "/a/b?q=%2F&x=/../", "/.well-known/x", "/a.b/c..d"] {
      #expect(CanonicalTarget.canonicalize(target) == .canonical, "\(target)")
      let plain = Array(target.utf8).withUnsafeBytes { CanonicalTarget.isPlainlyCanonical($0[...]) }
      // Conservative: never true where canonicalize would change something.
      if plain { #expect(CanonicalTarget.canonicalize(target) == .canonical) }
    }
  }

  @Test func absoluteFormBecomesOriginForm() {
    #expect(
      CanonicalTarget.canonicalize("http://Example.com:8080") == .rewritten(target: "/", authority: "Example.com:8080"))
    #expect(
      CanonicalTarget.canonicalize("HTTPS://h/a/../b?x") == .rewritten(target: "/b?x", authority: "h"))
    #expect(CanonicalTarget.normalizedHost("Example.COM.:443") == "example.com")
    #expect(CanonicalTarget.normalizedHost("[::1]:80") == "[::1]")
  }

  @Test func ambiguousTargetsAreRefused() {
    for target in [
      "", "events", "/%2Fevents", "/x/..%2fevents", "/a%5Cb", "/a\\b", "/a%00", "/a%1f", "/a%7F", "/a%zz", "/a%6",
      "/a#frag", "/caf\u{e9}", "http://user@h/", "http:///x", "ftp://h/x", "h:443",
    ] {
      guard case .refused = CanonicalTarget.canonicalize(target) else {
        Issue.record("\(target) was not refused: \(CanonicalTarget.canonicalize(target))")
        continue
      }
    }
  }
}
