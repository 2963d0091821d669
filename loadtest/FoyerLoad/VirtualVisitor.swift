internal import AsyncHTTPClient
internal import Foundation
internal import FoyerCore
internal import NIOHTTP1

/// What happened to one visitor, in seconds since the run began.
struct VisitorRecord: Sendable {
  enum Outcome: String, Codable, CaseIterable, Sendable {
    case bought
    case soldOut = "sold_out"
    case leftWaiting = "left_waiting"
    case vanishedWaiting = "vanished_waiting"
    case abandonedHold = "abandoned_hold"
    case holdLost = "hold_lost"
    case passExpired = "pass_expired"
    case closed
    case cheater
    /// Refused a place (a per-client limit, a bad solution): the gateway's error code is kept.
    case refused
    case failed
    case unfinished
  }

  /// Who this is: a person, or one of the scenario's bots.
  enum Role: String, Codable, CaseIterable, Sendable {
    case human, minter, botnet, flooder, hoarder
  }

  var index: Int
  var role = Role.human
  /// When it first asked for the event (the page, or an app's first status).
  var arrivedAt: Double?
  /// Whether the gateway gave it a place in line (or admitted it at once).
  var place = false
  /// The gateway's error code when a place was refused.
  var refusal: String?
  /// Solutions sent, and the hashes they stand for (`Scenario.standsForBits`).
  var solutions = 0
  var hashes = 0.0
  /// The most seats it held at once (the hoarder), and a flooder's polls and early ones.
  var seatsHeldMost = 0
  var floodPolls = 0
  var floodRefused = 0
  /// When the join request was sent: with proof of work, the solution's.
  var joinedAt: Double?
  /// Whether the join reached the gateway before the on-sale start; `nil` when too close to call.
  var joinedBeforeStart: Bool?
  /// When the visitor learned it was admitted (a little after the admission itself).
  var admittedAt: Double?
  /// The pass's expiry: the end of the slot for a visitor who walks away.
  var passExpiresAt: Double?
  /// When the visitor saw its slot given back (the order's answer, or leaving).
  var endedAt: Double?
  var polls = 0
  var outcome = Outcome.unfinished
  var orderID: String?
  var tickets = 0
  /// After the sale: the order cancelled (and refunded); a waitlist place, its offer, and
  /// whether the offer was bought (its order in `orderID`) or let run out.
  var cancelled = false
  var waitlisted = false
  var offered = false
  var claimedOffer = false
  var letOfferLapse = false
}

/// Everything the visitors share: the connection pool, the target, the clock.
struct Crowd: Sendable {
  let client: HTTPClient
  /// The gateways, taken in turn.
  let bases: [String]
  let room: String
  let event: String
  let sections: [String]
  let scenario: Scenario
  let recorder: Recorder
  let origin: ContinuousClock.Instant
  /// The wall clock at `origin`, to place pass expiries (unix seconds) on the run's clock.
  let wallOrigin: Double
  /// The on-sale start, on the run's clock.
  let startsAt: Double
  /// The poll flooder's own connections.
  let floodClient: HTTPClient
  /// The hash budgets of the minter and of the botnet (each one machine's cores).
  let minterBudget: HashBudget
  let botnetBudget: HashBudget

  func now() -> Double { seconds(ContinuousClock.now - origin) }

  func runTime(unixSeconds: Double) -> Double { unixSeconds - wallOrigin }
}

func seconds(_ duration: Duration) -> Double {
  let (whole, attoseconds) = duration.components
  return Double(whole) + Double(attoseconds) / 1e18
}

/// A small seeded generator (SplitMix64), written here because the standard library has no
/// seedable one: a scenario with a seed must make the same crowd again.
struct SplitMix64: RandomNumberGenerator {
  private var state: UInt64
  init(seed: UInt64) { state = seed }
  mutating func next() -> UInt64 {
    state &+= 0x9E37_79B9_7F4A_7C15
    var z = state
    z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
    z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
    return z ^ (z >> 31)
  }
}

/// One visitor's journey: open the event page, wait in line polling the status, hold seats,
/// pay, leave. Its personality (abandons, reads the map, double-clicks…) is drawn from the
/// scenario's shares with its own seeded generator.
struct VirtualVisitor {
  let crowd: Crowd
  var browser: Browser
  var record: VisitorRecord
  /// The order this buyer will cancel once the checkout is done.
  var pendingCancel: String?
  /// When the waiting page said to ask first (its `pollAfterMs`), in seconds.
  private var firstPollAfter = 1.0
  var random: SplitMix64

  private var scenario: Scenario { crowd.scenario }
  private var passCookie: String { "foyer_p_\(crowd.room)" }
  private var visitorCookie: String { "foyer_v_\(crowd.room)" }

  init(index: Int, role: VisitorRecord.Role = .human, crowd: Crowd, seed: UInt64) {
    self.crowd = crowd
    browser = Browser(client: crowd.client, bases: crowd.bases, first: index, recorder: crowd.recorder)
    record = VisitorRecord(index: index)
    record.role = role
    // Bots draw from a stream of their own: the humans of a run with bots are the same people.
    random = SplitMix64(
      seed: (role == .human ? seed : ~seed) ^ (UInt64(index) &* 0x2545_F491_4F6C_DD1D))
    browser.forwardedFor = Self.address(role: role, index: index)
  }

  /// Each person comes from an address of their own; the bots from theirs (the gateway
  /// believes `X-Forwarded-For` from the simulator's loopback, its trusted proxy).
  static func address(role: VisitorRecord.Role, index: Int) -> String {
    switch role {
    case .human: "10.\(index >> 16 & 255).\(index >> 8 & 255).\(index & 255)"
    case .minter: "203.0.113.7"
    case .botnet: "198.18.\(index >> 8 & 255).\(index & 255)"
    case .flooder: "192.0.2.1"
    case .hoarder: "192.0.2.2"
    }
  }

  private mutating func chance(_ share: Double) -> Bool { Double.random(in: 0..<1, using: &random) < share }

  mutating func run() async -> VisitorRecord {
    switch record.role {
    case .human:
      if chance(scenario.cheaters) {
        await cheat()
      } else if await join(), await waitForTurn() {
        await shop(quantity: pickQuantity())
      }
    case .minter, .botnet:
      // Scalpers: a place bought with the identity, then the most seats one hold gives.
      if await joinAsApp(), await waitForTurn() { await shop(quantity: scenario.bots.hoarderSeats) }
    case .flooder:
      if await joinAsApp() { await flood() }
    case .hoarder:
      if await joinAsApp(), await waitForTurn() { await hoard() }
    }
    return record
  }

  // MARK: Waiting

  /// Opens the event page as a browser does: the waiting page and the visitor cookie, or a
  /// 307 with the pass when the join admits at once.
  private mutating func join() async -> Bool {
    for attempt in 0..<5 {
      let sent = crowd.now()
      record.arrivedAt = record.arrivedAt ?? sent
      record.joinedAt = sent
      guard
        let reply = await browser.send(
          .page, .GET, "/events/\(crowd.event)", headers: [("accept", "text/html")])
      else {
        guard await pause(seconds: 1 + Double(attempt)) else { return false }
        continue
      }
      joined(sent: sent, received: crowd.now())
      switch reply.status {
      case 200 where browser.cookies[visitorCookie] != nil:
        let page = reply.text
        if let challenge = Self.pageValue(page, "var challenge = \""), !challenge.isEmpty,
          let bits = Self.pageValue(page, "bits = Number(\"").flatMap({ Int($0) })
        {
          // The page's workers solve it, then the page posts the solution.
          guard let answer = await solve(challenge, bits: bits) else { return false }
          return placed(answer)
        }
        record.place = true
        // The page's script waits the `pollAfterMs` it was rendered with before its first poll.
        firstPollAfter = Self.pageValue(page, "poll = Number(\"").flatMap(Double.init).map { $0 / 1_000 } ?? 1
        return true
      case 429, 403:
        return refused(reply)
      case 307 where browser.cookies[passCookie] != nil:
        admitted()
        return true
      case 503:
        guard await pause(seconds: Double(reply.headers.first(name: "retry-after") ?? "") ?? 1) else {
          return false
        }
      default:
        return unexpected("the event page answered \(reply.status) without the gateway's cookie")
      }
    }
    record.outcome = .failed
    return false
  }

  /// Polls `/_foyer/status` at the interval the server asks for until admitted.
  private mutating func waitForTurn() async -> Bool {
    let abandons = chance(scenario.abandonWaiting)
    let polite = chance(0.5)
    let abandonAfter = Int.random(in: 1...4, using: &random)
    var pollAfter = firstPollAfter
    while record.admittedAt == nil {
      if abandons && record.polls >= abandonAfter {
        if polite {
          await leave()
          record.outcome = .leftWaiting
        } else {
          record.outcome = .vanishedWaiting
        }
        return false
      }
      guard await pause(seconds: pollAfter * scenario.pollFactor) else { return false }
      record.polls += 1
      guard let reply = await browser.send(.status, .GET, "/_foyer/status?room=\(crowd.room)") else {
        pollAfter = 1
        continue
      }
      if reply.status == 503 {
        pollAfter = Double(reply.headers.first(name: "retry-after") ?? "") ?? 1
        continue
      }
      if reply.status == 429 || reply.status == 403, !reply.isPollTooSoon {
        // The place was lost and joining again is refused (a bot address over its limit).
        return refused(reply)
      }
      guard reply.status == 200, let status = reply.decode(GatewayStatus.self) else {
        return unexpected("status poll answered \(reply.status): \(reply.text.prefix(100))")
      }
      if let challenge = status.challenge {
        // The place was lost (polls stopped for too long): a new one costs work again.
        guard let answer = await solve(challenge, bits: status.bits ?? 0), placed(answer) else { return false }
        if record.admittedAt == nil { pollAfter = firstPollAfter }
        continue
      }
      if status.admitted {
        if browser.cookies[passCookie] == nil, let pass = status.pass { browser.cookies[passCookie] = pass }
        admitted()
      } else if status.state == "closed" {
        record.outcome = .closed
        return false
      } else {
        pollAfter = Double(max(status.pollAfterMs, 50)) / 1_000
      }
    }
    return true
  }

  /// The waiting page's script's `<prefix><value>"`: its poll interval, challenge and bits.
  static func pageValue(_ page: String, _ prefix: String) -> String? {
    guard let start = page.range(of: prefix)?.upperBound, let end = page[start...].firstIndex(of: "\"")
    else { return nil }
    return String(page[start..<end])
  }

  /// A join request sent at `sent` and answered at `received`: before or after the start,
  /// unless too close to call.
  private mutating func joined(sent: Double, received: Double) {
    record.joinedAt = sent
    record.joinedBeforeStart =
      received < crowd.startsAt - 0.1 ? true : sent > crowd.startsAt + 0.1 ? false : nil
  }

  /// An app's join: `GET /_foyer/status` without a visitor id, a challenge solved if asked.
  private mutating func joinAsApp() async -> Bool {
    let sent = crowd.now()
    record.arrivedAt = sent
    record.joinedAt = sent
    guard let reply = await browser.send(.status, .GET, "/_foyer/status?room=\(crowd.room)") else {
      record.outcome = .failed
      return false
    }
    joined(sent: sent, received: crowd.now())
    if reply.status == 200, let status = reply.decode(GatewayStatus.self), let challenge = status.challenge {
      guard let answer = await solve(challenge, bits: status.bits ?? 0) else { return false }
      return placed(answer)
    }
    return placed(reply)
  }

  /// A join's answer: a place (or a pass at once), or a refusal.
  private mutating func placed(_ reply: Reply) -> Bool {
    guard reply.status == 200 else { return refused(reply) }
    guard let status = reply.decode(GatewayStatus.self), status.challenge == nil else {
      return unexpected("a join answered \(reply.status): \(reply.text.prefix(100))")
    }
    record.place = true
    if status.admitted {
      if browser.cookies[passCookie] == nil, let pass = status.pass { browser.cookies[passCookie] = pass }
      admitted()
    } else {
      firstPollAfter = Double(max(status.pollAfterMs, 50)) / 1_000
    }
    return true
  }

  private mutating func refused(_ reply: Reply) -> Bool {
    guard reply.status == 429 || reply.status == 403 || reply.status == 400,
      let error = reply.decode(ErrorAnswer.self)
    else { return unexpected("a join answered \(reply.status): \(reply.text.prefix(100))") }
    record.refusal = error.error
    record.outcome = .refused
    return false
  }

  /// Solves a challenge for real, spends the time (or budget) the difficulty it stands for
  /// costs this visitor, and sends the solution: the gateway's answer.
  private mutating func solve(_ challenge: String, bits: Int) async -> Reply? {
    let (counter, tries) = Challenge.solve(challenge, bits: bits, startingAt: random.next() >> 16)
    let hashes = Double(tries) * Double(1 << max(scenario.standsForBits - bits, 0))
    record.solutions += 1
    record.hashes += hashes
    let seconds =
      switch record.role {
      case .minter: crowd.minterBudget.spend(hashes, now: crowd.now())
      case .botnet: crowd.botnetBudget.spend(hashes, now: crowd.now())
      case .human, .flooder, .hoarder: hashes / scenario.browserHashesPerSecond
      }
    guard await pause(seconds: seconds) else { return nil }
    // A challenge is base64url fields and dots: nothing to escape in a query (the gateway reads it as is).
    let sent = crowd.now()
    guard
      let reply = await browser.send(
        .solve, .POST, "/_foyer/solve?room=\(crowd.room)&challenge=\(challenge)&solution=\(counter)")
    else {
      record.outcome = .failed
      return nil
    }
    // The place is asked for with the solution: that is when this visitor joins the line.
    joined(sent: sent, received: crowd.now())
    return reply
  }

  /// Polls far sooner than told, from 16 connections of its own, until admitted or the room
  /// closes; then leaves.
  private mutating func flood() async {
    let rate = Double(scenario.bots.flooderPollsPerSecond)
    var jar = Browser(client: crowd.floodClient, bases: crowd.bases, first: 0, recorder: crowd.recorder)
    jar.cookies = browser.cookies
    jar.forwardedFor = browser.forwardedFor
    let room = crowd.room
    let connections = 16
    let counts = await withTaskGroup(of: (polls: Int, early: Int, admitted: Bool).self) { group in
      for _ in 0..<connections {
        group.addTask { [jar] in
          var polls = 0
          var early = 0
          while !Task.isCancelled {
            try? await Task.sleep(for: .milliseconds(Int(Double(connections) * 1_000 / rate)))
            guard let reply = await jar.sendCopy(.flood, .GET, "/_foyer/status?room=\(room)") else { continue }
            polls += 1
            if reply.isPollTooSoon { early += 1; continue }
            if let status = reply.decode(GatewayStatus.self), status.admitted || status.state == "closed" {
              return (polls, early, status.admitted)
            }
          }
          return (polls, early, false)
        }
      }
      // Each connection stops by itself once it sees the admission (or the room closed).
      var total = (polls: 0, early: 0, admitted: false)
      for await count in group {
        total.polls += count.polls
        total.early += count.early
        total.admitted = total.admitted || count.admitted
      }
      return total
    }
    if counts.admitted { record.admittedAt = crowd.now() }
    record.floodPolls = counts.polls
    record.floodRefused = counts.early
    record.outcome = .leftWaiting
    await leave()
  }

  /// Once in: hold after hold (the most seats, then 2, then 1, over again), paying for none,
  /// to see how many one pass can keep from everyone else; then gives them back.
  private mutating func hoard() async {
    struct HoldExpiry: Decodable { var expiresAt: String }
    var holds: [HoldAnswer] = []
    var expiries: [Date] = []
    let sections = crowd.sections.shuffled(using: &random)
    let sizes = [scenario.bots.hoarderSeats, 2, 1]
    for attempt in 0..<scenario.bots.hoarderHolds where !sections.isEmpty {
      let section = sections[attempt % sections.count]
      let body = "{\"section\":\(Self.jsonString(section)),\"quantity\":\(sizes[attempt % sizes.count])}"
      guard let reply = await browser.send(.hold, .POST, "/events/\(crowd.event)/holds", body: body),
        forwarded(reply, "hold")
      else { break }
      if reply.status == 201, let hold = reply.decode(HoldAnswer.self) {
        holds.append(hold)
        // Held at once: the holds not run out yet (BoxOffice's clock is this machine's).
        let now = Date()
        expiries.append(
          reply.decode(HoldExpiry.self).flatMap {
            try? Date.ISO8601FormatStyle(includingFractionalSeconds: true).parse($0.expiresAt)
          } ?? .distantFuture)
        let held = zip(holds, expiries).filter { $0.1 > now }.reduce(0) { $0 + $1.0.seats.count }
        record.seatsHeldMost = max(record.seatsHeldMost, held)
      } else if reply.status == 429 {
        guard await pause(seconds: Double(reply.headers.first(name: "retry-after") ?? "") ?? 1) else { break }
      } else if reply.status != 409 {
        _ = unexpected("a hoarder's hold answered \(reply.status): \(reply.text.prefix(100))")
        break
      }
    }
    if record.seatsHeldMost > scenario.bots.seatCap {
      crowd.recorder.violation(
        .seatCap, "one pass held \(record.seatsHeldMost) seats at once; the cap is \(scenario.bots.seatCap)")
    }
    for hold in holds { _ = await browser.send(.release, .DELETE, "/holds/\(hold.id)") }
    record.outcome = .abandonedHold
    await leave()
  }

  private mutating func admitted() {
    record.admittedAt = crowd.now()
    // `v1.p.<room>.<visitor>.<expiry>.<kid>.<mac>` (DESIGN §4).
    if let pass = browser.cookies[passCookie] {
      let fields = pass.split(separator: ".")
      if fields.count == 7, let expiry = Double(fields[4]) {
        record.passExpiresAt = crowd.runTime(unixSeconds: expiry)
      }
    }
  }

  // MARK: Shopping

  private struct SeatMap: Decodable {
    struct Seat: Decodable {
      var id: Int64
      var row: String
      var number: Int
      var status: String
    }
    var seats: [Seat]
  }

  private struct HoldAnswer: Decodable {
    struct Seat: Decodable { var id: Int64 }
    var id: String
    var seats: [Seat]
  }

  private struct OrderAnswer: Decodable {
    struct Ticket: Decodable { var seatId: Int64 }
    var id: String
    var tickets: [Ticket]
  }

  private struct ErrorAnswer: Decodable { var error: String }

  /// BoxOffice's "a request with this Idempotency-Key is still being processed".
  private static func isInFlight(_ reply: Reply) -> Bool {
    reply.status == 409 && reply.decode(ErrorAnswer.self)?.error == "request_in_progress"
  }

  /// What a checkout answer amounts to: the order it made, or the error it named.
  private static func outcome(_ reply: Reply) -> String {
    reply.decode(OrderAnswer.self).map { "order \($0.id)" } ?? reply.decode(ErrorAnswer.self)?.error ?? "?"
  }

  private mutating func shop(quantity: Int) async {
    let readsMap = chance(scenario.readMap)
    var hold: HoldAnswer?
    var sections = crowd.sections.shuffled(using: &random)
    for _ in 0..<scenario.holdAttempts where hold == nil && !sections.isEmpty {
      let section = sections.removeFirst()
      let encodedSection = section.addingPercentEncoding(withAllowedCharacters: .alphanumerics) ?? section
      let body: String
      if readsMap {
        guard
          let reply = await browser.send(
            .seats, .GET, "/events/\(crowd.event)/seats?section=\(encodedSection)"),
          forwarded(reply, "seat map")
        else { return }
        guard reply.status == 200, let map = reply.decode(SeatMap.self) else {
          _ = unexpected("seat map answered \(reply.status): \(reply.text.prefix(100))")
          return
        }
        guard let seats = choose(quantity, from: map.seats) else { continue }
        body = "{\"seatIds\":[\(seats.map(String.init).joined(separator: ","))]}"
      } else {
        body = "{\"section\":\(Self.jsonString(section)),\"quantity\":\(quantity)}"
      }
      guard let reply = await browser.send(.hold, .POST, "/events/\(crowd.event)/holds", body: body),
        forwarded(reply, "hold")
      else { return }
      switch reply.status {
      case 201:
        guard let answer = reply.decode(HoldAnswer.self), answer.seats.count == quantity else {
          _ = unexpected("a hold answered 201 with \(reply.text.prefix(100))")
          return
        }
        hold = answer
      case 409:
        continue
      default:
        _ = unexpected("a hold answered \(reply.status): \(reply.text.prefix(100))")
        return
      }
    }
    guard let hold else {
      let place = record.role == .human && chance(scenario.waitlist) ? await joinWaitlist(quantity) : nil
      await leave()
      record.outcome = .soldOut
      if let place { await follow(place) }
      return
    }

    guard
      await pause(
        seconds: Double(scenario.thinkMilliseconds) / 1_000 * Double.random(in: 0.5...1.5, using: &random))
    else { return }
    if chance(scenario.abandonHold) {
      record.outcome = .abandonedHold
      if chance(0.5) {
        if let reply = await browser.send(.release, .DELETE, "/holds/\(hold.id)"),
          forwarded(reply, "release"),
          !(200..<300).contains(reply.status)
        {
          _ = unexpected("releasing a hold answered \(reply.status)")
        }
        await leave()
      } else {
        record.endedAt = record.passExpiresAt
      }
      return
    }
    await checkout(hold)
    if let order = pendingCancel { await cancel(order) }
  }

  // MARK: After the sale

  private struct CancelAnswer: Decodable {
    struct Refund: Decodable { var status: String }
    var status: String
    var refund: Refund?
  }

  private struct PlaceAnswer: Decodable {
    var id: String
    var status: String
  }

  /// Cancels the order a while after buying, outside the room: the buyer cookie the checkout
  /// set is all it takes (the pass went back with the order).
  private mutating func cancel(_ order: String) async {
    try? await Task.sleep(
      for: .milliseconds(Int(Double.random(in: 0...scenario.cancelWithinSeconds, using: &random) * 1_000)))
    guard !Task.isCancelled, let reply = await browser.send(.cancel, .POST, "/orders/\(order)/cancel") else { return }
    guard reply.status == 200, let answer = reply.decode(CancelAnswer.self), answer.status == "cancelled",
      answer.refund != nil
    else {
      crowd.recorder.violation(.unexpectedAnswer, "cancelling an order answered \(reply.status): \(reply.text.prefix(100))")
      return
    }
    record.cancelled = true
    // Its tickets are void: what the visitor holds now is none.
    record.tickets = 0
  }

  /// Joins the sold-out event's waitlist with the pass still in hand; `nil` when seats came
  /// back meanwhile (409 `not_sold_out`) or the pass ran out.
  private mutating func joinWaitlist(_ quantity: Int) async -> String? {
    guard
      let reply = await browser.send(
        .waitlist, .POST, "/events/\(crowd.event)/waitlist", body: "{\"seats\":\(quantity)}"),
      !reply.isGatewayStatus, forwarded(reply, "waitlist")
    else { return nil }
    switch reply.status {
    case 201:
      record.waitlisted = true
      return reply.decode(PlaceAnswer.self)?.id
    case 409:
      return nil
    default:
      _ = unexpected("joining the waitlist answered \(reply.status): \(reply.text.prefix(100))")
      return nil
    }
  }

  /// Follows the place outside the room: buys an offer (or lets it run out), or leaves after
  /// `waitlist_seconds` with nothing offered.
  private mutating func follow(_ place: String) async {
    let until = crowd.now() + scenario.waitlistSeconds
    while crowd.now() < until {
      try? await Task.sleep(for: .milliseconds(Int(Double.random(in: 700...1_300, using: &random))))
      if Task.isCancelled { return }
      guard let reply = await browser.send(.waitlist, .GET, "/waitlist/\(place)") else { continue }
      guard reply.status == 200, let answer = reply.decode(PlaceAnswer.self) else {
        crowd.recorder.violation(.unexpectedAnswer, "a waitlist place answered \(reply.status): \(reply.text.prefix(100))")
        return
      }
      switch answer.status {
      case "waiting": continue
      case "offered":
        record.offered = true
        guard chance(scenario.claimOffer) else {
          record.letOfferLapse = true
          return
        }
        guard
          let paid = await browser.send(
            .checkout, .POST, "/waitlist/\(place)/checkout", headers: [("idempotency-key", UUID().uuidString)],
            body: Self.card("4242 4242 4242 4242"))
        else { return }
        switch paid.status {
        case 201:
          guard let order = paid.decode(OrderAnswer.self) else {
            crowd.recorder.violation(.unexpectedAnswer, "a waitlist checkout answered 201 with \(paid.text.prefix(100))")
            return
          }
          record.claimedOffer = true
          record.orderID = order.id
          record.tickets = order.tickets.count
        case 410:
          break  // the offer ran out while paying
        default:
          crowd.recorder.violation(
            .unexpectedAnswer, "a waitlist checkout answered \(paid.status): \(paid.text.prefix(100))")
        }
        return
      default:
        crowd.recorder.violation(.unexpectedAnswer, "a followed waitlist place became \(answer.status)")
        return
      }
    }
    if let reply = await browser.send(.waitlist, .DELETE, "/waitlist/\(place)"), ![204, 404].contains(reply.status) {
      crowd.recorder.violation(.unexpectedAnswer, "leaving the waitlist answered \(reply.status)")
    }
  }

  private mutating func checkout(_ hold: HoldAnswer) async {
    let path = "/holds/\(hold.id)/checkout"
    // BoxOffice's simulated provider's test cards: success, slow success, and two declines.
    let good = chance(scenario.slowCard) ? Self.card("4000 0000 0000 0077") : Self.card("4242 4242 4242 4242")
    if chance(scenario.declineFirst) {
      let declined = chance(0.5) ? Self.card("4000 0000 0000 0002") : Self.card("4000 0000 0000 9995")
      guard
        let reply = await browser.send(
          .checkout, .POST, path, headers: [("idempotency-key", UUID().uuidString)], body: declined),
        forwarded(reply, "checkout")
      else { return }
      switch reply.status {
      case 402:
        break
      case 410:
        // The hold ran out before the card was tried (seconds of queueing on a saturated
        // machine): lost, as with a good card.
        record.outcome = .holdLost
        await leave()
        return
      default:
        _ = unexpected("a declined card answered \(reply.status): \(reply.text.prefix(100))")
        return
      }
    }
    let key = [("idempotency-key", UUID().uuidString)]
    // Kept before the answer clears it: a client that never saw the answer still has it.
    let before = browser
    // The slot is given back after this request is sent, never before: ending the visitor's
    // count of it here keeps that count a lower bound of the gateway's.
    let sent = crowd.now()
    var answers: [Reply] = []
    if chance(scenario.doubleSubmit) {
      let jar = browser
      async let first = jar.sendCopy(.checkout, .POST, path, headers: key, body: good)
      async let second = jar.sendCopy(.checkout, .POST, path, headers: key, body: good)
      let replies = await [first, second].compactMap { $0 }
      // Two clicks at once: one of them runs, the other sees it in flight (409
      // `request_in_progress`) or replays its answer. That one answer may be an order or,
      // when the hold ran out while paying, a 410; either way both clicks agree on it.
      // A click the gateway answered itself came after the other's order gave the pass back
      // (`Foyer-Release: done`): the pass is refused from then on, rightly; not an answer.
      let finals = replies.filter { !Self.isInFlight($0) && !$0.isGatewayStatus }
      // (With one answer lost in transit, the one left may be the in-flight one.)
      if (finals.isEmpty && replies.count == 2) || Set(finals.map(Self.outcome)).count > 1 {
        crowd.recorder.violation(
          .idempotency,
          "double submit answered \(replies.map { "\($0.status) \(Self.outcome($0))" }) for hold \(hold.id)")
      }
      for reply in replies { browser.store(reply.headers) }
      answers = finals.isEmpty ? replies : [finals[0]]
    } else if let reply = await browser.send(.checkout, .POST, path, headers: key, body: good) {
      answers = [reply]
    }
    guard let reply = answers.first, forwarded(reply, "checkout") else { return }
    switch reply.status {
    case 201:
      guard let order = reply.decode(OrderAnswer.self), order.tickets.count == hold.seats.count else {
        _ = unexpected("checkout answered 201 with \(reply.text.prefix(100))")
        return
      }
      record.endedAt = sent
      record.outcome = .bought
      record.orderID = order.id
      record.tickets = order.tickets.count
      if browser.cookies[passCookie] != nil {
        crowd.recorder.violation(
          .unexpectedAnswer, "the order's answer did not clear the pass (Foyer-Release)")
      }
      // People change their minds; the scalpers' bots keep what they got.
      defer { if record.role == .human && chance(scenario.cancel) { pendingCancel = order.id } }
      if chance(scenario.retrySameKey) {
        // The answer was "lost": the same request again, with the pass still in the jar.
        // The order gave the pass back, so the gateway may refuse the replay itself; if it
        // does reach BoxOffice, the answer must be the same order.
        if let replay = await before.sendCopy(.checkout, .POST, path, headers: key, body: good),
          !replay.isGatewayStatus, forwarded(replay, "checkout replay")
        {
          if replay.status != 201 || replay.decode(OrderAnswer.self)?.id != order.id {
            crowd.recorder.violation(
              .idempotency,
              "a replay answered \(replay.status) \(replay.text.prefix(80)), not order \(order.id)")
          }
        }
      }
    case 410:
      record.outcome = .holdLost
      await leave()
    default:
      _ = unexpected("checkout answered \(reply.status): \(reply.text.prefix(100))")
    }
  }

  /// `n` seats side by side in one row if there are any, else any `n` available seats.
  private mutating func choose(_ quantity: Int, from seats: [SeatMap.Seat]) -> [Int64]? {
    let available = seats.filter { $0.status == "available" }
    guard available.count >= quantity else { return nil }
    var runs: [[Int64]] = []
    for row in Dictionary(grouping: available, by: \.row).values {
      let sorted = row.sorted { $0.number < $1.number }
      var start = 0
      while start + quantity <= sorted.count {
        let window = sorted[start..<start + quantity]
        if window.last!.number - window.first!.number == quantity - 1 {
          runs.append(window.map(\.id))
          start += quantity
        } else {
          start += 1
        }
      }
    }
    if let run = runs.randomElement(using: &random) { return run }
    return Array(available.shuffled(using: &random).prefix(quantity).map(\.id))
  }

  private mutating func pickQuantity() -> Int {
    let weights = scenario.seatWeights
    var draw = Int.random(in: 0..<weights.reduce(0, +), using: &random)
    for (index, weight) in weights.enumerated() {
      if draw < weight { return index + 1 }
      draw -= weight
    }
    return 1
  }

  // MARK: Helpers

  /// `POST /_foyer/leave`: gives the slot or the place back.
  private mutating func leave() async {
    let sent = crowd.now()
    if let reply = await browser.send(.leave, .POST, "/_foyer/leave?room=\(crowd.room)"), reply.status == 200
    {
      if record.admittedAt != nil { record.endedAt = sent }
    } else if record.admittedAt != nil {
      record.endedAt = record.passExpiresAt
    }
  }

  /// Checks that an answer to a request made with the pass came from upstream. BoxOffice
  /// checks passes itself: a 401 from it means the gateway forwarded without a valid pass. A
  /// gateway status answer means the pass was refused (it ran out): the journey ends.
  private mutating func forwarded(_ reply: Reply, _ what: String) -> Bool {
    if reply.status == 401 {
      crowd.recorder.violation(
        .forwardedWithoutPass, "\(what): upstream refused the pass: \(reply.text.prefix(100))")
      record.outcome = .failed
      return false
    }
    if reply.isGatewayStatus {
      // A pass that ran out (a session longer than `session_seconds`) is refused rightly.
      if let expiry = record.passExpiresAt, crowd.now() >= expiry - 1 {
        record.outcome = .passExpired
        return false
      }
      return unexpected("\(what): the gateway did not accept a pass it issued")
    }
    return true
  }

  private mutating func unexpected(_ detail: String) -> Bool {
    crowd.recorder.violation(.unexpectedAnswer, detail)
    record.outcome = .failed
    return false
  }

  /// Sleeps; false when the run was cut off meanwhile.
  private mutating func pause(seconds: Double) async -> Bool {
    try? await Task.sleep(for: .milliseconds(Int(seconds * 1_000)))
    if Task.isCancelled {
      record.outcome = .unfinished
      return false
    }
    return true
  }

  static func card(_ number: String) -> String { "{\"card\":{\"number\":\"\(number)\"}}" }

  static func jsonString(_ text: String) -> String {
    let data = (try? JSONEncoder().encode(text)) ?? Data("\"\"".utf8)
    return String(decoding: data, as: UTF8.self)
  }

  // MARK: Cheating

  /// Skips the line with forged passes, each of which must get the gateway's own answer and
  /// never reach BoxOffice; then gives the place it was given back.
  private mutating func cheat() async {
    record.outcome = .cheater
    guard
      let page = await browser.send(
        .page, .GET, "/events/\(crowd.event)", headers: [("accept", "text/html")]),
      page.status == 200 || page.status == 307
    else { return }
    let room = crowd.room
    let expiry = Int(Date().timeIntervalSince1970) + 600
    let noise = (0..<22).map { _ in "abcdefghijklmnopqrstuvwxyzABCDEF".randomElement(using: &random)! }
    var forgeries = [
      "v1.p.\(room).\(String(noise)).\(expiry).k1.\(String(noise))\(String(noise))",
      "v1.p.other-room.\(String(noise)).\(expiry).k1.\(String(noise))",
      "garbage",
    ]
    if let token = browser.cookies[visitorCookie] {
      var fields = token.split(separator: ".").map(String.init)
      forgeries.append(token)  // a visitor token presented as a pass: wrong kind
      if fields.count == 7 {
        fields[1] = "p"
        fields[4] = String(expiry)
        forgeries.append(fields.joined(separator: "."))  // the MAC no longer matches
      }
    }
    let section = crowd.sections.first ?? "A"
    let encodedSection = section.addingPercentEncoding(withAllowedCharacters: .alphanumerics) ?? section
    for (index, forged) in forgeries.enumerated() {
      var jar = browser
      let headers: [(String, String)]
      if index.isMultiple(of: 2) {
        headers = [("foyer-pass", forged)]
      } else {
        jar.cookies[passCookie] = forged
        headers = []
      }
      guard
        let reply = await jar.sendCopy(
          .cheat, .GET, "/events/\(crowd.event)/seats?section=\(encodedSection)", headers: headers)
      else { continue }
      // Not forwarded: sent to claim a pass, answered with the queue, or told it asked too soon.
      if reply.status == 307 || reply.isGatewayStatus || reply.isPollTooSoon { continue }
      crowd.recorder.violation(
        .forwardedWithoutPass,
        "a forged pass (\(forged.prefix(30))…) got \(reply.status): \(reply.text.prefix(80))")
    }
    await leave()
  }
}
