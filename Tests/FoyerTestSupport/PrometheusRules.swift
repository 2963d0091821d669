public import Foundation

/// The metric names the shipped Prometheus rules and Grafana dashboard read, so a test can
/// check a live server exposes every one (a rule over a series nobody exports never fires).
public enum ShippedMonitoring {
  /// The repository's root, where `config/` is.
  public static let root = URL(fileURLWithPath: #filePath).deletingLastPathComponent().appendingPathComponent(
    "../..")

  /// Every `prefix…` metric name in the rules and the dashboard (recording rules' own
  /// `level:name:op` names excluded), histogram suffixes included as written.
  public static func metricNames(prefix: String) throws -> Set<String> {
    var names = Set<String>()
    for file in ["config/prometheus/foyer.rules.yml", "config/grafana/foyer-dashboard.json"] {
      let text = try String(contentsOf: root.appendingPathComponent(file), encoding: .utf8)
      let pattern = try NSRegularExpression(pattern: "(?<![a-z_:])\(prefix)[a-z_]*[a-z](?![a-z_:*])")
      for match in pattern.matches(in: text, range: NSRange(text.startIndex..., in: text)) {
        names.insert(String(text[Range(match.range, in: text)!]))
      }
    }
    return names
  }

  /// The names of `names` that no line of a Prometheus text exposition starts with.
  public static func missing(_ names: Set<String>, in exposition: String) -> [String] {
    let exposed = Set(
      exposition.split(separator: "\n").filter { !$0.hasPrefix("#") }.map {
        String($0.prefix { $0 != "{" && $0 != " " })
      })
    return names.filter { !exposed.contains($0) }.sorted()
  }
}
