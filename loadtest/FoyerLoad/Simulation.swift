internal import AsyncHTTPClient
public import Foundation
internal import FoyerConfig
internal import FoyerGateway
internal import Histogram
public import Logging
internal import NIOConcurrencyHelpers
internal import NIOCore
internal import NIOHTTP1
internal import NIOPosix
internal import PostgresNIO

/// Where the crowd goes: running gateways (with their admin APIs) in front of BoxOffice, and
/// BoxOffice's database for the books. With several gateways, each visitor's requests go to
/// them in turn, as through a balancer without sticky sessions.
public struct Target: Sendable {
  public var gateways: [String]
  /// The first is the operator's (settings, live numbers); every one's metrics are summed.
  public var admins: [String]
  public var admin: String { admins[0] }
  public var adminToken: String
  public var room: String
  public var event: UUID
  public var databaseURL: String

  public init(
    gateway: String, admin: String, adminToken: String, room: String, event: UUID, databaseURL: String
  ) {
    self.init(gateways: [gateway], admins: [admin], adminToken: adminToken, room: room, event: event, databaseURL: databaseURL)
  }

  public init(
    gateways: [String], admins: [String], adminToken: String, room: String, event: UUID, databaseURL: String
  ) {
    precondition(!gateways.isEmpty && !admins.isEmpty, "a target needs a gateway and an admin API")
    self.gateways = gateways
    self.admins = admins
    self.adminToken = adminToken
    self.room = room
    self.event = event
    self.databaseURL = databaseURL
  }
}

public struct SimulationError: Error, CustomStringConvertible {
  public let description: String
}

/// Runs a scenario against a target: sets the room up as an operator would, lets the crowd
/// in on its arrival curve, samples the admin API, applies the live changes, then reads the
/// books and checks every promise.
public struct Simulation: Sendable {
  public let scenario: Scenario
  public let target: Target
  let logger: Logger

  public init(scenario: Scenario, target: Target, logger: Logger) {
    self.scenario = scenario
    self.target = target
    self.logger = logger
  }

  /// `progress` gets a line every few seconds (for the CLI).
  /// Settings as the admin API takes them: integers as JSON numbers, `state` as a string.
  static func typed(_ settings: [(String, String)]) -> [String: Any] {
    var typed: [String: Any] = [:]
    for (key, value) in settings { typed[key] = key == "state" ? value : (Int(value).map { $0 as Any } ?? value) }
    return typed
  }

  public func run(progress: (@Sendable (String) -> Void)? = nil) async throws -> Report {
    let seed = scenario.seed != 0 ? scenario.seed : UInt64.random(in: 1...UInt64.max)
    let recorder = Recorder()
    guard let adminURL = URL(string: target.admin) else {
      throw SimulationError(description: "the admin URL '\(target.admin)' is not a URL")
    }
    let admin = AdminClient(baseURL: adminURL, token: target.adminToken)
    let sections: [String]
    let existingOrders: Int
    do {
      (sections, existingOrders) = try await Ledger.withDatabase(target.databaseURL) { client in
        (
          try await Ledger.sections(client, event: target.event, logger: logger),
          try await Ledger.orderIDs(client, event: target.event, logger: logger).count
        )
      }
    } catch {
      // postgres-nio hides details from `description`; the reflection has them.
      throw SimulationError(
        description: "cannot read the event from BoxOffice's database \(Self.redacted(target.databaseURL)) "
          + "(is PostgreSQL running there, with BoxOffice's schema?): \(String(reflecting: error))")
    }
    guard !sections.isEmpty else {
      throw SimulationError(description: "event \(target.event) has no seats in the database")
    }
    if existingOrders > 0 {
      logger.warning(
        "the event already has orders; the books include them", metadata: ["orders": "\(existingOrders)"])
    }

    // The room, as the operator sets it before the doors open.
    let origin = ContinuousClock.now
    let wallOrigin = Date().timeIntervalSince1970
    let startsAt = scenario.startInSeconds
    var initial = Self.typed(scenario.room)
    initial["state"] = initial["state"] ?? "queue"
    initial["starts_at"] = Int64((wallOrigin + startsAt) * 1_000)
    let room = try await admin.update(target.room, initial)
    guard let rate = Int(room.settings["rate_per_minute"] ?? ""),
      let cap = Int(room.settings["max_active"] ?? "")
    else { throw SimulationError(description: "the admin API did not show the room's rate and cap") }
    let settings = NIOLockedValueBox(Analysis.Settings(entries: [(0, rate, cap)]))
    let samples = NIOLockedValueBox<[Analysis.Sample]>([])
    let soldOutAt = NIOLockedValueBox<Double?>(nil)

    var configuration = HTTPClient.Configuration()
    configuration.redirectConfiguration = .disallow
    configuration.httpVersion = .http1Only
    configuration.timeout = .init(connect: .seconds(10))
    // Idle connections leave the pool well before the gateway's 60 s idle close (as browsers
    // retry, or nginx's peers keep under its keepalive_timeout): at equal timeouts, with seconds
    // of latency, the pool hands out connections the gateway has already closed.
    let idle = TimeAmount.seconds(30)
    configuration.connectionPool = .init(
      idleTimeout: idle, concurrentHTTP1ConnectionsPerHostSoftLimit: scenario.connections)
    let client = HTTPClient(eventLoopGroup: HTTPClient.defaultEventLoopGroup, configuration: configuration)
    // The flooder's own connections: through the crowd's pool it would wait behind the crowd.
    var floodConfiguration = configuration
    floodConfiguration.connectionPool = .init(idleTimeout: idle, concurrentHTTP1ConnectionsPerHostSoftLimit: 16)
    let floodClient = HTTPClient(eventLoopGroup: HTTPClient.defaultEventLoopGroup, configuration: floodConfiguration)
    let samplerLoop = MultiThreadedEventLoopGroup(numberOfThreads: 1)
    var samplerConfiguration = HTTPClient.Configuration()
    samplerConfiguration.connectionPool = .init(idleTimeout: idle)
    let sampler = HTTPClient(eventLoopGroup: samplerLoop, configuration: samplerConfiguration)
    // The bots' machines: one core of this one each, unless the scenario says otherwise.
    let oneCore = scenario.bots.any ? HashBudget.measureOneCore() : 0
    let botnetRate = scenario.bots.botnetHashesPerSecond > 0 ? scenario.bots.botnetHashesPerSecond : oneCore
    if scenario.bots.any {
      progress?("bots: one core hashes \(Int(oneCore)) challenge tries/s; the botnet's budget is \(Int(botnetRate))/s")
    }
    let crowd = Crowd(
      client: client, bases: target.gateways, room: target.room, event: target.event.uuidString.lowercased(),
      sections: sections, scenario: scenario, recorder: recorder, origin: origin, wallOrigin: wallOrigin,
      startsAt: startsAt, floodClient: floodClient, minterBudget: HashBudget(hashesPerSecond: max(oneCore, 1)),
      botnetBudget: HashBudget(hashesPerSecond: max(botnetRate, 1)))

    let records = await withTaskGroup(of: Void.self) { group in
      // The admin API's live numbers, for rate and cap.
      group.addTask {
        while !Task.isCancelled {
          await sample(sampler, crowd, samples)
          try? await Task.sleep(for: .milliseconds(scenario.sampleMilliseconds))
        }
      }
      // The operator's live changes.
      group.addTask {
        for change in scenario.changes {
          try? await Task.sleep(for: .milliseconds(Int((startsAt + change.atSeconds - crowd.now()) * 1_000)))
          if Task.isCancelled { return }
          let sent = crowd.now()
          do {
            let room = try await admin.update(target.room, Self.typed(change.settings))
            if let rate = Int(room.settings["rate_per_minute"] ?? ""),
              let cap = Int(room.settings["max_active"] ?? "")
            {
              settings.withLockedValue { $0.entries.append((sent, rate, cap)) }
            }
            progress?(
              "t=\(Int(sent - startsAt)) s: applied \(change.settings.map { "\($0.0)=\($0.1)" }.joined(separator: " "))"
            )
          } catch {
            recorder.violation(.unexpectedAnswer, "the admin API refused a change: \(error)")
          }
        }
      }
      if let progress {
        group.addTask {
          while !Task.isCancelled {
            try? await Task.sleep(for: .seconds(5))
            if let last = samples.withLockedValue({ $0.last }), !Task.isCancelled {
              progress(
                "t=\(Int(crowd.now() - startsAt)) s: waiting \(last.waiting), active \(last.active), admitted \(last.admitted)"
              )
            }
          }
        }
      }
      // The operator closes the room once every seat is sold: the line goes home.
      if scenario.closeWhenSoldOut {
        group.addTask {
          do {
            try await Ledger.withDatabase(target.databaseURL) { client in
              while !Task.isCancelled {
                try await Task.sleep(for: .seconds(1))
                guard try await Ledger.unsoldSeats(client, event: target.event, logger: logger) == 0 else {
                  continue
                }
                _ = try await admin.update(target.room, ["state": "closed"])
                soldOutAt.withLockedValue { $0 = crowd.now() }
                progress?("t=\(Int(crowd.now() - startsAt)) s: sold out; room closed")
                return
              }
            }
          } catch is CancellationError {
          } catch {
            recorder.violation(.unexpectedAnswer, "closing the sold-out room failed: \(error)")
          }
        }
      }
      // The crowd, cut off at the deadline.
      let crowdTask = Task { await arrive(crowd, seed: seed) }
      let deadline = Task {
        try await Task.sleep(for: .seconds(scenario.deadlineSeconds))
        crowdTask.cancel()
      }
      let records = await withTaskCancellationHandler {
        await crowdTask.value
      } onCancel: {
        crowdTask.cancel()
      }
      deadline.cancel()
      group.cancelAll()
      return records
    }
    await sample(sampler, crowd, samples)
    let metrics = await allMetrics(sampler)
    let gatewayProxy = proxyDurations(metrics)
    let gatewayRefusals = refusals(metrics)
    try await client.shutdown()
    try await floodClient.shutdown()
    try await sampler.shutdown()
    try await samplerLoop.shutdownGracefully()

    // Held seats run out by themselves; wait for that (bounded) before checking them.
    progress?("the crowd is done; letting the last holds run out")
    let settleUntil = crowd.now() + scenario.settleSeconds
    let (ledger, orderIDs) = try await Ledger.withDatabase(target.databaseURL) { client in
      while crowd.now() < settleUntil {
        let remaining = try await Ledger.secondsUntilHoldsEnd(client, event: target.event, logger: logger)
        if remaining <= 0 { break }
        try await Task.sleep(
          for: .milliseconds(Int(min(remaining + 2, settleUntil - crowd.now()) * 1_000) + 1))
      }
      return (
        try await Ledger.read(client, event: target.event, logger: logger),
        try await Ledger.orderIDs(client, event: target.event, logger: logger)
      )
    }
    var report = report(
      seed: seed, records: records, samples: samples.withLockedValue { $0 },
      settings: settings.withLockedValue { $0 },
      recorder: recorder, ledger: ledger, orderIDs: orderIDs, crowd: crowd)
    report.soldOutSeconds = soldOutAt.withLockedValue { $0 }.map { $0 - startsAt }
    report.gatewayProxy = gatewayProxy
    report.refusals = gatewayRefusals
    report.transportErrorExamples = recorder.snapshot.transportErrorExamples
    if scenario.bots.any {
      report.botHashes = Report.BotHashes(oneCorePerSecond: oneCore, botnetPerSecond: botnetRate)
    }
    return report
  }

  /// The database URL without its password, for messages.
  static func redacted(_ url: String) -> String {
    guard var components = URLComponents(string: url) else { return "(an invalid URL)" }
    if components.password != nil { components.password = "redacted" }
    return components.string ?? "(an invalid URL)"
  }

  /// Lets each visitor (and bot) in at its arrival time; returns when all are done (or cut off).
  private func arrive(_ crowd: Crowd, seed: UInt64) async -> [VisitorRecord] {
    await withTaskGroup(of: VisitorRecord.self) { group in
      for (at, role, index) in schedule() {
        let wait = at - crowd.now()
        if wait > 0.002 { try? await Task.sleep(for: .milliseconds(Int(wait * 1_000))) }
        if Task.isCancelled { break }
        group.addTask {
          var visitor = VirtualVisitor(index: index, role: role, crowd: crowd, seed: seed)
          return await visitor.run()
        }
      }
      var records: [VisitorRecord] = []
      records.reserveCapacity(scenario.visitors)
      for await record in group { records.append(record) }
      return records
    }
  }

  /// Everyone's arrival, in order: the humans on their curve; the minter's identities over
  /// its seconds from the start; the botnet's over the pre-queue and the rush; the flooder
  /// right after the rush; the hoarder first.
  func schedule() -> [(at: Double, role: VisitorRecord.Role, index: Int)] {
    var all = (0..<scenario.visitors).map { (at: arrival($0), role: VisitorRecord.Role.human, index: $0) }
    let bots = scenario.bots
    for index in 0..<bots.minterIdentities {
      all.append((scenario.startInSeconds + bots.minterSeconds * Double(index) / Double(bots.minterIdentities), .minter, index))
    }
    let botnet = bots.botnetAddresses * bots.botnetPlacesPerAddress
    let window = scenario.startInSeconds + scenario.burstSeconds
    for index in 0..<botnet {
      // Identity i comes from address i mod addresses: each address's joins spread over the window.
      all.append((window * (Double(index) + 0.5) / Double(botnet), .botnet, index % bots.botnetAddresses))
    }
    // The flooder comes after the rush, so it waits long behind it.
    if bots.flooderPollsPerSecond > 0 { all.append((window + 0.5, .flooder, 0)) }
    // The hoarder early in the pre-queue: admitted while there are seats to keep.
    if bots.hoarderHolds > 0 { all.append((min(0.5, scenario.startInSeconds / 2), .hoarder, 0)) }
    return all.sorted { $0.at < $1.at }
  }

  /// The arrival curve: the pre-queue spread over the lead-in (ending half a second before
  /// the start), the burst over its seconds after the start, the rest over the tail.
  func arrival(_ index: Int) -> Double {
    let start = scenario.startInSeconds
    if index < scenario.prequeue {
      let leadIn = max(start - 0.5, 0)
      return leadIn * (Double(index) + 0.5) / Double(scenario.prequeue)
    }
    let afterPrequeue = index - scenario.prequeue
    if afterPrequeue < scenario.burst {
      return start + scenario.burstSeconds * (Double(afterPrequeue) + 0.5) / Double(scenario.burst)
    }
    let tail = scenario.visitors - scenario.prequeue - scenario.burst
    let position = afterPrequeue - scenario.burst
    return start + scenario.burstSeconds + scenario.tailSeconds * (Double(position) + 0.5)
      / Double(max(tail, 1))
  }

  /// One reading of the admin API's live numbers, through a client of its own on its own
  /// thread: Foundation's URLSession (`AdminClient`) and the crowd's event loops both queue
  /// behind the crowd under load, which spread the readings seconds apart.
  private func sample(
    _ client: HTTPClient, _ crowd: Crowd, _ samples: NIOLockedValueBox<[Analysis.Sample]>
  ) async {
    let sent = crowd.now()
    guard let body = await adminGet(client, "/rooms/" + target.room),
      let object = try? JSONSerialization.jsonObject(with: Data(body.readableBytesView)) as? [String: Any],
      let live = object["live"] as? [String: Any]
    else {
      // A sample cut off by the end of the run is not a failure of the admin API.
      if !Task.isCancelled { crowd.recorder.transportError(.admin) }
      return
    }
    let received = crowd.now()
    crowd.recorder.request(.admin, status: 200, microseconds: UInt64((received - sent) * 1_000_000))
    func number(_ key: String) -> Int { (live[key] as? NSNumber)?.intValue ?? 0 }
    samples.withLockedValue {
      $0.append(
        Analysis.Sample(
          sent: sent, received: received, admitted: number("admitted"), active: number("active"),
          waiting: number("waiting")))
    }
  }

  /// A `GET` on an admin API (the operator's unless said) with the token; the body of a 200,
  /// else `nil`.
  private func adminGet(_ client: HTTPClient, _ path: String, admin: String? = nil) async -> ByteBuffer? {
    var request = HTTPClientRequest(url: (admin ?? target.admin) + path)
    request.headers.add(name: "authorization", value: "Bearer \(target.adminToken)")
    do {
      let response = try await client.execute(request, timeout: .seconds(10))
      let body = try await response.body.collect(upTo: 16 << 20)
      guard response.status == .ok else {
        logger.warning(
          "the admin API answered", metadata: ["path": "\(path)", "status": "\(response.status.code)", "body": "\(String(buffer: body).prefix(200))"])
        return nil
      }
      return body
    } catch {
      // Said, so that a failed sample in a test run can be told apart (timeout, reset, refused).
      if !Task.isCancelled {
        logger.warning("an admin API request failed", metadata: ["path": "\(path)", "error": "\(String(reflecting: error))"])
      }
      return nil
    }
  }

  /// Every gateway's `/metrics`, one after another (the readers below sum their series).
  private func allMetrics(_ client: HTTPClient) async -> String {
    var text = ""
    for admin in target.admins {
      if let body = await adminGet(client, "/metrics", admin: admin) { text += String(buffer: body) + "\n" }
    }
    return text
  }

  /// Requests the gateways refused, by reason (`foyer_refused_requests_total`).
  private func refusals(_ metrics: String) -> [String: Int] {
    var counts: [String: Int] = [:]
    for line in metrics.split(separator: "\n") where line.hasPrefix("foyer_refused_requests_total{") {
      guard let start = line.range(of: "reason=\"")?.upperBound, let end = line[start...].firstIndex(of: "\""),
        let value = line.split(separator: " ").last.flatMap({ Double($0) }), value > 0
      else { continue }
      counts[String(line[start..<end]), default: 0] += Int(value)
    }
    return counts
  }

  /// The gateways' own timing of forwarded requests (head in to response end), from their
  /// `/metrics`: unlike the crowd's latencies, it does not include the client's queueing.
  private func proxyDurations(_ metrics: String) -> Report.GatewayLatency? {
    guard
      let (count, bounds) = Analysis.histogramPercentiles(
        metrics, name: "foyer_proxy_duration_seconds", percentiles: [50, 90, 99])
    else { return nil }
    return Report.GatewayLatency(
      count: count, p50AtMostMs: bounds[0] * 1_000, p90AtMostMs: bounds[1] * 1_000,
      p99AtMostMs: bounds[2] * 1_000)
  }

  // MARK: The report

  private func report(
    seed: UInt64, records: [VisitorRecord], samples: [Analysis.Sample], settings: Analysis.Settings,
    recorder: Recorder, ledger: Ledger, orderIDs: Set<String>, crowd: Crowd
  ) -> Report {
    let end = crowd.now()

    // Rate: every window between two samples.
    let rate = Analysis.rateCheck(samples, settings)
    if rate.worstExcess > 0 {
      recorder.violation(
        .rateExceeded,
        "\(String(format: "%.1f", rate.worstExcess)) admissions above the allowance between t=\(String(format: "%.1f", rate.worstFrom)) s and t=\(String(format: "%.1f", rate.worstTo)) s"
      )
    }

    // Cap: the admin API's count, and the visitors' own.
    let sampledPeak = samples.max { $0.active < $1.active }
    for sample in samples where sample.active > settings.cap(at: sample.received) {
      recorder.violation(
        .capExceeded,
        "the admin API showed \(sample.active) active at t=\(String(format: "%.1f", sample.received)) s")
    }
    let intervals = records.compactMap { record -> (start: Double, end: Double)? in
      guard let start = record.admittedAt else { return nil }
      return (start, record.endedAt ?? record.passExpiresAt ?? end)
    }
    let counted = Analysis.maxConcurrent(intervals)
    if counted.count > settings.cap(at: counted.at) {
      recorder.violation(
        .capExceeded, "\(counted.count) visitors held slots at t=\(String(format: "%.1f", counted.at)) s")
    }

    // Fairness.
    let bots = records.filter { $0.role != .human }
    let records = records.filter { $0.role == .human }
    let admitted = records.filter { $0.admittedAt != nil && $0.joinedAt != nil && $0.outcome != .cheater }
    let after = admitted.filter { $0.joinedBeforeStart == false }
    let before = admitted.filter { $0.joinedBeforeStart == true }
    let fairness = Report.Fairness(
      postStartVisitors: after.count,
      postStartSpearman: Analysis.spearman(after.map { $0.joinedAt! }, after.map { $0.admittedAt! }),
      prequeueVisitors: before.count,
      prequeueSpearman: Analysis.spearman(before.map { $0.joinedAt! }, before.map { $0.admittedAt! }),
      prequeueChiSquare: Analysis.quartileChiSquare(
        before.map { $0.joinedAt! }, before.map { $0.admittedAt! }),
      chiSquareCritical: Analysis.chiSquareCritical)

    // The books against what the visitors were told.
    let seen = Set((records + bots).compactMap { $0.orderID?.lowercased() })
    let lost = seen.subtracting(orderIDs)
    recorder.violation(
      .lostOrder, "orders \(lost.prefix(3).joined(separator: ", ")) are not in the database",
      count: lost.count)
    recorder.violation(
      .doubleSale, "\(ledger.seatsSoldTwice) seats sold twice", count: ledger.seatsSoldTwice)
    recorder.violation(
      .doubleSale, "\(ledger.ticketMismatches) seats whose status and tickets disagree",
      count: ledger.ticketMismatches)
    recorder.violation(
      .doubleSale, "\(ledger.ordersMissingSeats) ordered seats without their ticket",
      count: ledger.ordersMissingSeats)
    recorder.violation(
      .charges, "\(ledger.ordersNotChargedOnce) orders not charged exactly once",
      count: ledger.ordersNotChargedOnce)
    recorder.violation(
      .charges, "\(ledger.unrefundedCharges) charges for unsold holds not refunded",
      count: ledger.unrefundedCharges)
    recorder.violation(
      .heldSeatLeak, "\(ledger.heldSeatLeaks) seats or holds still held after their hold ended",
      count: ledger.heldSeatLeaks)
    recorder.violation(
      .charges, "\(ledger.cancellationsNotSettled) cancelled orders without one refund or with a live ticket",
      count: ledger.cancellationsNotSettled)
    recorder.violation(
      .waitlist, "\(ledger.waitlistOutOfOrder) waitlist offers out of order, places skipped or offers bought without an order",
      count: ledger.waitlistOutOfOrder)

    let recorded = recorder.snapshot
    var latency: [String: Report.Latency] = [:]
    for (kind, histogram) in recorded.latency {
      func ms(_ percentile: Double) -> Double { Double(histogram.valueAtPercentile(percentile)) / 1_000 }
      latency[kind.rawValue] = Report.Latency(
        count: Int(histogram.totalCount), p50Ms: ms(50), p90Ms: ms(90), p99Ms: ms(99),
        maxMs: Double(histogram.max) / 1_000)
    }
    var outcomes: [String: Int] = [:]
    for record in records { outcomes[record.outcome.rawValue, default: 0] += 1 }
    let admittedCount = records.filter { $0.admittedAt != nil }.count
    let polls = recorded.statuses[.status]?.values.reduce(0, +) ?? 0
    let waits = admitted.map { $0.admittedAt! - ($0.arrivedAt ?? $0.joinedAt!) }.sorted()
    // The same wait counted in admissions (humans' and bots') made before the human's own:
    // how far back others pushed it, whatever the machine's speed.
    let admissions = (records + bots).compactMap(\.admittedAt).sorted()
    let ahead = admitted.map { human in
      Analysis.count(admissions, below: human.admittedAt!)
        - Analysis.count(admissions, below: human.arrivedAt ?? human.joinedAt!)
    }.sorted()
    var botSummaries: [String: Report.BotSummary] = [:]
    for (role, members) in Dictionary(grouping: bots, by: \.role) {
      var summary = Report.BotSummary()
      summary.identities = members.count
      summary.addresses = Set(members.map { VirtualVisitor.address(role: role, index: $0.index) }).count
      summary.places = members.filter(\.place).count
      summary.admitted = members.filter { $0.admittedAt != nil }.count
      summary.seatsBought = members.map(\.tickets).reduce(0, +)
      summary.mostSeatsHeld = members.map(\.seatsHeldMost).max() ?? 0
      summary.solutions = members.map(\.solutions).reduce(0, +)
      summary.hashes = members.map(\.hashes).reduce(0, +)
      summary.polls = members.map(\.floodPolls).reduce(0, +)
      summary.pollsTooSoon = members.map(\.floodRefused).reduce(0, +)
      for member in members { if let code = member.refusal { summary.refused[code, default: 0] += 1 } }
      botSummaries[role.rawValue] = summary
    }
    return Report(
      seed: seed, visitors: records.count, durationSeconds: end,
      admissions: Analysis.windows(
        samples, settings, startsAt: crowd.startsAt, length: scenario.reportSeconds),
      rate: rate,
      admittedByGateway: (samples.last?.admitted ?? 0) - (samples.first?.admitted ?? 0),
      admittedVisitors: admittedCount,
      maxActiveSampled: sampledPeak?.active ?? 0, maxActiveVisitors: counted.count,
      cap: settings.entries.map(\.maxActive).max() ?? 0,
      fairness: fairness,
      latency: latency,
      statuses: Dictionary(
        uniqueKeysWithValues: recorded.statuses.map { kind, codes in
          (kind.rawValue, Dictionary(uniqueKeysWithValues: codes.map { (String($0.key), $0.value) }))
        }),
      transportErrors: Dictionary(
        uniqueKeysWithValues: recorded.transportErrors.map { ($0.key.rawValue, $0.value) }),
      pollsPerAdmittedVisitor: admittedCount > 0 ? Double(polls) / Double(admittedCount) : 0,
      outcomes: outcomes,
      ordersSeen: seen.count,
      ticketsSeen: (records + bots).map(\.tickets).reduce(0, +),
      ledger: ledger,
      humanWait: waits.isEmpty
        ? nil
        : Report.Wait(
          count: waits.count, p50Seconds: waits[(waits.count - 1) / 2], p90Seconds: waits[(waits.count - 1) * 9 / 10],
          p50AdmissionsAhead: ahead[(ahead.count - 1) / 2], p90AdmissionsAhead: ahead[(ahead.count - 1) * 9 / 10]),
      bots: botSummaries,
      aftermarket: Report.Aftermarket(
        cancelled: records.filter(\.cancelled).count, waitlisted: records.filter(\.waitlisted).count,
        offered: records.filter(\.offered).count, boughtOffers: records.filter(\.claimedOffer).count,
        letOffersLapse: records.filter(\.letOfferLapse).count),
      violations: recorded.violations.sorted { $0.key < $1.key }.map {
        Report.Violation(kind: $0.key.rawValue, count: $0.value, examples: recorded.examples[$0.key] ?? [])
      })
  }
}
