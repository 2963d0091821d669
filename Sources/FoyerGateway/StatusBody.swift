internal import FoyerCore
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
  /// For the waiting page's countdown; not part of the JSON.
  var startsAtMilliseconds: Int64 = 0

  var json: String {
    func number(_ value: Int?) -> String { value.map(String.init) ?? "null" }
    var text = "{\"room\":\"\(room)\",\"state\":\"\(state)\",\"position\":\(number(position)),"
    text += "\"waiting\":\(number(waiting)),\"etaSeconds\":\(number(etaSeconds)),"
    text += "\"pollAfterMs\":\(pollAfterMilliseconds),\"admitted\":\(admitted)"
    if let pass { text += ",\"pass\":\"\(pass)\"" }
    return text + "}"
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
