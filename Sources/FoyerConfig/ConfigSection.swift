public import NIOCore
internal import Yams

/// A configuration mistake, with the key's path and line.
public struct ConfigurationError: Error, CustomStringConvertible, Sendable {
  public let description: String
  public init(_ description: String) { self.description = description }
}

extension ConfigSection {
  /// Parses a YAML document into its top-level section (an empty document is an empty
  /// mapping).
  public static func parse(yaml: String) throws(ConfigurationError) -> ConfigSection {
    let root: Node
    do {
      root = try Yams.compose(yaml: yaml) ?? Node.mapping([:])
    } catch {
      throw ConfigurationError("the configuration is not valid YAML: \(error)")
    }
    return try ConfigSection(root, path: "")
  }
}

/// One YAML mapping being read: typed getters that remember which keys were used, so
/// `finish()` can reject the rest.
///
/// Written by hand over Yams' node tree rather than `Decodable`: decoding ignores unknown
/// keys and reports type errors without the key's line.
public struct ConfigSection {
  public let path: String
  let mark: Mark?
  var entries: [(key: String, value: Node)]
  var used: Set<String> = []

  init(_ node: Node, path: String) throws(ConfigurationError) {
    guard let mapping = node.mapping else {
      throw ConfigurationError(
        "\(path.isEmpty ? "the file" : String(path.dropLast())) must be a mapping")
    }
    self.path = path
    self.mark = node.mark
    entries = mapping.map { (key: $0.key.string ?? "", value: $0.value) }
  }

  public func error(_ key: String, _ message: String) -> ConfigurationError {
    let line = entries.first { $0.key == key }?.value.mark.map { " (line \($0.line))" } ?? ""
    return ConfigurationError("\(path)\(key) \(message)\(line)")
  }

  private mutating func node(_ key: String) -> Node? {
    used.insert(key)
    guard let node = entries.first(where: { $0.key == key })?.value else { return nil }
    if node.null != nil { return nil }  // `key:`, `key: ~`, `key: null`: the default
    return node
  }

  public mutating func string(_ key: String) throws(ConfigurationError) -> String? {
    guard let node = node(key) else { return nil }
    guard let scalar = node.scalar else { throw error(key, "must be a string") }
    return scalar.string
  }

  public mutating func int(_ key: String, in range: ClosedRange<Int>) throws(ConfigurationError) -> Int? {
    guard let node = node(key) else { return nil }
    guard let value = node.int else { throw error(key, "must be an integer") }
    guard range.contains(value) else {
      throw error(key, "must be between \(range.lowerBound) and \(range.upperBound) (got \(value))")
    }
    return value
  }

  /// A number such as a share (`0.25`) or a factor.
  public mutating func double(
    _ key: String, in range: ClosedRange<Double>
  ) throws(ConfigurationError) -> Double? {
    guard let node = node(key) else { return nil }
    guard let value = node.float else { throw error(key, "must be a number") }
    guard range.contains(value) else {
      throw error(key, "must be between \(range.lowerBound) and \(range.upperBound) (got \(value))")
    }
    return value
  }

  /// A list of integers, each in `range`.
  public mutating func ints(_ key: String, in range: ClosedRange<Int>) throws(ConfigurationError) -> [Int]? {
    guard let node = node(key) else { return nil }
    guard let sequence = node.sequence else { throw error(key, "must be a list of integers") }
    var values: [Int] = []
    for item in sequence {
      guard let value = item.int, range.contains(value) else {
        throw error(key, "must list integers between \(range.lowerBound) and \(range.upperBound)")
      }
      values.append(value)
    }
    return values
  }

  /// A list of strings (`[]` for none).
  public mutating func strings(_ key: String) throws(ConfigurationError) -> [String]? {
    guard let node = node(key) else { return nil }
    guard let sequence = node.sequence else { throw error(key, "must be a list") }
    var values: [String] = []
    for item in sequence {
      guard let scalar = item.scalar else { throw error(key, "must list strings") }
      values.append(scalar.string)
    }
    return values
  }

  public mutating func milliseconds(
    _ key: String, in range: ClosedRange<Int>
  ) throws(ConfigurationError)
    -> TimeAmount?
  {
    try int(key, in: range).map { .milliseconds(Int64($0)) }
  }

  public mutating func bool(_ key: String) throws(ConfigurationError) -> Bool? {
    guard let node = node(key) else { return nil }
    guard let value = node.bool else { throw error(key, "must be true or false") }
    return value
  }

  public mutating func section(_ key: String) throws(ConfigurationError) -> ConfigSection? {
    guard let node = node(key) else { return nil }
    return try ConfigSection(node, path: "\(path)\(key).")
  }

  /// A list of mappings, each as a section named `key[i].`.
  public mutating func sections(_ key: String) throws(ConfigurationError) -> [ConfigSection]? {
    guard let node = node(key) else { return nil }
    guard let sequence = node.sequence else { throw error(key, "must be a list") }
    var sections: [ConfigSection] = []
    for (index, item) in sequence.enumerated() {
      sections.append(try ConfigSection(item, path: "\(path)\(key)[\(index)]."))
    }
    return sections
  }

  /// Every entry as text (for room settings, validated by `RoomSettings` itself).
  public mutating func allScalars() throws(ConfigurationError) -> [(String, String)] {
    var result: [(String, String)] = []
    for (key, value) in entries {
      used.insert(key)
      guard let scalar = value.scalar else { throw error(key, "must be a number or a word") }
      result.append((key, scalar.string))
    }
    return result
  }

  public func finish() throws(ConfigurationError) {
    if let unknown = entries.first(where: { !used.contains($0.key) }) {
      throw error(unknown.key, "is not a known key")
    }
  }
}
