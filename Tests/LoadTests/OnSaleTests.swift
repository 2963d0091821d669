import BoxOffice
import Foundation
import FoyerCore
import FoyerGateway
import FoyerTestSupport
import Logging
import NIOCore
import NIOPosix
import RedisNIO
import ServiceLifecycle
import Testing
import WaitingRoom

@testable import FoyerLoad

/// The small on-sale (`loadtest/onsale-small.yaml`, 2,000 visitors) through a real gateway in
/// front of a real BoxOffice, on a real Redis and PostgreSQL: fails on any broken promise.
@Suite(.timeLimit(.minutes(5))) struct OnSaleTests {
  static let scenarioPath = URL(fileURLWithPath: #filePath).deletingLastPathComponent()
    .appendingPathComponent("../../loadtest/onsale-small.yaml").standardizedFileURL.path

  @Test func aSmallOnSaleKeepsEveryPromise() async throws {
    let scenario = try Scenario.parse(yaml: String(contentsOfFile: Self.scenarioPath, encoding: .utf8))
    let keyRing = try KeyRing([SigningKey(id: "load", secret: Array(repeating: 7, count: 32))])
    let adminToken = "load-admin-token-0123456789"
    let room = "load" + UUID().uuidString.prefix(6).lowercased()
    let logger = Logger(label: "load")

    // BoxOffice checks passes for the room itself, so a request the gateway forwarded without
    // one is answered 401 (and counted by the simulator). 1,200 seats for a crowd that wants
    // about 5,000: it sells out, as on-sales do, and the operator closes the room. (Sized for
    // a debug build sharing 2 cores with everything.) The room's settings come from the
    // scenario.
    let stack = try await OnSaleStack.start(
      room: room, keyRing: keyRing, adminToken: adminToken,
      sections: ["North", "South", "East", "West"].map {
        EventSpec.Section(name: $0, rows: 15, seatsPerRow: 20, priceCents: 5_000)
      },
      holdDuration: .seconds(10), databaseConnections: 10, settings: RoomSettings(),
      // The simulator is the crowd's proxy: each visitor says its own address, and the
      // per-client limits stay at their defaults.
      clients: ClientPolicy(trustedProxies: [AddressBlock("127.0.0.1")!]), waitlistOffer: .seconds(10))
    defer { Task { await stack.stop() } }

    let report = try await Simulation(
      scenario: scenario,
      target: Target(
        gateway: stack.base, admin: stack.adminBase, adminToken: adminToken, room: room,
        event: stack.event.id,
        databaseURL: stack.databaseURL),
      logger: logger
    ).run()
    print(report.text)

    // Every promise: no double sale, cap, rate, nobody forwarded without a pass, no 5xx.
    #expect(report.passed, "\(report.violations.map { "\($0.kind): \($0.examples)" })")
    // The flooder's own connections may lose a request to the gateway's header timeout: a
    // connection its client opened and left unused is closed as the client reuses it (the
    // keep-alive race every pooled client has; not a broken promise, and the bot's alone).
    #expect(report.transportErrors.filter { $0.key != "flood" }.isEmpty, "\(report.transportErrors)")
    #expect(report.rate.worstExcess <= 0)
    #expect(report.maxActiveSampled <= report.cap && report.maxActiveVisitors <= report.cap)
    #expect(report.maxActiveSampled > 0)
    // The books match what the visitors were told.
    let ledger = report.ledger
    #expect(ledger.orders > 0 && ledger.orders + ledger.ordersCancelled == report.ordersSeen)
    #expect(ledger.tickets == report.ticketsSeen && ledger.seatsSold == ledger.tickets)
    #expect(ledger.seatsHeld == 0)
    // Every successful charge became an order or was refunded: a hold that ran out during
    // payment (a slow, loaded machine) is charged, answered 410 and refunded; a cancelled
    // order has its own refund.
    #expect(ledger.declines > 0 && ledger.charges == ledger.orders + ledger.ordersCancelled + ledger.refunds)
    // After the sale: buyers cancelled outside the room and were refunded once each; sold-out
    // visitors took places on the waitlist.
    #expect(ledger.ordersCancelled > 0 && ledger.ordersCancelled == report.aftermarket.cancelled)
    #expect(ledger.cancellationRefunds == ledger.ordersCancelled)
    #expect(ledger.waitlistPlaces > 0 && ledger.waitlistPlaces == report.aftermarket.waitlisted)
    #expect(ledger.waitlistClaimed == report.aftermarket.boughtOffers)
    // The crowd did what the scenario says: everyone came, cheaters tried, the rate doubled.
    #expect(report.visitors == scenario.visitors)
    #expect((report.outcomes["cheater"] ?? 0) > 0 && (report.statuses["cheat"]?.values.reduce(0, +) ?? 0) > 0)
    #expect((report.outcomes["bought"] ?? 0) > 0)
    #expect((report.outcomes["unfinished"] ?? 0) == 0)
    #expect(report.admissions.contains { $0.configuredPerMinute == 4_800 })
    #expect(report.soldOutSeconds != nil && (report.outcomes["closed"] ?? 0) > 0)
    // The bots (#16), against the defences at their defaults. The minter's one address got
    // at most max_places_per_client places; the rest of its identities were refused.
    let minter = try #require(report.bots["minter"])
    #expect(minter.identities == scenario.bots.minterIdentities && minter.addresses == 1)
    #expect(minter.places <= 20, "the minter holds \(minter.places) places")
    #expect((minter.refused["too_many_visitors"] ?? 0) + (minter.refused["too_many_places"] ?? 0) >= minter.identities - 100)
    // Each botnet place cost the work it stands for (tries average 2^bits).
    let botnet = try #require(report.bots["botnet"])
    #expect(botnet.addresses == scenario.bots.botnetAddresses && botnet.places > 0)
    #expect(botnet.hashes / Double(botnet.places) >= 0.8 * Double(1 << scenario.standsForBits))
    // The flooder's early polls were answered from memory; the hoarder kept at most the cap.
    let flooder = try #require(report.bots["flooder"])
    #expect(flooder.polls > 100 && Double(flooder.pollsTooSoon) >= 0.9 * Double(flooder.polls))
    let hoarder = try #require(report.bots["hoarder"])
    #expect(hoarder.mostSeatsHeld > 0 && hoarder.mostSeatsHeld <= scenario.bots.seatCap)
    #expect((report.refusals["poll_too_soon"] ?? 0) >= flooder.pollsTooSoon)
    // The gateway timed the forwarded requests too (its /metrics).
    #expect((report.gatewayProxy?.count ?? 0) > 0)
    // Fair: first come first served after the start; a uniform shuffle before it.
    let fairness = report.fairness
    #expect(fairness.postStartVisitors > 100 && (fairness.postStartSpearman ?? 0) > 0.9)
    #expect(fairness.prequeueVisitors > 200)
    #expect(abs(fairness.prequeueSpearman ?? 1) < 4 / Double(fairness.prequeueVisitors).squareRoot())
    #expect((fairness.prequeueChiSquare ?? 100) < 33.7)  // p = 0.0001 for 9 degrees of freedom
  }
}

/// The sums behind the report, on inputs whose answers are known.
@Suite struct AnalysisTests {
  @Test func rateCheckAllowsTheBucketAndCatchesMore() {
    let settings = Analysis.Settings(entries: [(0, 600, 100)])  // 10 a second, bucket 10
    // 10 s at exactly the rate, plus the full bucket at the start: kept.
    let kept = (0...10).map {
      Analysis.Sample(sent: Double($0), received: Double($0), admitted: 10 + $0 * 10, active: 0, waiting: 0)
    }
    #expect(
      Analysis.rateCheck(
        [Analysis.Sample(sent: 0, received: 0, admitted: 0, active: 0, waiting: 0)] + kept.dropFirst(),
        settings
      ).worstExcess <= 0)
    // 30 admitted in one second: 10 over the bucket + refill.
    let burst = [
      Analysis.Sample(sent: 5, received: 5, admitted: 0, active: 0, waiting: 0),
      Analysis.Sample(sent: 6, received: 6, admitted: 30, active: 0, waiting: 0),
    ]
    let check = Analysis.rateCheck(burst, settings)
    #expect(abs(check.worstExcess - 10) < 0.2)
  }

  @Test func rateCheckFollowsALiveChange() {
    // 600/min until t=10, then 1,200/min: 20 a second after the change is within the rate.
    let settings = Analysis.Settings(entries: [(0, 600, 100), (10, 1_200, 100)])
    let samples = (12...20).map {
      Analysis.Sample(sent: Double($0), received: Double($0), admitted: ($0 - 12) * 20, active: 0, waiting: 0)
    }
    #expect(Analysis.rateCheck(samples, settings).worstExcess <= 0)
    let before = (0...8).map {
      Analysis.Sample(sent: Double($0), received: Double($0), admitted: $0 * 20, active: 0, waiting: 0)
    }
    #expect(Analysis.rateCheck(before, settings).worstExcess > 30)
  }

  @Test func gatewayHistogramPercentiles() throws {
    let text = """
      # TYPE foyer_proxy_duration_seconds histogram
      foyer_proxy_duration_seconds_bucket{le="0.001"} 10
      foyer_proxy_duration_seconds_bucket{le="0.005"} 80
      foyer_proxy_duration_seconds_bucket{le="0.05"} 99
      foyer_proxy_duration_seconds_bucket{le="+Inf"} 100
      foyer_proxy_duration_seconds_sum 1.5
      foyer_proxy_duration_seconds_count 100
      """
    let (count, bounds) = try #require(
      Analysis.histogramPercentiles(text, name: "foyer_proxy_duration_seconds", percentiles: [50, 99, 100]))
    #expect(count == 100 && bounds == [0.005, 0.05, .infinity])
    #expect(Analysis.histogramPercentiles(text, name: "other", percentiles: [50]) == nil)
    // Three gateways' metrics one after another: summed by bucket. The third is all slow, so
    // the median moves up a bucket.
    let slow = """
      foyer_proxy_duration_seconds_bucket{le="0.001"} 0
      foyer_proxy_duration_seconds_bucket{le="0.005"} 0
      foyer_proxy_duration_seconds_bucket{le="0.05"} 200
      foyer_proxy_duration_seconds_bucket{le="+Inf"} 200
      """
    let (merged, mergedBounds) = try #require(
      Analysis.histogramPercentiles(
        text + "\n" + text + "\n" + slow, name: "foyer_proxy_duration_seconds", percentiles: [25, 50]))
    #expect(merged == 400 && mergedBounds == [0.005, 0.05])
  }

  @Test func concurrencyCountsOverlapsAndNotTouchingEnds() {
    #expect(Analysis.maxConcurrent([(0, 2), (1, 3), (2, 4)]).count == 2)
    #expect(Analysis.maxConcurrent([(0, 10), (1, 3), (2, 4), (3.5, 5)]).count == 3)
    #expect(Analysis.maxConcurrent([]).count == 0)
  }

  @Test func rankCorrelationAndShuffleUniformity() {
    let order = (0..<400).map(Double.init)
    #expect(Analysis.spearman(order, order.map { $0 * 2 + 1 }) == 1)
    #expect(abs(Analysis.spearman(order, order.reversed())! + 1) < 1e-9)
    #expect(Analysis.ranks([3, 1, 3, 2]) == [3.5, 1, 3.5, 2])
    // Admitted in join order: nothing like a shuffle.
    #expect(Analysis.quartileChiSquare(order, order)! > 1_000)
    // A seeded shuffle: uniform.
    var generator = SplitMix64(seed: 42)
    let shuffled = order.shuffled(using: &generator)
    #expect(Analysis.quartileChiSquare(order, shuffled)! < Analysis.chiSquareCritical)
    #expect(abs(Analysis.spearman(order, shuffled)!) < 0.2)
  }

  @Test func scenarioErrorsNameTheKeyAndLine() throws {
    #expect(throws: (any Error).self) { try Scenario.parse(yaml: "visitors: 10\nvisiters: 3\n") }
    do {
      _ = try Scenario.parse(yaml: "visitors: 100\nwaiting:\n  abandon: 1.5\n")
      Issue.record("a share above 1 was accepted")
    } catch {
      #expect("\(error)".contains("waiting.abandon") && "\(error)".contains("line 3"))
    }
    do {
      _ = try Scenario.parse(yaml: "visitors: 10\narrivals:\n  prequeue: 8\n  burst: 8\n")
      Issue.record("more arrivals than visitors were accepted")
    } catch {
      #expect("\(error)".contains("exceeds visitors"))
    }
    do {
      _ = try Scenario.parse(yaml: "room:\n  starts_at: 5\n")
      Issue.record("starts_at was accepted")
    } catch {
      #expect("\(error)".contains("starts_at"))
    }
    let small = try Scenario.parse(yaml: String(contentsOfFile: OnSaleTests.scenarioPath, encoding: .utf8))
    #expect(
      small.visitors == 2_000 && small.changes.count == 1
        && small.changes[0].settings[0].0 == "rate_per_minute")
  }

  @Test func theArrivalCurveIsPrequeueThenBurstThenTail() throws {
    var scenario = Scenario()
    scenario.visitors = 100
    scenario.prequeue = 20
    scenario.burst = 50
    scenario.startInSeconds = 5
    scenario.burstSeconds = 2
    scenario.tailSeconds = 10
    let simulation = Simulation(
      scenario: scenario,
      target: Target(gateway: "", admin: "", adminToken: "", room: "r", event: UUID(), databaseURL: ""),
      logger: Logger(label: "t"))
    let times = (0..<100).map(simulation.arrival)
    #expect(times == times.sorted())
    #expect(times[..<20].allSatisfy { $0 < 4.5 })
    #expect(times[20..<70].allSatisfy { $0 > 5 && $0 < 7 })
    #expect(times[70...].allSatisfy { $0 > 7 && $0 < 17 })
  }
}
