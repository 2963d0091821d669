internal import FoyerCore

/// What one event loop last learned of recently polled visitors' last-seen second (the low
/// part of their queue score), so that a poll whose visitor was seen moments ago asks Redis
/// for `ZRANK` alone, without the `ZSCORE` that only decides whether to rewrite that second.
///
/// On a 1,000,000-visitor queue `ZSCORE` was about a sixth of Redis' time per poll (the
/// hash lookup, and formatting the score as a double). Skipping it is safe because a
/// visitor's last-seen second in Redis only moves forward: it is never older than what any
/// gateway saw or wrote, so "seen recently here" implies "seen recently". A visitor who left
/// the queue is not in `ZRANK`'s answer, whatever the memo says.
///
/// Direct-mapped: a lookup is one slot, and a collision only costs the `ZSCORE` the memo would
/// have saved. The slot comes from a hash of all 128 bits, not from the id's low bits: the
/// gateway's ids are random, but `foyer-bench`'s are not, and any id should spread.
/// Loop-confined, like a channel handler.
final class SeenMemo {
  private struct Slot {
    var high: UInt64
    var low: UInt64
    /// `RoomEntry.tag`; 0 = empty. A visitor id may be in more than one room.
    var room: UInt32
    /// Redis seconds (unix) of the last-seen second in the score.
    var seen: Int64

    func holds(_ visitor: VisitorID, room: UInt32) -> Bool {
      self.room == room && low == visitor.low && high == visitor.high
    }
  }

  /// 65,536 slots of 32 bytes: 2 MiB per event loop.
  static let defaultCapacity = 1 << 16

  private var slots: [Slot]
  private let shift: Int

  init(capacity: Int = defaultCapacity) {
    precondition(capacity > 0 && capacity & (capacity - 1) == 0, "capacity must be a power of two")
    slots = Array(repeating: Slot(high: 0, low: 0, room: 0, seen: 0), count: capacity)
    shift = 64 - capacity.trailingZeroBitCount
  }

  /// Fibonacci hashing of both halves: the top bits of the product (all zero bits for a
  /// capacity of 1, as `>>` by 64 gives 0).
  private func index(_ visitor: VisitorID) -> Int {
    let mixed = ((visitor.high &* 0x9E37_79B9_7F4A_7C15) ^ visitor.low) &* 0xBF58_476D_1CE4_E5B9
    return Int(truncatingIfNeeded: mixed >> shift)
  }

  /// The last-seen second recorded for `visitor` in room `room`, if any.
  func seen(_ visitor: VisitorID, room: UInt32) -> Int64? {
    let slot = slots[index(visitor)]
    return slot.holds(visitor, room: room) ? slot.seen : nil
  }

  /// Records that Redis holds `seen` (or later) as the visitor's last-seen second.
  func record(_ visitor: VisitorID, room: UInt32, seen: Int64) {
    slots[index(visitor)] = Slot(high: visitor.high, low: visitor.low, room: room, seen: seen)
  }

  /// Forgets `visitor` (no longer queued): the slot is free for another.
  func forget(_ visitor: VisitorID, room: UInt32) {
    let slot = index(visitor)
    if slots[slot].holds(visitor, room: room) { slots[slot].room = 0 }
  }
}
