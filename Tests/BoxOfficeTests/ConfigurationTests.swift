import BoxOffice
import Foundation
import FoyerConfig
import FoyerCore
import FoyerLogging
import Testing

@Suite struct ConfigurationTests {
  let keyRing = TestBoxOffice.keyRing

  /// The shipped file documents the defaults: parsed, it equals the code's defaults.
  @Test func shippedFileStatesTheDefaults() throws {
    let url = URL(fileURLWithPath: #filePath).deletingLastPathComponent()
      .appendingPathComponent("../../config/boxoffice.yaml")
    let parsed = try BoxOfficeConfiguration.parse(
      yaml: try String(contentsOf: url, encoding: .utf8), keyRing: keyRing)
    let defaults = BoxOfficeConfiguration(keyRing: keyRing)
    #expect(parsed.host == defaults.host && parsed.port == defaults.port)
    #expect(
      parsed.databaseURL == defaults.databaseURL && parsed.databaseConnections == defaults.databaseConnections
    )
    #expect(parsed.migrateOnStart == defaults.migrateOnStart)
    #expect(parsed.redisURL == nil && parsed.guardMilliseconds == defaults.guardMilliseconds)
    #expect(
      parsed.holdDuration == defaults.holdDuration && parsed.maxSeatsPerHold == defaults.maxSeatsPerHold)
    #expect(parsed.identity == defaults.identity && parsed.room == defaults.room)
    #expect(parsed.payments == defaults.payments)
    #expect(parsed.maxBodyBytes == defaults.maxBodyBytes)
    #expect(parsed.log == defaults.log)
    #expect(parsed.holdAttemptsPerMinute == defaults.holdAttemptsPerMinute)
    #expect(parsed.maxSeatsPerVisitor == defaults.maxSeatsPerVisitor)
    #expect(parsed.buyers.lifetime == defaults.buyers.lifetime && parsed.buyers.secureCookie == defaults.buyers.secureCookie)
    #expect(parsed.cancelCutoff == defaults.cancelCutoff)
    #expect(parsed.waitlistOfferDuration == defaults.waitlistOfferDuration)
    #expect(parsed.staffToken == nil)
  }

  @Test func buyersOrdersAndWaitlistAreRead() throws {
    let parsed = try BoxOfficeConfiguration.parse(
      yaml: "buyers: {access_days: 7, secure_cookie: true}\norders: {cancel_until_hours_before: 0}\nwaitlist: {offer_seconds: 300}\n",
      keyRing: keyRing)
    #expect(parsed.buyers.lifetime == .seconds(7 * 86_400) && parsed.buyers.secureCookie)
    #expect(parsed.buyers.cookie("t").hasSuffix("; Secure"))
    #expect(parsed.cancelCutoff == .zero)
    #expect(parsed.waitlistOfferDuration == .seconds(300))
  }

  @Test func mistakesAreNamed() {
    func error(_ yaml: String) -> String {
      do {
        _ = try BoxOfficeConfiguration.parse(yaml: yaml, keyRing: keyRing)
        return "no error"
      } catch {
        return "\(error)"
      }
    }
    #expect(error("holds: {max_seats: 0}") == "holds.max_seats must be between 1 and 100 (got 0) (line 1)")
    #expect(error("visitors: {identity: anyone}").hasPrefix("visitors.identity must be pass or gateway"))
    #expect(error("colour: red") == "colour is not a known key (line 1)")
    #expect(error("buyers: {access_days: 0}").hasPrefix("buyers.access_days must be between 1 and 3650"))
    #expect(error("waitlist: {offer_minutes: 5}").hasPrefix("waitlist.offer_minutes is not a known key"))
    #expect(error("redis: {url: 'redis://127.0.0.1:6379'}") == "no error")
  }
}
