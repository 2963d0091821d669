public import FoyerConfig

/// What the crowd does: read from a scenario file (`loadtest/onsale-*.yaml`), strictly — an
/// unknown key or a value out of range is an error naming the key and its line.
///
/// Where the crowd goes (gateway, admin API, database) is not part of it: that is a
/// `Target`, from flags, so one scenario runs against any deployment.
public struct Scenario: Sendable {
  /// Visitors in all, cheaters included.
  public var visitors = 2_000
  /// Seed of the crowd's random choices; 0 draws one (printed in the report).
  public var seed: UInt64 = 0
  /// Room settings applied through the admin API before the run (`starts_at` is set by the
  /// simulator from `arrivals.start_in_seconds`). Validated by the gateway itself.
  public var room: [(String, String)] = []

  // Arrivals.
  /// The on-sale starts this long after the run begins; the pre-queue arrives before it.
  public var startInSeconds = 5.0
  /// Visitors arriving before the start, spread evenly over the lead-in.
  public var prequeue = 400
  /// Visitors arriving within `burstSeconds` after the start.
  public var burst = 1_200
  public var burstSeconds = 3.0
  /// The rest arrive spread evenly over this long after the burst.
  public var tailSeconds = 15.0

  // Waiting.
  /// Share of visitors who give up while waiting: half leave (`POST /_foyer/leave`), half
  /// just stop polling (the queue drops them after `abandon_seconds`).
  public var abandonWaiting = 0.05
  /// Multiplies the server's `pollAfterMs` (1 = a well-behaved client).
  public var pollFactor = 1.0

  // Shopping.
  /// Relative weights of holding 1, 2, … 6 seats.
  public var seatWeights = [10, 35, 15, 25, 5, 10]
  /// Share who read a section's seat map and pick seats; the rest ask for the best available.
  public var readMap = 0.5
  /// Holds tried (another section each time) before a visitor gives up as sold out.
  public var holdAttempts = 3
  /// Time spent between holding and paying.
  public var thinkMilliseconds = 300
  /// Share who walk away with seats held (half release them, half let them expire).
  public var abandonHold = 0.05
  /// Share whose first card is declined; they pay again with a good one.
  public var declineFirst = 0.1
  /// Share who pay with the slow test card (it answers after BoxOffice's `payments.slow_ms`):
  /// their slot and hold stay busy meanwhile, as with a real 3-D Secure detour.
  public var slowCard = 0.02
  /// Share who send the same checkout again after it succeeded (a lost answer): the replay
  /// must return the same order.
  public var retrySameKey = 0.1
  /// Share who double-click "pay": two checkouts with one key at once; one order results.
  public var doubleSubmit = 0.05
  /// Share who try forged passes instead of queuing; none may be forwarded.
  public var cheaters = 0.02

  // After the checkout (`aftermarket:`), outside the room with the buyer credential.
  /// Share of buyers who cancel their order (and are refunded) a moment after buying.
  public var cancel = 0.0
  /// They cancel within this long of buying.
  public var cancelWithinSeconds = 10.0
  /// Share of visitors finding every seat gone who join the event's waitlist.
  public var waitlist = 0.0
  /// Share of waitlist offers bought; the rest are let run out (they pass to the next).
  public var claimOffer = 0.7
  /// A place in line is followed this long, then left.
  public var waitlistSeconds = 30.0

  /// Live changes through the admin API, at a time after the on-sale start.
  public var changes: [Change] = []

  // Proof of work. Every visitor solves the room's `challenge_bits` for real (the gateway
  // checks), but the simulator shares two cores with everything it tests, so a run may use
  // easy challenges that stand for hard ones: each solution's tries count
  // 2^(standsForBits − challenge_bits) times over, in a person's time and in the bots' budgets.
  /// The difficulty the run's challenges stand for; 0 = the room's own.
  public var standsForBits = 0
  /// A person's browser hashing speed (the waiting page's Web Workers), for the time a person
  /// spends solving; `loadtest/bench-challenge` measures it in headless Chromium.
  public var browserHashesPerSecond = 190_000.0

  /// The adversaries beside the humans (`bots:`), each counted apart in the report.
  public var bots = Bots()

  public struct Bots: Sendable {
    /// A minter: one address asking for new identities (cookieless joins), as fast as it can.
    public var minterIdentities = 0
    public var minterSeconds = 60.0
    /// A botnet: `botnetAddresses` addresses, each trying for `botnetPlacesPerAddress` places
    /// (under the per-client limits), arriving over the pre-queue and the rush, solving
    /// challenges with one budget of `botnetHashesPerSecond` (0 = one core of this machine,
    /// measured) and buying the most seats a hold allows.
    public var botnetAddresses = 0
    public var botnetPlacesPerAddress = 20
    public var botnetHashesPerSecond = 0.0
    /// A poll flooder: one visitor in line polling this often.
    public var flooderPollsPerSecond = 0
    /// A seat hoarder: one visitor who, once in, tries this many holds of `hoarderSeats` and pays for none.
    public var hoarderHolds = 0
    public var hoarderSeats = 6
    /// BoxOffice's `holds.max_seats_per_visitor`: no bot may hold more at once.
    public var seatCap = 8

    public init() {}

    public var any: Bool { minterIdentities > 0 || botnetAddresses > 0 || flooderPollsPerSecond > 0 || hoarderHolds > 0 }
  }

  // The run itself.
  /// Connections to the gateway at most (shared by the crowd, as a CDN edge would).
  public var connections = 256
  /// The run is cut off (and reported as unfinished) after this long.
  public var deadlineSeconds = 180.0
  /// Admin API samples (waiting, active, admitted) this often.
  public var sampleMilliseconds = 500
  /// Admissions are reported per window of this length.
  public var reportSeconds = 10.0
  /// The operator closes the room (state `closed`) once every seat is sold, so the line
  /// learns it at once instead of shopping an empty house.
  public var closeWhenSoldOut = true
  /// After the crowd is done: wait at most this long for held seats to run out before the
  /// "every held seat is sold or released" check.
  public var settleSeconds = 30.0

  public struct Change: Sendable {
    public var atSeconds: Double
    public var settings: [(String, String)]

  }

  public init() {}

  /// Parses a scenario file; a missing key keeps its default.
  public static func parse(yaml: String) throws(ConfigurationError) -> Scenario {
    var root = try ConfigSection.parse(yaml: yaml)
    var scenario = Scenario()
    if let value = try root.int("visitors", in: 1...10_000_000) { scenario.visitors = value }
    if let value = try root.int("seed", in: 0...Int.max) { scenario.seed = UInt64(value) }
    if var room = try root.section("room") {
      scenario.room = try room.allScalars()
      if scenario.room.contains(where: { $0.0 == "starts_at" }) {
        throw room.error("starts_at", "is set by the simulator from arrivals.start_in_seconds")
      }
      try room.finish()
    }
    if var arrivals = try root.section("arrivals") {
      if let value = try arrivals.double("start_in_seconds", in: 0...3_600) {
        scenario.startInSeconds = value
      }
      if let value = try arrivals.int("prequeue", in: 0...10_000_000) { scenario.prequeue = value }
      if let value = try arrivals.int("burst", in: 0...10_000_000) { scenario.burst = value }
      if let value = try arrivals.double("burst_seconds", in: 0...3_600) { scenario.burstSeconds = value }
      if let value = try arrivals.double("tail_seconds", in: 0...36_000) { scenario.tailSeconds = value }
      try arrivals.finish()
    }
    if var waiting = try root.section("waiting") {
      if let value = try waiting.double("abandon", in: 0...1) { scenario.abandonWaiting = value }
      if let value = try waiting.double("poll_factor", in: 0.1...10) { scenario.pollFactor = value }
      try waiting.finish()
    }
    if var shopping = try root.section("shopping") {
      if let value = try shopping.ints("seat_weights", in: 0...1_000_000) {
        guard (1...6).contains(value.count), value.contains(where: { $0 > 0 }) else {
          throw shopping.error("seat_weights", "must list 1 to 6 weights (for 1, 2, … seats), one above 0")
        }
        scenario.seatWeights = value
      }
      if let value = try shopping.double("read_map", in: 0...1) { scenario.readMap = value }
      if let value = try shopping.int("hold_attempts", in: 1...20) { scenario.holdAttempts = value }
      if let value = try shopping.int("think_ms", in: 0...600_000) { scenario.thinkMilliseconds = value }
      if let value = try shopping.double("abandon_hold", in: 0...1) { scenario.abandonHold = value }
      if let value = try shopping.double("decline_first", in: 0...1) { scenario.declineFirst = value }
      if let value = try shopping.double("slow_card", in: 0...1) { scenario.slowCard = value }
      if let value = try shopping.double("retry_same_key", in: 0...1) { scenario.retrySameKey = value }
      if let value = try shopping.double("double_submit", in: 0...1) { scenario.doubleSubmit = value }
      try shopping.finish()
    }
    if let value = try root.double("cheaters", in: 0...1) { scenario.cheaters = value }
    if var aftermarket = try root.section("aftermarket") {
      if let value = try aftermarket.double("cancel", in: 0...1) { scenario.cancel = value }
      if let value = try aftermarket.double("cancel_within_seconds", in: 0...3_600) {
        scenario.cancelWithinSeconds = value
      }
      if let value = try aftermarket.double("waitlist", in: 0...1) { scenario.waitlist = value }
      if let value = try aftermarket.double("claim", in: 0...1) { scenario.claimOffer = value }
      if let value = try aftermarket.double("waitlist_seconds", in: 1...3_600) { scenario.waitlistSeconds = value }
      try aftermarket.finish()
    }
    if var challenge = try root.section("challenge") {
      if let value = try challenge.int("stands_for_bits", in: 0...32) { scenario.standsForBits = value }
      if let value = try challenge.double("browser_hashes_per_second", in: 1...1e12) {
        scenario.browserHashesPerSecond = value
      }
      try challenge.finish()
    }
    if var bots = try root.section("bots") {
      if var minter = try bots.section("minter") {
        if let value = try minter.int("identities", in: 0...10_000_000) { scenario.bots.minterIdentities = value }
        if let value = try minter.double("seconds", in: 1...36_000) { scenario.bots.minterSeconds = value }
        try minter.finish()
      }
      if var botnet = try bots.section("botnet") {
        if let value = try botnet.int("addresses", in: 0...65_000) { scenario.bots.botnetAddresses = value }
        if let value = try botnet.int("places_per_address", in: 1...10_000) {
          scenario.bots.botnetPlacesPerAddress = value
        }
        if let value = try botnet.double("hashes_per_second", in: 0...1e12) {
          scenario.bots.botnetHashesPerSecond = value
        }
        try botnet.finish()
      }
      if var flooder = try bots.section("flooder") {
        if let value = try flooder.int("polls_per_second", in: 0...100_000) {
          scenario.bots.flooderPollsPerSecond = value
        }
        try flooder.finish()
      }
      if var hoarder = try bots.section("hoarder") {
        if let value = try hoarder.int("holds", in: 0...10_000) { scenario.bots.hoarderHolds = value }
        if let value = try hoarder.int("seats", in: 1...100) { scenario.bots.hoarderSeats = value }
        try hoarder.finish()
      }
      if let value = try bots.int("seat_cap", in: 1...1_000) { scenario.bots.seatCap = value }
      try bots.finish()
    }
    if let changes = try root.sections("changes") {
      for var change in changes {
        guard let at = try change.double("at_seconds", in: 0...36_000) else {
          throw change.error("at_seconds", "is required")
        }
        let settings = try change.allScalars().filter { $0.0 != "at_seconds" }
        guard !settings.isEmpty else {
          throw change.error("at_seconds", "needs at least one setting to change")
        }
        if settings.contains(where: { $0.0 == "starts_at" }) {
          throw change.error("starts_at", "cannot be changed during a run")
        }
        scenario.changes.append(Change(atSeconds: at, settings: settings))
      }
      scenario.changes.sort { $0.atSeconds < $1.atSeconds }
    }
    if var run = try root.section("run") {
      if let value = try run.int("connections", in: 1...65_536) { scenario.connections = value }
      if let value = try run.double("deadline_seconds", in: 1...86_400) { scenario.deadlineSeconds = value }
      if let value = try run.int("sample_ms", in: 50...60_000) { scenario.sampleMilliseconds = value }
      if let value = try run.double("report_seconds", in: 1...3_600) { scenario.reportSeconds = value }
      if let value = try run.double("settle_seconds", in: 0...3_600) { scenario.settleSeconds = value }
      if let value = try run.bool("close_when_sold_out") { scenario.closeWhenSoldOut = value }
      try run.finish()
    }
    try root.finish()
    guard scenario.prequeue + scenario.burst <= scenario.visitors else {
      throw ConfigurationError(
        "arrivals.prequeue + arrivals.burst (\(scenario.prequeue + scenario.burst)) exceeds visitors (\(scenario.visitors))"
      )
    }
    return scenario
  }
}
