public import FoyerConfig
public import Logging

/// How `foyer` and `boxoffice` write their logs (the `log:` section of either file).
public struct LogConfiguration: Sendable, Hashable {
  public enum Format: String, Sendable, Hashable, CaseIterable {
    /// One readable line per event (swift-log's stream handler).
    case text
    /// One JSON object per line (`JSONLogHandler`), for log shippers.
    case json
  }

  public var format: Format
  public var level: Logger.Level

  public init(format: Format = .text, level: Logger.Level = .info) {
    self.format = format
    self.level = level
  }

  /// Reads the `log:` section of a configuration file, if there is one.
  public mutating func read(from top: inout ConfigSection) throws(ConfigurationError) {
    guard var log = try top.section("log") else { return }
    if let text = try log.string("format") {
      guard let format = Format(rawValue: text) else { throw log.error("format", "must be text or json") }
      self.format = format
    }
    if let text = try log.string("level") {
      guard let level = Logger.Level(rawValue: text) else {
        throw log.error("level", "must be trace, debug, info, notice, warning, error or critical")
      }
      self.level = level
    }
    try log.finish()
  }

  /// Makes every logger of the process write to standard error in this format. Once per
  /// process, before the first logger is made.
  public func bootstrap() {
    switch format {
    case .text: LoggingSystem.bootstrap { StreamLogHandler.standardError(label: $0) }
    case .json: LoggingSystem.bootstrap { JSONLogHandler(label: $0) }
    }
  }

  /// The process's logger, at this level.
  public func logger(label: String) -> Logger {
    var logger = Logger(label: label)
    logger.logLevel = level
    return logger
  }
}
