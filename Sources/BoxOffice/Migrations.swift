public import Logging
public import PostgresNIO

/// The schema, as numbered migrations applied in order, each in its own transaction, and
/// recorded in `schema_migrations`. A migration is never edited once released: changes are
/// new migrations.
///
/// The invariants of DESIGN §6 live in the database, not only in code:
/// - a seat is `held` exactly when it has a hold id and an expiry;
/// - a seat is in at most one live ticket (`tickets_one_live_per_seat`), so no code path can
///   sell it twice;
/// - every seat change is appended to `seat_audit` by a trigger, and the audit table refuses
///   updates and deletes.
public enum Migrations {
  public static let all: [(version: Int, name: String, statements: [String])] = [
    (
      1, "inventory",
      [
        """
        CREATE TABLE venues (
          id uuid PRIMARY KEY,
          name text NOT NULL,
          city text NOT NULL,
          created_at timestamptz NOT NULL DEFAULT now()
        )
        """,
        """
        CREATE TABLE events (
          id uuid PRIMARY KEY,
          venue_id uuid NOT NULL REFERENCES venues(id),
          name text NOT NULL,
          category text NOT NULL,
          city text NOT NULL,
          starts_at timestamptz NOT NULL,
          on_sale_at timestamptz NOT NULL,
          status text NOT NULL DEFAULT 'scheduled'
            CHECK (status IN ('scheduled', 'on_sale', 'sold_out', 'cancelled')),
          created_at timestamptz NOT NULL DEFAULT now()
        )
        """,
        """
        CREATE INDEX events_starts ON events (starts_at)
        """,
        """
        CREATE TABLE seats (
          id bigserial PRIMARY KEY,
          event_id uuid NOT NULL REFERENCES events(id),
          section text NOT NULL,
          row_label text NOT NULL,
          number int NOT NULL CHECK (number > 0),
          price_cents int NOT NULL CHECK (price_cents >= 0),
          status text NOT NULL DEFAULT 'available' CHECK (status IN ('available', 'held', 'sold')),
          hold_id uuid,
          held_until timestamptz,
          version bigint NOT NULL DEFAULT 0,
          UNIQUE (event_id, section, row_label, number),
          CHECK ((status = 'held') = (hold_id IS NOT NULL AND held_until IS NOT NULL)),
          CHECK (status <> 'available' OR hold_id IS NULL)
        )
        """,
        """
        CREATE INDEX seats_by_event ON seats (event_id, section, row_label, number)
        """,
        """
        CREATE INDEX seats_held_until ON seats (held_until) WHERE status = 'held'
        """,
        """
        CREATE INDEX seats_by_hold ON seats (hold_id) WHERE hold_id IS NOT NULL
        """,
        """
        CREATE TABLE holds (
          id uuid PRIMARY KEY,
          event_id uuid NOT NULL REFERENCES events(id),
          visitor text NOT NULL,
          seat_ids bigint[] NOT NULL,
          total_cents int NOT NULL,
          expires_at timestamptz NOT NULL,
          status text NOT NULL DEFAULT 'active'
            CHECK (status IN ('active', 'released', 'expired', 'ordered')),
          version bigint NOT NULL DEFAULT 0,
          created_at timestamptz NOT NULL DEFAULT now()
        )
        """,
        """
        CREATE INDEX holds_by_visitor ON holds (visitor, created_at)
        """,
        """
        CREATE TABLE orders (
          id uuid PRIMARY KEY,
          event_id uuid NOT NULL REFERENCES events(id),
          hold_id uuid NOT NULL UNIQUE REFERENCES holds(id),
          visitor text NOT NULL,
          total_cents int NOT NULL,
          status text NOT NULL DEFAULT 'confirmed' CHECK (status IN ('confirmed', 'refunded')),
          created_at timestamptz NOT NULL DEFAULT now()
        )
        """,
        """
        CREATE INDEX orders_by_visitor ON orders (visitor, created_at)
        """,
        """
        CREATE TABLE tickets (
          id uuid PRIMARY KEY,
          order_id uuid NOT NULL REFERENCES orders(id),
          seat_id bigint NOT NULL REFERENCES seats(id),
          code text NOT NULL,
          live boolean NOT NULL DEFAULT true
        )
        """,
        """
        -- The rule that makes double-selling impossible whatever the code does.
        CREATE UNIQUE INDEX tickets_one_live_per_seat ON tickets (seat_id) WHERE live
        """,
        """
        CREATE TABLE payments (
          id uuid PRIMARY KEY,
          hold_id uuid NOT NULL REFERENCES holds(id),
          order_id uuid REFERENCES orders(id),
          idempotency_key text NOT NULL,
          kind text NOT NULL CHECK (kind IN ('charge', 'refund', 'void')),
          outcome text NOT NULL CHECK (outcome IN ('succeeded', 'declined', 'failed')),
          amount_cents int NOT NULL,
          card_last4 text NOT NULL,
          provider_reference text,
          created_at timestamptz NOT NULL DEFAULT now()
        )
        """,
        """
        CREATE INDEX payments_by_hold ON payments (hold_id)
        """,
        """
        CREATE TABLE idempotency_keys (
          visitor text NOT NULL,
          key text NOT NULL,
          request_hash text NOT NULL,
          state text NOT NULL CHECK (state IN ('in_flight', 'done')),
          response_status int,
          response_body text,
          created_at timestamptz NOT NULL DEFAULT now(),
          PRIMARY KEY (visitor, key)
        )
        """,
        """
        CREATE TABLE seat_audit (
          id bigserial PRIMARY KEY,
          seat_id bigint NOT NULL,
          event_id uuid NOT NULL,
          from_status text,
          to_status text NOT NULL,
          hold_id uuid,
          at timestamptz NOT NULL DEFAULT clock_timestamp()
        )
        """,
        """
        CREATE INDEX seat_audit_by_seat ON seat_audit (seat_id, id)
        """,
        """
        CREATE FUNCTION seat_audit_append() RETURNS trigger LANGUAGE plpgsql AS $$
        BEGIN
          IF TG_OP = 'INSERT' THEN
            INSERT INTO seat_audit (seat_id, event_id, from_status, to_status, hold_id)
            VALUES (NEW.id, NEW.event_id, NULL, NEW.status, NEW.hold_id);
          ELSIF NEW.status IS DISTINCT FROM OLD.status OR NEW.hold_id IS DISTINCT FROM OLD.hold_id THEN
            INSERT INTO seat_audit (seat_id, event_id, from_status, to_status, hold_id)
            VALUES (NEW.id, NEW.event_id, OLD.status, NEW.status, COALESCE(NEW.hold_id, OLD.hold_id));
          END IF;
          RETURN NULL;
        END $$
        """,
        """
        CREATE TRIGGER seats_audited AFTER INSERT OR UPDATE ON seats
          FOR EACH ROW EXECUTE FUNCTION seat_audit_append()
        """,
        """
        CREATE FUNCTION seat_audit_is_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
        BEGIN
          RAISE EXCEPTION 'seat_audit is append-only';
        END $$
        """,
        """
        CREATE TRIGGER seat_audit_append_only BEFORE UPDATE OR DELETE ON seat_audit
          FOR EACH ROW EXECUTE FUNCTION seat_audit_is_append_only()
        """,
      ]
    ),
    (
      2, "checkin_and_cancel",
      [
        """
        ALTER TABLE tickets
          ADD COLUMN checked_in_at timestamptz,
          ADD COLUMN checked_in_gate text,
          ADD COLUMN revoked_at timestamptz,
          ADD CONSTRAINT tickets_check_in_whole CHECK ((checked_in_at IS NULL) = (checked_in_gate IS NULL)),
          ADD CONSTRAINT tickets_revoked_not_live CHECK (live = (revoked_at IS NULL)),
          -- A ticket used at the door is never revoked (its order can no longer be cancelled).
          ADD CONSTRAINT tickets_used_stays_live CHECK (checked_in_at IS NULL OR live)
        """,
        """
        ALTER TABLE orders
          DROP CONSTRAINT orders_status_check,
          ADD CONSTRAINT orders_status_check CHECK (status IN ('confirmed', 'refunded', 'cancelled')),
          ADD COLUMN cancelled_at timestamptz,
          ADD CONSTRAINT orders_cancelled_when CHECK ((status = 'cancelled') = (cancelled_at IS NOT NULL))
        """,
        """
        -- One refund per order, whatever the retries: the row is made in the transaction that
        -- cancels the order, and the provider is asked under one idempotency key per order.
        CREATE TABLE refunds (
          id uuid PRIMARY KEY,
          order_id uuid NOT NULL UNIQUE REFERENCES orders(id),
          charge_id uuid NOT NULL REFERENCES payments(id),
          amount_cents int NOT NULL CHECK (amount_cents >= 0),
          status text NOT NULL CHECK (status IN ('pending', 'succeeded')),
          requested_at timestamptz NOT NULL DEFAULT now(),
          completed_at timestamptz,
          CHECK ((status = 'succeeded') = (completed_at IS NOT NULL))
        )
        """,
        """
        CREATE INDEX refunds_pending ON refunds (requested_at) WHERE status = 'pending'
        """,
        """
        CREATE FUNCTION never_deleted() RETURNS trigger LANGUAGE plpgsql AS $$
        BEGIN
          RAISE EXCEPTION '% rows are never deleted', TG_TABLE_NAME;
        END $$
        """,
        """
        CREATE TRIGGER orders_never_deleted BEFORE DELETE ON orders
          FOR EACH ROW EXECUTE FUNCTION never_deleted()
        """,
        """
        CREATE TRIGGER refunds_never_deleted BEFORE DELETE ON refunds
          FOR EACH ROW EXECUTE FUNCTION never_deleted()
        """,
      ]
    ),
    (
      3, "waitlist",
      [
        """
        CREATE TABLE waitlist (
          id uuid PRIMARY KEY,
          event_id uuid NOT NULL REFERENCES events(id),
          visitor text NOT NULL,
          seats int NOT NULL CHECK (seats > 0),
          -- The order of the line: offers go strictly by it.
          place bigserial NOT NULL,
          status text NOT NULL DEFAULT 'waiting'
            CHECK (status IN ('waiting', 'offered', 'claimed', 'lapsed', 'left')),
          hold_id uuid REFERENCES holds(id),
          offered_at timestamptz,
          created_at timestamptz NOT NULL DEFAULT now(),
          CHECK (status = 'left' OR (status = 'waiting') = (hold_id IS NULL)),
          CHECK ((hold_id IS NULL) = (offered_at IS NULL))
        )
        """,
        """
        CREATE UNIQUE INDEX waitlist_one_place_per_buyer ON waitlist (event_id, visitor)
          WHERE status IN ('waiting', 'offered')
        """,
        """
        CREATE INDEX waitlist_line ON waitlist (event_id, place) WHERE status = 'waiting'
        """,
        """
        -- An offer is one hold for one place in line.
        CREATE UNIQUE INDEX waitlist_one_place_per_hold ON waitlist (hold_id) WHERE hold_id IS NOT NULL
        """,
        """
        CREATE INDEX waitlist_by_buyer ON waitlist (visitor, created_at)
        """,
      ]
    ),
  ]

  /// Applies every migration not applied yet; returns the versions applied. Concurrent
  /// callers (several instances starting at once) serialise on an advisory lock.
  @discardableResult
  public static func migrate(_ client: PostgresClient, logger: Logger) async throws -> [Int] {
    try await client.withConnection { connection in
      // The lock first: two `CREATE TABLE IF NOT EXISTS` racing can still collide.
      try await connection.query("SELECT pg_advisory_lock(7271)", logger: logger)
      do {
        try await connection.query(
          """
          CREATE TABLE IF NOT EXISTS schema_migrations (
            version int PRIMARY KEY, name text NOT NULL, applied_at timestamptz NOT NULL DEFAULT now())
          """, logger: logger)
        var applied: Set<Int> = []
        for try await version in try await connection.query(
          "SELECT version FROM schema_migrations", logger: logger
        ).decode(Int.self) {
          applied.insert(version)
        }
        var done: [Int] = []
        for migration in all where !applied.contains(migration.version) {
          try await connection.query("BEGIN", logger: logger)
          do {
            // One statement per query: the extended protocol postgres-nio speaks takes no more.
            for statement in migration.statements {
              try await connection.query(PostgresQuery(unsafeSQL: statement), logger: logger)
            }
            try await connection.query(
              "INSERT INTO schema_migrations (version, name) VALUES (\(migration.version), \(migration.name))",
              logger: logger)
            try await connection.query("COMMIT", logger: logger)
          } catch {
            _ = try? await connection.query("ROLLBACK", logger: logger)
            throw error
          }
          logger.info(
            "migration applied", metadata: ["version": "\(migration.version)", "name": "\(migration.name)"])
          done.append(migration.version)
        }
        _ = try? await connection.query("SELECT pg_advisory_unlock(7271)", logger: logger)
        return done
      } catch {
        _ = try? await connection.query("SELECT pg_advisory_unlock(7271)", logger: logger)
        throw error
      }
    }
  }
}
