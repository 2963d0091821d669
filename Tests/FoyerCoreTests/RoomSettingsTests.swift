import FoyerCore
import Testing

@Suite struct RoomSettingsTests {
  @Test func defaultsAreValidAndRoundTripThroughFields() throws {
    let settings = RoomSettings(state: .paused, ratePerMinute: 90, startsAtMilliseconds: 1_800_000_000_000)
    try settings.validate()
    let copy = try RoomSettings(fields: Dictionary(uniqueKeysWithValues: settings.fields))
    #expect(copy == settings)
  }

  @Test func outOfRangeValuesNameTheField() {
    let cases: [(RoomSettings, String)] = [
      (RoomSettings(ratePerMinute: -1), "rate_per_minute"), (RoomSettings(maxActive: -1), "max_active"),
      (RoomSettings(sessionSeconds: 9), "session_seconds"), (RoomSettings(claimSeconds: 0), "claim_seconds"),
      (RoomSettings(abandonSeconds: 9_000), "abandon_seconds"),
      (RoomSettings(jitterMilliseconds: -1), "jitter_ms"),
      (RoomSettings(maxQueue: -1), "max_queue"),
    ]
    for (settings, field) in cases {
      #expect(throws: RoomSettingsError.self) { try settings.validate() }
      do { try settings.validate() } catch { #expect(error.field == field) }
    }
  }

  @Test func unknownStateAndFieldAreRefused() {
    var settings = RoomSettings()
    #expect(throws: RoomSettingsError.self) { try settings.set("state", to: "open") }
    #expect(throws: RoomSettingsError.self) { try settings.set("colour", to: "blue") }
    #expect(throws: RoomSettingsError.self) { try settings.set("max_active", to: "many") }
  }

  @Test func waitEstimate() {
    let near = WaitEstimate(
      position: 1, measuredPerMinute: 0, configuredPerMinute: 60, admitting: true, secondsUntilStart: 0,
      abandonSeconds: 120, random: 0.5)
    #expect(near.etaSeconds == 1)
    #expect((1_600...2_400).contains(near.pollAfterMilliseconds))
    let far = WaitEstimate(
      position: 1_000_000, measuredPerMinute: 6_000, configuredPerMinute: 60, admitting: true,
      secondsUntilStart: 30, abandonSeconds: 120, random: 0.5)
    #expect(far.etaSeconds == 10_000 + 30)
    #expect(far.pollAfterMilliseconds == 30_000)
    let paused = WaitEstimate(
      position: 5, measuredPerMinute: 100, configuredPerMinute: 100, admitting: false, secondsUntilStart: 0,
      abandonSeconds: 120, random: 0)
    #expect(paused.etaSeconds == nil)
    // Polls always come well within the abandonment time.
    let strict = WaitEstimate(
      position: 500_000, measuredPerMinute: 1, configuredPerMinute: 1, admitting: true, secondsUntilStart: 0,
      abandonSeconds: 6, random: 1)
    #expect(strict.pollAfterMilliseconds <= 2_400)
  }
}
