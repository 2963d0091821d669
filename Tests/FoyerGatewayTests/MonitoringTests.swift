import Foundation
import FoyerTestSupport
import Testing

/// Issue #19: the shipped alert rules and dashboard are accepted by the tools operators run.
/// The rules' own unit tests are `config/prometheus/foyer.rules.test.yml` (`make test` runs
/// them with `promtool test rules`); here every query of the Grafana dashboard is checked by
/// promtool as PromQL, and the dashboard by its import shape.
@Suite struct MonitoringTests {
  static let root = ShippedMonitoring.root

  @Test func everyDashboardQueryIsPromQLThatPromtoolAccepts() throws {
    let data = try Data(contentsOf: Self.root.appendingPathComponent("config/grafana/foyer-dashboard.json"))
    let dashboard = try #require(try JSONSerialization.jsonObject(with: data) as? [String: Any])
    #expect(dashboard["uid"] as? String == "foyer-onsale")
    #expect((dashboard["__inputs"] as? [[String: Any]])?.first?["name"] as? String == "DS_PROMETHEUS")
    let panels = try #require(dashboard["panels"] as? [[String: Any]])
    var expressions: [String] = []
    for panel in panels where panel["type"] as? String != "row" {
      let targets = try #require(panel["targets"] as? [[String: Any]], "\(panel["title"] ?? "?")")
      #expect(!targets.isEmpty)
      expressions += targets.compactMap { $0["expr"] as? String }
    }
    #expect(expressions.count >= 25)
    // Each query as a recording rule, with the dashboard's variable filled in.
    var rules = "groups:\n  - name: dashboard\n    rules:\n"
    for (index, expression) in expressions.enumerated() {
      let filled = expression.replacingOccurrences(of: "$room", with: ".*")
      let quoted = filled.replacingOccurrences(of: "'", with: "''")
      rules += "      - record: dashboard:query_\(index)\n        expr: '\(quoted)'\n"
    }
    let file = FileManager.default.temporaryDirectory.appendingPathComponent(
      "foyer-dashboard-\(UUID()).rules.yml")
    try rules.write(to: file, atomically: true, encoding: .utf8)
    defer { try? FileManager.default.removeItem(at: file) }
    let (status, output) = try promtool(["check", "rules", file.path])
    #expect(status == 0, "promtool refused a dashboard query:\n\(output)")
  }

  @Test func theAlertRulesPassPromtoolAndTheirUnitTests() throws {
    let directory = Self.root.appendingPathComponent("config/prometheus").path
    let (checked, checkOutput) = try promtool(["check", "rules", directory + "/foyer.rules.yml"])
    #expect(checked == 0, "\(checkOutput)")
    let (tested, testOutput) = try promtool(["test", "rules", directory + "/foyer.rules.test.yml"])
    #expect(tested == 0, "\(testOutput)")
  }

  /// Runs Debian's `promtool` (`make test` installs `prometheus`); a missing one fails here.
  func promtool(_ arguments: [String]) throws -> (Int32, String) {
    try runToEnd("/usr/bin/env", ["promtool"] + arguments)
  }

}
