public import FoyerCore

/// A room's queue as it stood at one instant, as samples of `(score, member) → rank` spaced
/// geometrically from near the front to the tail (`Scripts.sketch`): a position is read from
/// it by interpolating between the two samples around the visitor, then moving it forward by
/// the visitors who left the head since (admitted, or found abandoned there) and a share of
/// those who gave their place back.
///
/// Between two samples at ranks r and r(1 + g) the interpolation is off by less than g·r, so
/// the error stays under g of the position plus what changed since the sketch was taken.
/// Visitors who joined in the same millisecond share a score and Redis ranks them by member,
/// so the member is part of the key: at high join rates a millisecond's ties alone would
/// exceed the error near the front.
public struct PlaceSketch: Sendable, Hashable {
  /// Redis time of the sketch, unix ms.
  public let computedAtMilliseconds: Int64
  /// The room's counters then (`admitted + abandoned`, `left`) and the queue's size.
  public let popped: Int64
  public let left: Int64
  public let waiting: Int
  /// The samples' queue scores and members, ascending as Redis ranks them, and their
  /// 0-based ranks.
  let scores: [Int64]
  let members: [[UInt8]]
  let ranks: [Int]

  public var samples: Int { scores.count }

  /// Parses `Scripts.sketch`'s answer.
  public init(_ text: String) throws(RoomStoreError) {
    var fields = text.utf8.split(separator: UInt8(ascii: " "), omittingEmptySubsequences: true)[...]
    func number(_ field: Substring.UTF8View.SubSequence?) -> Int64? {
      field.flatMap { Int64(Substring($0)) }
    }
    guard let at = number(fields.popFirst()), let popped = number(fields.popFirst()),
      let left = number(fields.popFirst()), let waiting = number(fields.popFirst())
    else { throw RoomStoreError(.unexpectedReply, "a sketch without its header") }
    computedAtMilliseconds = at
    self.popped = popped
    self.left = left
    self.waiting = Int(waiting)
    var scores: [Int64] = []
    var members: [[UInt8]] = []
    var ranks: [Int] = []
    scores.reserveCapacity(fields.count)
    members.reserveCapacity(fields.count)
    ranks.reserveCapacity(fields.count)
    for field in fields {
      let parts = field.split(separator: UInt8(ascii: ":"), maxSplits: 2, omittingEmptySubsequences: false)
      guard parts.count == 3, let score = Int64(Substring(parts[0])), let rank = Int(Substring(parts[1])),
        rank > (ranks.last ?? -1)
      else { throw RoomStoreError(.unexpectedReply, "a sketch sample out of order") }
      let member = Array(parts[2])
      if let last = scores.last, Self.precedes(score, member, last, members[members.count - 1]) {
        throw RoomStoreError(.unexpectedReply, "a sketch sample out of order")
      }
      scores.append(score)
      members.append(member)
      ranks.append(rank)
    }
    self.scores = scores
    self.members = members
    self.ranks = ranks
  }

  /// Redis' order: by score, then bytewise by member.
  static func precedes(
    _ score: Int64, _ member: some Collection<UInt8>, _ otherScore: Int64,
    _ otherMember: some Collection<UInt8>
  ) -> Bool {
    score != otherScore ? score < otherScore : member.lexicographicallyPrecedes(otherMember)
  }

  /// Eight bytes of a member from `offset`, big-endian (zeros past its end): ordered as the
  /// members are, among members that agree before `offset`.
  static func key<Member: RandomAccessCollection<UInt8>>(_ member: Member, from offset: Int) -> UInt64
  where Member.Index == Int {
    var key: UInt64 = 0
    for index in offset..<(offset + 8) { key = key << 8 | UInt64(index < member.count ? member[index] : 0) }
    return key
  }

  /// The estimated position (1 = next) now of `visitor`, whose queue score is `score`, given
  /// the room's counters now; `nil` when ahead of the first sample (near the front: ask
  /// Redis) or behind the last (joined since the sketch).
  public func position(score: Int64, visitor: VisitorID, popped poppedNow: Int64, left leftNow: Int64) -> Int?
  {
    // The member's 22 bytes on the stack: no allocation on a poll.
    withUnsafeTemporaryAllocation(of: UInt8.self, capacity: VisitorID.encodedLength) { buffer in
      visitor.encode(into: UnsafeMutableRawBufferPointer(buffer))
      return ahead(
        score: score, member: UnsafeBufferPointer(buffer), popped: poppedNow, left: leftNow,
        pastTheTail: false
      ).map { $0 + 1 }
    }
  }

  /// Of a queue shard sketched here, how many wait now ahead of any entry scored `score` or
  /// more (everyone in it, past the last sample), given the shard's counters now; `nil` when
  /// ahead of the first sample.
  public func ahead(ofScore score: Int64, popped poppedNow: Int64, left leftNow: Int64) -> Int? {
    ahead(
      score: score, member: UnsafeBufferPointer(start: nil, count: 0), popped: poppedNow, left: leftNow,
      pastTheTail: true)
  }

  private func ahead(
    score: Int64, member: UnsafeBufferPointer<UInt8>, popped poppedNow: Int64, left leftNow: Int64,
    pastTheTail: Bool
  ) -> Int? {
    guard let first = scores.first, !Self.precedes(score, member, first, members[0]) else { return nil }
    if Self.precedes(scores[scores.count - 1], members[members.count - 1], score, member) {
      guard pastTheTail else { return nil }
      return corrected(rank: Double(waiting), popped: poppedNow, left: leftNow)
    }
    // The last sample at or before the visitor.
    var low = 0
    var high = scores.count - 1
    while low < high {
      let middle = (low + high + 1) / 2
      if !Self.precedes(score, member, scores[middle], members[middle]) {
        low = middle
      } else {
        high = middle - 1
      }
    }
    var rank = Double(ranks[low])
    if low + 1 < scores.count {
      // Distances in score units, the member a fraction of one (read from where the two
      // samples' members first differ): within a tie, members spread evenly.
      let from =
        scores[low] == scores[low + 1]
        ? zip(members[low], members[low + 1]).prefix(while: { $0 == $1 }).count : 0
      let base = Double(Self.key(members[low], from: from))
      let span =
        Double(scores[low + 1] - scores[low]) + (Double(Self.key(members[low + 1], from: from)) - base)
        / 0x1p64
      let offset = Double(score - scores[low]) + (Double(Self.key(member, from: from)) - base) / 0x1p64
      if span > 0 { rank += offset / span * Double(ranks[low + 1] - ranks[low]) }
    }
    return corrected(rank: rank, popped: poppedNow, left: leftNow)
  }

  /// Everyone popped since was ahead; of those who left (from the rest), those ahead in
  /// proportion.
  private func corrected(rank: Double, popped poppedNow: Int64, left leftNow: Int64) -> Int {
    let popped = Double(max(poppedNow - self.popped, 0))
    let behindThePopped = max(rank - popped, 0)
    let ahead =
      behindThePopped
      - Double(max(leftNow - left, 0)) * behindThePopped / max(Double(waiting) - popped, 1)
    return max(Int(ahead.rounded()), 0)
  }
}
