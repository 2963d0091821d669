public import Foundation

/// The demo on-sale `boxoffice seed --demo` creates: an arena of 20,000 seats in priced
/// sections, plus a few smaller events so the event list has something to search.
public enum DemoSeed {
  public static let headliner = "Foyer Live: The Reunion Tour"

  public static func events(onSaleAt: Date, now: Date = Date()) -> [EventSpec] {
    let day: TimeInterval = 86_400
    var arena: [EventSpec.Section] = [
      EventSpec.Section(name: "Floor", rows: 20, seatsPerRow: 50, priceCents: 15_000)
    ]
    arena += (101...106).map {
      EventSpec.Section(name: "Lower \($0)", rows: 25, seatsPerRow: 40, priceCents: 9_500)
    }
    arena += (201...210).map {
      EventSpec.Section(name: "Upper \($0)", rows: 26, seatsPerRow: 50, priceCents: 4_500)
    }
    return [
      EventSpec(
        name: headliner, category: "concert", city: "Lisbon", venue: "Harbour Arena",
        startsAt: now.addingTimeInterval(30 * day), onSaleAt: onSaleAt, sections: arena),
      EventSpec(
        name: "Chamber Strings at Dusk", category: "classical", city: "Porto", venue: "Casa Quartet",
        startsAt: now.addingTimeInterval(12 * day), onSaleAt: now,
        sections: [
          EventSpec.Section(name: "Stalls", rows: 12, seatsPerRow: 20, priceCents: 6_000),
          EventSpec.Section(name: "Balcony", rows: 6, seatsPerRow: 16, priceCents: 3_500),
        ]),
      EventSpec(
        name: "Derby Night", category: "sports", city: "Lisbon", venue: "Estádio Municipal",
        startsAt: now.addingTimeInterval(20 * day), onSaleAt: now,
        sections: [
          EventSpec.Section(name: "North Stand", rows: 30, seatsPerRow: 60, priceCents: 4_000),
          EventSpec.Section(name: "South Stand", rows: 30, seatsPerRow: 60, priceCents: 4_000),
        ]),
      EventSpec(
        name: "Late Show: Improv Comedy", category: "comedy", city: "Coimbra", venue: "Teatro Pequeno",
        startsAt: now.addingTimeInterval(5 * day), onSaleAt: now,
        sections: [EventSpec.Section(name: "Hall", rows: 10, seatsPerRow: 18, priceCents: 2_500)]),
    ]
  }

  /// Creates the demo events that do not exist yet (by name); returns the headliner's id.
  public static func seed(_ inventory: Inventory, onSaleAt: Date) async throws -> UUID {
    var headlinerID: UUID?
    for spec in events(onSaleAt: onSaleAt) {
      var filter = Inventory.EventFilter()
      filter.text = spec.name
      let existing = try await inventory.events(filter).events.first { $0.name == spec.name }
      var id = existing?.id
      if id == nil { id = try await inventory.createEvent(spec).id }
      if spec.name == headliner { headlinerID = id }
    }
    return headlinerID!
  }
}
