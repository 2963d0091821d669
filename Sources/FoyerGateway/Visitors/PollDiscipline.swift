internal import FoyerCore
internal import NIOConcurrencyHelpers
internal import NIOCore
internal import NIOHTTP1

/// How soon a waiting visitor may ask again where it stands: a poll that comes before the
/// share `percent` of the `pollAfterMs` it was last told is refused (`429 poll_too_soon`) from
/// this memory, before any Redis work. Shared by the gateway's event loops, so a client
/// that opens a new connection per poll meets the same memory.
///
/// Direct-mapped, like `SeenMemo`: a slot is overwritten by whichever visitor polls into it
/// next, which can only let a poll through, never refuse a punctual one. With 2^18 slots a
/// flooder's slot survives the few milliseconds between its polls almost surely; a person's,
/// polling every few seconds, may be forgotten, which costs nothing.
/// Striped locks: two polls contend only when their slots share one of 64 stripes.
final class PollDiscipline: @unchecked Sendable {
  private struct Slot {
    var high: UInt64 = 0
    var low: UInt64 = 0
    /// The room's `roomKey`; 0 = empty.
    var room: UInt64 = 0
    /// Uptime milliseconds before which the next poll is too soon.
    var notBefore: Int64 = 0
  }

  /// 2^18 slots of 32 bytes: 8 MiB per gateway.
  static let defaultCapacity = 1 << 18
  private static let stripeCount = 64

  /// The share (percent) of `pollAfterMs` that must pass between polls; 0 = off.
  let percent: Int
  private let slots: UnsafeMutableBufferPointer<Slot>
  private let locks: [NIOLock]
  private let shift: Int

  init(percent: Int, capacity: Int = defaultCapacity) {
    precondition(capacity >= Self.stripeCount && capacity & (capacity - 1) == 0, "capacity: a power of two ≥ 64")
    self.percent = percent
    slots = .allocate(capacity: percent > 0 ? capacity : 1)
    slots.initialize(repeating: Slot())
    locks = (0..<Self.stripeCount).map { _ in NIOLock() }
    shift = 64 - (percent > 0 ? capacity : 1).trailingZeroBitCount
  }

  deinit { slots.deallocate() }

  var isOn: Bool { percent > 0 }

  /// Milliseconds until `visitor` may poll `room` again, or `nil` if it may now.
  func wait(_ visitor: VisitorID, room: String, now: Int64 = PollDiscipline.now()) -> Int64? {
    guard isOn else { return nil }
    let key = Self.roomKey(room)
    let index = index(visitor, key)
    let notBefore = locks[index & (Self.stripeCount - 1)].withLock { () -> Int64 in
      let slot = slots[index]
      return slot.room == key && slot.low == visitor.low && slot.high == visitor.high ? slot.notBefore : 0
    }
    return now < notBefore ? notBefore - now : nil
  }

  /// `visitor` was just told to poll `room` again after `pollAfterMilliseconds`.
  func polled(_ visitor: VisitorID, room: String, pollAfterMilliseconds: Int, now: Int64 = PollDiscipline.now()) {
    guard isOn, pollAfterMilliseconds > 0 else { return }
    let key = Self.roomKey(room)
    let index = index(visitor, key)
    let slot = Slot(
      high: visitor.high, low: visitor.low, room: key,
      notBefore: now + Int64(pollAfterMilliseconds * percent / 100))
    locks[index & (Self.stripeCount - 1)].withLock { slots[index] = slot }
  }

  /// `visitor` was just given `body`: a place in line (or a room that is paused, full or
  /// closed) says when to ask again; a pass or a challenge does not.
  func answered(_ body: StatusBody, visitor: VisitorID) {
    guard isOn, !body.admitted, body.challenge == nil else { return }
    polled(visitor, room: body.room, pollAfterMilliseconds: body.pollAfterMilliseconds)
  }

  static let refusal = Refusal(
    status: .tooManyRequests, code: "poll_too_soon",
    message: "you asked again sooner than you were told to; your place is kept: ask again after Retry-After seconds")
  /// Its body, written once: a flood is answered with it many times a second.
  static let refusalJSON = refusal.json

  static func retryAfterSeconds(_ waitMilliseconds: Int64) -> Int { Int(max(1, (waitMilliseconds + 999) / 1_000)) }

  static func now() -> Int64 { Int64(NIODeadline.now().uptimeNanoseconds / 1_000_000) }

  /// FNV-1a of the room id, never 0 (the empty slot's mark).
  private static func roomKey(_ room: String) -> UInt64 {
    var hash: UInt64 = 0xcbf2_9ce4_8422_2325
    for byte in room.utf8 { hash = (hash ^ UInt64(byte)) &* 0x100_0000_01b3 }
    return hash | 1
  }

  private func index(_ visitor: VisitorID, _ room: UInt64) -> Int {
    let mixed = ((visitor.high &* 0x9E37_79B9_7F4A_7C15) ^ visitor.low ^ room) &* 0xBF58_476D_1CE4_E5B9
    // With one slot (off) the shift is 64, and `>>` by 64 gives 0.
    return Int(truncatingIfNeeded: mixed >> shift)
  }
}
