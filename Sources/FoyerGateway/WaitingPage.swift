/// The waiting page: one self-contained HTML document (no external assets), pre-split at
/// start-up into static chunks around its placeholders, so a render is one concatenation.
///
/// Operators may supply their own template; placeholders are `{{room}}`, `{{state}}`,
/// `{{position}}`, `{{waiting}}`, `{{ahead}}`, `{{eta}}`, `{{progress}}` (0–100),
/// `{{pollAfterMs}}`, `{{refreshSeconds}}` (for the no-JavaScript meta refresh),
/// `{{startsAt}}` (unix ms, 0 when started) and `{{message}}`. Values are HTML-escaped.
struct WaitingPage: Sendable {
  enum Piece: Sendable, Equatable {
    case text(String)
    case placeholder(String)
  }

  static let placeholders: Set<String> = [
    "room", "state", "position", "waiting", "ahead", "eta", "progress", "pollAfterMs", "refreshSeconds",
    "startsAt",
    "message", "challenge", "bits",
  ]

  let pieces: [Piece]

  /// Splits `template`; throws on an unknown or unclosed placeholder, so a typo in an
  /// operator's template fails at start-up, not in front of visitors.
  init(template: String) throws(WaitingPageError) {
    var pieces: [Piece] = []
    var rest = template[...]
    while let open = rest.firstRange(of: "{{") {
      pieces.append(.text(String(rest[..<open.lowerBound])))
      guard let close = rest[open.upperBound...].firstRange(of: "}}") else {
        throw WaitingPageError(message: "unclosed '{{' in the waiting page template")
      }
      let name = String(rest[open.upperBound..<close.lowerBound]).trimmingWhitespace
      guard Self.placeholders.contains(name) else {
        throw WaitingPageError(
          message:
            "unknown placeholder '{{\(name.prefix(40))}}'; known: \(Self.placeholders.sorted().joined(separator: ", "))"
        )
      }
      pieces.append(.placeholder(name))
      rest = rest[close.upperBound...]
    }
    pieces.append(.text(String(rest)))
    self.pieces = pieces
  }

  func render(_ values: [String: String]) -> String {
    var html = ""
    html.reserveCapacity(8_192)
    for piece in pieces {
      switch piece {
      case .text(let text): html += text
      case .placeholder(let name): html += Self.escape(values[name] ?? "")
      }
    }
    return html
  }

  static func escape(_ text: String) -> String {
    guard text.contains(where: { "&<>\"'".contains($0) }) else { return text }
    var escaped = ""
    for character in text {
      switch character {
      case "&": escaped += "&amp;"
      case "<": escaped += "&lt;"
      case ">": escaped += "&gt;"
      case "\"": escaped += "&quot;"
      case "'": escaped += "&#39;"
      default: escaped.append(character)
      }
    }
    return escaped
  }

  static let builtIn = try! WaitingPage(template: defaultTemplate)
}

public struct WaitingPageError: Error, CustomStringConvertible, Sendable {
  public let message: String
  public var description: String { message }
}

extension String {
  fileprivate var trimmingWhitespace: String {
    String(drop(while: \.isWhitespace).reversed().drop(while: \.isWhitespace).reversed())
  }
}
