internal import FoyerCore
internal import NIOCore
internal import WaitingRoom

/// The JSON of `GET /_foyer/status` (DESIGN §5):
/// `{room, state, position, waiting, etaSeconds, pollAfterMs, admitted[, pass]}`.
///
/// Written by hand rather than with `JSONEncoder`: it is the most frequent answer under load,
/// and every value in it is a number, an enum name, a validated room id or a token — none
/// needs escaping.
struct StatusBody {
  var room: String
  var state: String
  var position: Int?
  var waiting: Int?
  var etaSeconds: Int?
  var pollAfterMilliseconds: Int
  var admitted: Bool
  var pass: String?
  /// A proof-of-work challenge to solve before a place is given, and its bits.
  var challenge: String?
  var challengeBits = 0
  /// For the waiting page's countdown; not part of the JSON.
  var startsAtMilliseconds: Int64 = 0

  var json: String {
    var buffer = ByteBuffer()
    writeJSON(into: &buffer)
    return String(buffer: buffer)
  }

  /// Appends the JSON to `buffer`, numbers written as digits with no string in between.
  func writeJSON(into buffer: inout ByteBuffer) {
    buffer.writeReserved(capacity: maximumJSONLength) { writeJSON(into: &$0) }
  }

  /// At least the length of the JSON: the fixed text (about 100 bytes), four numbers and
  /// the strings.
  var maximumJSONLength: Int {
    160 + 5 * ReservedWriter.decimalLength + room.utf8.count + state.utf8.count + (pass?.utf8.count ?? 0)
      + (challenge?.utf8.count ?? 0)
  }

  func writeJSON(into writer: inout ReservedWriter) {
    func number(_ value: Int?) {
      if let value { writer.write(decimal: value) } else { writer.write("null") }
    }
    writer.write("{\"room\":\"")
    writer.write(room)
    writer.write("\",\"state\":\"")
    writer.write(state)
    writer.write("\",\"position\":")
    number(position)
    writer.write(",\"waiting\":")
    number(waiting)
    writer.write(",\"etaSeconds\":")
    number(etaSeconds)
    writer.write(",\"pollAfterMs\":")
    writer.write(decimal: pollAfterMilliseconds)
    writer.write(admitted ? ",\"admitted\":true" : ",\"admitted\":false")
    if let pass {
      writer.write(",\"pass\":\"")
      writer.write(pass)
      writer.write("\"")
    }
    if let challenge {
      writer.write(",\"challenge\":\"")
      writer.write(challenge)
      writer.write("\",\"bits\":")
      writer.write(decimal: challengeBits)
    }
    writer.write("}")
  }

  /// How long a challenge may be worked on: long enough for the slowest phone at the highest
  /// sensible difficulty, short enough that solutions cannot be stockpiled for long.
  static let challengeSeconds: Int64 = 600

  /// The `Retry-After` of the JSON answer: the poll interval, in whole seconds.
  var retryAfterSeconds: Int { max(1, (pollAfterMilliseconds + 999) / 1_000) }

  /// What a visitor is told for `status`, with a cookie: the pass when this poll claimed the
  /// slot, the place (its queue score signed) when it is new to the visitor, who presented
  /// `presentedPlace`; and the signed challenge when the room asks for work. Both lanes
  /// answer with it.
  static func answer(
    _ status: VisitorStatus, room: String, visitor: VisitorID, signer: TokenSigner, secureCookies: Bool,
    presentedPlace: Int64? = nil
  ) -> (StatusBody, cookie: String?) {
    switch status {
    case .queued(let place):
      guard let score = place.score, score != presentedPlace else { return (.queued(room: room, place: place), nil) }
      let cookie = Cookies.setCookie(
        name: Cookies.placeName(room: room), value: signer.sign(Token(kind: .place, room: room, visitor: visitor, time: score)),
        maxAge: 86_400, secure: secureCookies)
      return (.queued(room: room, place: place), cookie)
    case .active(let sessionEnd):
      let expiry = sessionEnd / 1_000
      let pass = signer.sign(Token(kind: .pass, room: room, visitor: visitor, time: expiry))
      let cookie = Cookies.setCookie(
        name: Cookies.passName(room: room), value: pass, maxAge: expiry - GatewayHandler.unixSeconds(),
        secure: secureCookies)
      return (.admitted(room: room, pass: pass), cookie)
    case .admitted:
      return (.notWaiting(room: room, state: "admitted", pollAfterMilliseconds: 250), nil)
    case .absent(let state):
      return (.notWaiting(room: room, state: state.rawValue, pollAfterMilliseconds: 2_000), nil)
    case .closed:
      return (.notWaiting(room: room, state: RoomState.closed.rawValue, pollAfterMilliseconds: 30_000), nil)
    case .passthrough:
      return (.admitted(room: room, pass: nil), nil)
    case .full:
      return (.notWaiting(room: room, state: "full", pollAfterMilliseconds: 10_000), nil)
    case .challenge(let bits, let startsAt):
      var body = StatusBody.notWaiting(room: room, state: "challenge", pollAfterMilliseconds: 0)
      body.challenge = Challenge(
        room: room, visitor: visitor, bits: bits, expiry: GatewayHandler.unixSeconds() + challengeSeconds
      ).signed(with: signer)
      body.challengeBits = bits
      body.startsAtMilliseconds = startsAt
      return (body, nil)
    case .refused(_, let seconds):
      return (.notWaiting(room: room, state: "refused", pollAfterMilliseconds: seconds * 1_000), nil)
    }
  }

  static func queued(room: String, place: QueuePosition) -> StatusBody {
    StatusBody(
      room: room, state: place.state.rawValue, position: place.position, waiting: place.waiting,
      etaSeconds: place.estimate.etaSeconds, pollAfterMilliseconds: place.estimate.pollAfterMilliseconds,
      admitted: false,
      startsAtMilliseconds: place.startsAtMilliseconds > place.nowMilliseconds
        ? place.startsAtMilliseconds : 0)
  }

  static func admitted(room: String, pass: String?) -> StatusBody {
    StatusBody(
      room: room, state: RoomState.queue.rawValue, position: 0, waiting: nil, etaSeconds: 0,
      pollAfterMilliseconds: 0, admitted: true, pass: pass)
  }

  static func notWaiting(room: String, state: String, pollAfterMilliseconds: Int) -> StatusBody {
    StatusBody(
      room: room, state: state, position: nil, waiting: nil, etaSeconds: nil,
      pollAfterMilliseconds: pollAfterMilliseconds, admitted: false)
  }
}
