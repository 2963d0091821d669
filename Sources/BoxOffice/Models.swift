public import Foundation
internal import HTTPTypes

/// An event as the API shows it.
public struct Event: Sendable, Hashable, Codable {
  public var id: UUID
  public var name: String
  public var category: String
  public var city: String
  public var venue: String
  public var startsAt: Date
  public var onSaleAt: Date
  public var status: String
  public var seatsAvailable: Int
  public var seatsTotal: Int
  public var minPriceCents: Int
}

/// One seat of the seat map. A hold that has run out counts as available even before the
/// expiry worker has released it.
public struct SeatView: Sendable, Hashable, Codable {
  public var id: Int64
  public var section: String
  public var row: String
  public var number: Int
  public var priceCents: Int
  public var status: String
}

/// Anything in a seat sorts the way the seat map reads: section, then row (A…Z before
/// AA…), then number — the same order the SQL uses (`section, length(row_label), row_label,
/// number`).
protocol SeatOrdered {
  var section: String { get }
  var row: String { get }
  var number: Int { get }
}

extension SeatOrdered {
  var seatOrder: (String, Int, String, Int) { (section, row.count, row, number) }
}

public struct HeldSeat: Sendable, Hashable, Codable, SeatOrdered {
  public var id: Int64
  public var section: String
  public var row: String
  public var number: Int
  public var priceCents: Int
}

public struct Hold: Sendable, Hashable, Codable {
  public var id: UUID
  public var eventId: UUID
  public var seats: [HeldSeat]
  public var totalCents: Int
  public var expiresAt: Date
  public var status: String
}

public struct Ticket: Sendable, Hashable, Codable, SeatOrdered {
  public var id: UUID
  public var seatId: Int64
  public var section: String
  public var row: String
  public var number: Int
  public var code: String
  /// `valid`, `used` (checked in at the door) or `revoked` (its order was cancelled).
  public var status: String = "valid"
  public var checkedInAt: Date? = nil
}

public struct Order: Sendable, Hashable, Codable {
  public var id: UUID
  public var eventId: UUID
  public var holdId: UUID
  public var totalCents: Int
  /// `confirmed` or `cancelled`.
  public var status: String
  public var createdAt: Date
  public var tickets: [Ticket]
  public var cancelledAt: Date? = nil
  public var refund: Refund? = nil
}

/// The money given back for a cancelled order: its own record, one per order.
public struct Refund: Sendable, Hashable, Codable {
  public var id: UUID
  public var amountCents: Int
  /// `pending` (the provider has not confirmed yet; retried) or `succeeded`.
  public var status: String
  public var requestedAt: Date
  public var completedAt: Date?
}

/// A venue layout for a new event: sections of rows of seats, each section with a price.
public struct EventSpec: Sendable, Hashable, Codable {
  public struct Section: Sendable, Hashable, Codable {
    public var name: String
    public var rows: Int
    public var seatsPerRow: Int
    public var priceCents: Int

    public init(name: String, rows: Int, seatsPerRow: Int, priceCents: Int) {
      self.name = name
      self.rows = rows
      self.seatsPerRow = seatsPerRow
      self.priceCents = priceCents
    }
  }

  public var name: String
  public var category: String
  public var city: String
  public var venue: String
  public var startsAt: Date
  public var onSaleAt: Date
  public var sections: [Section]

  public init(
    name: String, category: String, city: String, venue: String, startsAt: Date, onSaleAt: Date,
    sections: [Section]
  ) {
    self.name = name
    self.category = category
    self.city = city
    self.venue = venue
    self.startsAt = startsAt
    self.onSaleAt = onSaleAt
    self.sections = sections
  }

  /// Row labels: A…Z, then AA, AB, …
  static func rowLabel(_ index: Int) -> String {
    let letters = Array("ABCDEFGHIJKLMNOPQRSTUVWXYZ")
    return index < 26 ? String(letters[index]) : String(letters[index / 26 - 1]) + String(letters[index % 26])
  }

  /// Throws the first problem, named for the client.
  func validate() throws(APIError) {
    func check(_ ok: Bool, _ message: String) throws(APIError) {
      if !ok { throw APIError(.badRequest, "invalid_event", message) }
    }
    for (text, field) in [(name, "name"), (category, "category"), (city, "city"), (venue, "venue")]
      + sections.map({ ($0.name, "section names") })
    {
      try APIError.checkText(text, field)
    }
    try check(!name.isEmpty && name.count <= 200, "name must be 1-200 characters")
    try check(!category.isEmpty && category.count <= 60, "category must be 1-60 characters")
    try check(!city.isEmpty && city.count <= 100, "city must be 1-100 characters")
    try check(!venue.isEmpty && venue.count <= 200, "venue must be 1-200 characters")
    try check(!sections.isEmpty && sections.count <= 100, "sections must list 1-100 sections")
    try check(Set(sections.map(\.name)).count == sections.count, "section names must be unique")
    var seats = 0
    for section in sections {
      try check(!section.name.isEmpty && section.name.count <= 40, "section names must be 1-40 characters")
      try check((1...702).contains(section.rows), "rows must be 1-702 per section")
      try check((1...500).contains(section.seatsPerRow), "seatsPerRow must be 1-500")
      try check((0...10_000_000).contains(section.priceCents), "priceCents must be 0-10000000")
      seats += section.rows * section.seatsPerRow
    }
    try check(seats <= 200_000, "an event has at most 200000 seats")
  }
}
