public import RedisNIO

/// The Lua scripts that make every multi-key decision atomically in Redis (DESIGN §3).
///
/// All scripts take the room's keys in `RoomKeys.scriptKeys` order and read the time from
/// Redis `TIME`, so gateways with skewed clocks agree.
///
/// Queue scores pack two numbers into one exact double: `order * 8192 + seen`, where
/// `order` is the visitor's place in milliseconds since 2020-01-01 (40 bits, good to 2054)
/// and `seen` is the second of the visitor's last poll modulo 8192 (13 bits). The low bits
/// never reorder visitors whose orders differ, and they let abandonment be judged without a
/// second per-visitor structure: a sorted-set entry is ~125 bytes in Redis, and a separate
/// `seen` set would have doubled the memory of a waiting visitor.
///
/// Visitors who join before the on-sale start get a random order in the first 1,000,000 ms
/// after 2020-01-01: shuffled among themselves and ahead of everyone who joins later.
public enum Scripts {
  static let prologue = """
    local K_QUEUE, K_ACTIVE, K_CLAIMED, K_SETTINGS, K_BUCKET, K_STATS, K_MINUTE, K_REVOKED, K_SOLVED =
      KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5], KEYS[6], KEYS[7], KEYS[8], KEYS[9]
    local EPOCH = 1577836800000
    local SEEN = 8192
    local PREQUEUE = 1000000
    local t = redis.call('TIME')
    local now_s = tonumber(t[1])
    local now = now_s * 1000 + math.floor(tonumber(t[2]) / 1000)

    local function settings()
      local v = redis.call('HMGET', K_SETTINGS, 'state', 'rate_per_minute', 'max_active', 'session_seconds',
        'claim_seconds', 'abandon_seconds', 'starts_at', 'jitter_ms', 'max_queue', 'max_places_per_client',
        'challenge_bits', 'shards')
      if not v[1] then return nil end
      return { state = v[1], rate = tonumber(v[2]) or 0, max_active = tonumber(v[3]) or 0,
        session = tonumber(v[4]) or 600, claim = tonumber(v[5]) or 60, abandon = tonumber(v[6]) or 120,
        starts_at = tonumber(v[7]) or 0, jitter = tonumber(v[8]) or 0, max_queue = tonumber(v[9]) or 0,
        max_places = tonumber(v[10]) or 20, challenge = tonumber(v[11]) or 0, shards = tonumber(v[12]) or 1 }
    end

    -- The caller routes by the number of queue shards it believes the room has: wrong, it is
    -- told the right one and asks again.
    local function shards_differ(s, assumed)
      return (tonumber(assumed) or 1) ~= s.shards
    end

    -- Visitors waiting: the queue's size, or with shards (other slots) the room's count of them.
    local function waiting_count(s)
      if s.shards > 1 then return tonumber(redis.call('HGET', K_STATS, 'queued')) or 0 end
      return redis.call('ZCARD', K_QUEUE)
    end

    -- Ends unclaimed admissions past their claim deadline (no-shows) and sessions past their end.
    local function expire_active()
      local expired = redis.call('ZRANGEBYSCORE', K_ACTIVE, '-inf', now, 'LIMIT', 0, 1000)
      if #expired == 0 then return end
      local no_shows, ended = 0, 0
      for _, v in ipairs(expired) do
        if redis.call('SREM', K_CLAIMED, v) == 1 then ended = ended + 1 else no_shows = no_shows + 1 end
      end
      redis.call('ZREM', K_ACTIVE, unpack(expired))
      if no_shows > 0 then redis.call('HINCRBY', K_STATS, 'no_shows', no_shows) end
      if ended > 0 then redis.call('HINCRBY', K_STATS, 'expired', ended) end
    end

    -- Token bucket: refilled continuously at rate/min, holding at most one second's worth (>= 1).
    local function refill(s)
      local burst = math.max(1, s.rate / 60)
      local b = redis.call('HMGET', K_BUCKET, 'tokens', 'ts')
      local tokens = tonumber(b[1]) or burst
      local ts = tonumber(b[2]) or now
      if now > ts then tokens = math.min(burst, tokens + (now - ts) * s.rate / 60000) end
      return math.min(tokens, burst)
    end

    local function save_bucket(tokens)
      redis.call('HSET', K_BUCKET, 'tokens', string.format('%.6f', tokens), 'ts', string.format('%d', now))
    end

    -- Admissions per second over the last minute, in a 60-slot ring of 'second:count'.
    local function record(n)
      local slot = now_s % 60
      local cur = redis.call('HGET', K_MINUTE, slot)
      local count = 0
      if cur then
        local i = string.find(cur, ':')
        if tonumber(string.sub(cur, 1, i - 1)) == now_s then count = tonumber(string.sub(cur, i + 1)) end
      end
      redis.call('HSET', K_MINUTE, slot, string.format('%d:%d', now_s, count + n))
    end

    local function measured()
      local total = 0
      for _, cur in ipairs(redis.call('HVALS', K_MINUTE)) do
        local i = string.find(cur, ':')
        if tonumber(string.sub(cur, 1, i - 1)) > now_s - 60 then total = total + tonumber(string.sub(cur, i + 1)) end
      end
      return total
    end

    -- Refreshes a waiting visitor's last-seen second without moving them.
    local function touch(v, score)
      local seen = score % SEEN
      local bucket = now_s % SEEN
      if seen ~= bucket then redis.call('ZADD', K_QUEUE, 'XX', string.format('%d', score - seen + bucket), v) end
    end

    -- The score last: the gateway signs it into the visitor's place cookie.
    local function queued(v, s)
      local rank = redis.call('ZRANK', K_QUEUE, v)
      return { 'queued', rank + 1, redis.call('ZCARD', K_QUEUE), s.rate,
        tonumber(redis.call('HGET', K_STATS, 'rate_1m')) or 0, s.state, s.starts_at, now, s.abandon,
        redis.call('ZSCORE', K_QUEUE, v) }
    end

    local function claim(v, s)
      local d = now + s.session * 1000
      redis.call('SADD', K_CLAIMED, v)
      redis.call('ZADD', K_ACTIVE, d, v)
      redis.call('HINCRBY', K_STATS, 'claimed', 1)
      return { 'active', d }
    end

    -- Where a known visitor stands (active, admitted or queued), or nil.
    local function locate(v, s, claim_now)
      local d = tonumber(redis.call('ZSCORE', K_ACTIVE, v))
      if d and d > now then
        if redis.call('SISMEMBER', K_CLAIMED, v) == 1 then return { 'active', d } end
        if claim_now then return claim(v, s) end
        return { 'admitted', d }
      end
      -- A sharded room's queue lives in other slots: the gateway asks the visitor's shard.
      if s.shards > 1 then return nil end
      local score = redis.call('ZSCORE', K_QUEUE, v)
      if score then
        touch(v, tonumber(score))
        return queued(v, s)
      end
      return nil
    end

    """

  /// ARGV: visitor, random integer in [0, 2^31), '1' if the visitor id is new, the most new
  /// ids per client per minute (0 = no limit), and a solved challenge's nonce, expiry (unix
  /// seconds) and bits ('', 0, 0 for none: the gateway verified the work before calling).
  /// KEYS[10] and KEYS[11], with a client: its places counter (a day) and its new-id counter
  /// (a minute). Joins (or finds) the visitor. A client over a limit is refused before it
  /// takes a place: { 'refused', reason, seconds until the count ends }; in a room with
  /// `challenge_bits`, a join without an unused solution of that many bits is answered
  /// { 'challenge', bits, starts_at }. Each solution buys one place: its nonce is kept until it expires.
  /// ARGV[8]: the queue shards the caller believes the room has. With more than one, the place
  /// is counted here and answered { 'enqueue', 0, waiting, rate, rate_1m, state, starts_at, now,
  /// abandon, score }: the caller adds the visitor to its shard with that score.
  public static let join = RedisScript(
    prologue + """
      local s = settings()
      if not s then return { 'no_room' } end
      if shards_differ(s, ARGV[8]) then return { 'shards', s.shards } end
      local v = ARGV[1]
      local K_PLACES, K_MINTED = KEYS[10], KEYS[11]
      if K_MINTED and ARGV[3] == '1' and (tonumber(ARGV[4]) or 0) > 0 then
        -- Every new id counts, refused or not: a client that keeps asking stays refused.
        local minted = redis.call('INCR', K_MINTED)
        if minted == 1 then redis.call('EXPIRE', K_MINTED, 60) end
        if minted > tonumber(ARGV[4]) then
          return { 'refused', 'too_many_visitors', math.max(1, redis.call('TTL', K_MINTED)) }
        end
      else
        local found = locate(v, s, false)
        if found then return found end
      end
      if s.state == 'closed' then return { 'closed' } end
      if s.state == 'passthrough' then return { 'passthrough' } end
      local waiting = waiting_count(s)
      if s.max_queue > 0 and waiting >= s.max_queue then return { 'full', waiting } end
      -- A client over its places is refused before a solution is spent on nothing.
      local counted = K_PLACES and s.max_places > 0
      if counted and (tonumber(redis.call('GET', K_PLACES)) or 0) >= s.max_places then
        return { 'refused', 'too_many_places', math.max(1, redis.call('TTL', K_PLACES)) }
      end
      if s.challenge > 0 then
        local nonce, expiry, bits = ARGV[5], tonumber(ARGV[6]) or 0, tonumber(ARGV[7]) or 0
        if not nonce or nonce == '' or bits < s.challenge or expiry * 1000 <= now then
          return { 'challenge', s.challenge, s.starts_at }
        end
        redis.call('ZREMRANGEBYSCORE', K_SOLVED, '-inf', now)
        if redis.call('ZADD', K_SOLVED, 'NX', expiry * 1000, nonce) == 0 then return { 'challenge', s.challenge, s.starts_at } end
      end
      if counted and redis.call('INCR', K_PLACES) == 1 then redis.call('EXPIRE', K_PLACES, 86400) end
      -- Queue only when needed: an empty queue with room and a token admits at once.
      if s.state == 'queue' and now >= s.starts_at and waiting == 0 then
        expire_active()
        local tokens = refill(s)
        if tokens >= 1 and redis.call('ZCARD', K_ACTIVE) < s.max_active then
          local deadline = now + s.claim * 1000
          redis.call('ZADD', K_ACTIVE, deadline, v)
          save_bucket(tokens - 1)
          redis.call('HINCRBY', K_STATS, 'joined', 1)
          redis.call('HINCRBY', K_STATS, 'admitted', 1)
          record(1)
          return { 'admitted', deadline }
        end
      end
      local fraction = tonumber(ARGV[2]) / 2147483648
      local order
      if now < s.starts_at then
        -- Early arrivals are shuffled over a band of orders that lies before every possible
        -- later join (the first PREQUEUE ms after EPOCH), even if the start is moved.
        order = EPOCH + math.floor(fraction * PREQUEUE)
      else
        order = now + math.floor(fraction * (s.jitter + 1))
      end
      local score = string.format('%d', (order - EPOCH) * SEEN + now_s % SEEN)
      if s.shards > 1 then
        redis.call('HINCRBY', K_STATS, 'queued', 1)
        redis.call('HINCRBY', K_STATS, 'joined', 1)
        return { 'enqueue', 0, waiting + 1, s.rate, tonumber(redis.call('HGET', K_STATS, 'rate_1m')) or 0, s.state,
          s.starts_at, now, s.abandon, score }
      end
      redis.call('ZADD', K_QUEUE, 'NX', score, v)
      redis.call('HINCRBY', K_STATS, 'joined', 1)
      return queued(v, s)
      """)

  /// ARGV: visitor, '1' to claim an unclaimed admission, the shards the caller believes the
  /// room has. Where the visitor stands (in a sharded room: only if admitted).
  public static let status = RedisScript(
    prologue + """
      local s = settings()
      if not s then return { 'no_room' } end
      if shards_differ(s, ARGV[3]) then return { 'shards', s.shards } end
      return locate(ARGV[1], s, ARGV[2] == '1') or { 'absent', s.state }
      """)

  /// ARGV: visitor. Turns an admission into a session; idempotent for a claimed visitor.
  public static let claim = RedisScript(
    prologue + """
      local s = settings()
      if not s then return { 'no_room' } end
      local v = ARGV[1]
      local d = tonumber(redis.call('ZSCORE', K_ACTIVE, v))
      if not d or d <= now then return { 'absent', s.state } end
      if redis.call('SISMEMBER', K_CLAIMED, v) == 1 then return { 'active', d } end
      return claim(v, s)
      """)

  /// ARGV: most to admit, most queue entries to look at, the shards the caller believes the
  /// room has (one: sharded rooms tick with `reserve` and `commit`). One admission tick.
  /// Returns { admitted count, abandoned, waiting, active, redis time ms, { visitors } }.
  public static let admit = RedisScript(
    prologue + """
      local s = settings()
      if not s then return { 'no_room' } end
      if shards_differ(s, ARGV[3]) then return { 'shards', s.shards } end
      expire_active()
      local waiting = redis.call('ZCARD', K_QUEUE)
      local active = redis.call('ZCARD', K_ACTIVE)
      local tokens = refill(s)
      if s.state ~= 'queue' or now < s.starts_at or waiting == 0 then
        save_bucket(tokens)
        redis.call('HSET', K_STATS, 'rate_1m', measured())
        return { 0, 0, waiting, active, now, {} }
      end
      local want = math.min(math.floor(tokens), s.max_active - active, tonumber(ARGV[1]))
      local limit = tonumber(ARGV[2])
      local admitted, abandoned, scanned = {}, 0, 0
      local bucket = now_s % SEEN
      local deadline = now + s.claim * 1000
      while #admitted < want and scanned < limit do
        -- ZPOPMIN reads and removes the head in one pass over the skip list.
        local batch = redis.call('ZPOPMIN', K_QUEUE, math.min(want - #admitted, limit - scanned))
        if #batch == 0 then break end
        local entries = {}
        for i = 1, #batch, 2 do
          local v = batch[i]
          scanned = scanned + 1
          -- Seconds since the last poll, modulo the 13-bit window.
          if (bucket - tonumber(batch[i + 1]) % SEEN) % SEEN > s.abandon then
            abandoned = abandoned + 1
          else
            admitted[#admitted + 1] = v
            entries[#entries + 1] = deadline
            entries[#entries + 1] = v
          end
        end
        if #entries > 0 then redis.call('ZADD', K_ACTIVE, unpack(entries)) end
      end
      if #admitted > 0 then
        redis.call('HINCRBY', K_STATS, 'admitted', #admitted)
        record(#admitted)
      end
      if abandoned > 0 then redis.call('HINCRBY', K_STATS, 'abandoned', abandoned) end
      save_bucket(tokens - #admitted)
      redis.call('HSET', K_STATS, 'rate_1m', measured())
      return { #admitted, abandoned, waiting - scanned, active + #admitted, now, admitted }
      """)

  /// ARGV: visitor, the shards the caller believes the room has. Frees the visitor's slot, or
  /// gives back the place in the queue (a sharded room's queue: the caller's part). A pass
  /// that was issued (a claimed slot) is logged as revoked, with its expiry, for every
  /// gateway to refuse; the log keeps a day, the longest a session may be.
  public static let release = RedisScript(
    prologue + """
      local v = ARGV[1]
      local shards = tonumber(redis.call('HGET', K_SETTINGS, 'shards')) or 1
      if (tonumber(ARGV[2]) or 1) ~= shards then return { 'shards', shards } end
      local ends = redis.call('ZSCORE', K_ACTIVE, v)
      if ends and redis.call('ZREM', K_ACTIVE, v) == 1 then
        if redis.call('SREM', K_CLAIMED, v) == 1 then
          redis.call('ZADD', K_REVOKED, now, v .. ':' .. math.floor(tonumber(ends) / 1000))
          redis.call('ZREMRANGEBYSCORE', K_REVOKED, '-inf', now - 86400000)
        end
        redis.call('HINCRBY', K_STATS, 'released', 1)
        return 'released'
      end
      if shards == 1 and redis.call('ZREM', K_QUEUE, v) == 1 then
        redis.call('HINCRBY', K_STATS, 'left', 1)
        return 'left'
      end
      return 'none'
      """)
}

extension Scripts {
  /// KEYS: the room's queue, stats and sketch (or a shard's queue, counters and sketch). ARGV: the first rank sampled (0-based), the
  /// growth between samples (0.004: each sample at most 0.4 % of its rank after the last), and
  /// the age in ms under which the stored sketch is answered as it is.
  ///
  /// The room's queue as `score:rank:member` samples (equal scores are ranked by member),
  /// geometrically spaced from the first rank to
  /// the tail, after a header `now popped left waiting` (Redis ms; admissions plus head
  /// abandonments, and places given back, both counted since the room was made; the queue's
  /// size). Computed by whichever gateway asks first once it has aged, kept for the others:
  /// one `ZRANGE` of O(log n) per sample.
  public static let sketch = RedisScript(
    """
    local K_QUEUE, K_STATS, K_SKETCH = KEYS[1], KEYS[2], KEYS[3]
    local first, growth, max_age = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3])
    local t = redis.call('TIME')
    local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
    local stored = redis.call('GET', K_SKETCH)
    if stored then
      local at = tonumber(string.match(stored, '^(%d+)'))
      if at and now - at < max_age and now >= at then return stored end
    end
    local n = redis.call('ZCARD', K_QUEUE)
    -- A room's stats count its head's admitted and abandoned; a shard's counters, its popped.
    local st = redis.call('HMGET', K_STATS, 'admitted', 'abandoned', 'left', 'popped')
    local popped = (tonumber(st[1]) or 0) + (tonumber(st[2]) or 0) + (tonumber(st[4]) or 0)
    local parts = { string.format('%d %d %d %d', now, popped, tonumber(st[3]) or 0, n) }
    local r = first
    while r < n do
      local e = redis.call('ZRANGE', K_QUEUE, r, r, 'WITHSCORES')
      parts[#parts + 1] = string.format('%d:%d:%s', tonumber(e[2]), r, e[1])
      if r == n - 1 then break end
      r = math.min(r + math.max(1, math.floor(r * growth)), n - 1)
    end
    local sketch = table.concat(parts, ' ')
    redis.call('SET', K_SKETCH, sketch, 'PX', 60000)
    return sketch
    """)
}

/// The scripts of a room whose queue is split over shards (`RoomSettings.shards` > 1). The
/// room's control slot (`{R}`: settings, bucket, active, counters) and each shard's slot are
/// touched by separate scripts, so every step is safe to repeat or to lose half-way:
/// admissions are written to the control slot, with a journal of who must leave their shards,
/// before they leave them; a tick that dies between the two leaves the journal to the next.
extension Scripts {
  /// KEYS: a shard's queue. ARGV: visitor. `{ rank in the shard, score }` with the last-seen
  /// second refreshed, or nil when the visitor does not wait there.
  public static let shardPlace = RedisScript(
    """
    local q, v = KEYS[1], ARGV[1]
    local score = redis.call('ZSCORE', q, v)
    if not score then return false end
    score = tonumber(score)
    local t = redis.call('TIME')
    local bucket = tonumber(t[1]) % 8192
    local seen = score % 8192
    if seen ~= bucket then
      score = score - seen + bucket
      redis.call('ZADD', q, 'XX', string.format('%d', score), v)
    end
    return { redis.call('ZRANK', q, v), string.format('%d', score) }
    """)

  /// KEYS: a shard's queue and counters. ARGV: visitors a tick admitted or dropped. Removes them,
  /// counting those it found as popped (what moves the shard's sketched positions).
  public static let shardRemove = RedisScript(
    """
    local removed = redis.call('ZREM', KEYS[1], unpack(ARGV))
    if removed > 0 then redis.call('HINCRBY', KEYS[2], 'popped', removed) end
    return removed
    """)

  /// KEYS: a shard's queue and counters. ARGV: visitor. Gives back the visitor's place: 1, or 0
  /// when it was not there.
  public static let shardLeave = RedisScript(
    """
    local removed = redis.call('ZREM', KEYS[1], ARGV[1])
    if removed > 0 then redis.call('HINCRBY', KEYS[2], 'left', 1) end
    return removed
    """)

  /// KEYS: a shard's queue. ARGV: score (from `join`), visitor. Adds the visitor unless it is
  /// there already (a second tab raced this one): `{ 1 if added, rank in the shard, score }`.
  public static let shardEnqueue = RedisScript(
    """
    local q, score, v = KEYS[1], ARGV[1], ARGV[2]
    local added = redis.call('ZADD', q, 'NX', score, v)
    return { added, redis.call('ZRANK', q, v), redis.call('ZSCORE', q, v) }
    """)

  /// KEYS: `RoomKeys.scriptKeys`, then the room's tick lease and removal journal. ARGV: lease
  /// id, lease ms, most to admit, shards. Takes the lease (one sharded tick at a time across
  /// gateways) and says how many the tick may admit, or first, { 'unfinished', visitors }: the
  /// journal of a tick that stopped before removing these from their shards (to remove, then
  /// `unlock`, then reserve again): { 'reserved', want, waiting, active, now } ({ 'busy', waiting,
  /// active, now } while another holds it). With nothing to admit the lease is given back at once.
  public static let reserve = RedisScript(
    prologue + """
      local K_LEASE = KEYS[10]
      local s = settings()
      if not s then return { 'no_room' } end
      if shards_differ(s, ARGV[4]) then return { 'shards', s.shards } end
      if not redis.call('SET', K_LEASE, ARGV[1], 'NX', 'PX', ARGV[2]) then
        return { 'busy', waiting_count(s), redis.call('ZCARD', K_ACTIVE), now }
      end
      -- A tick whose lease ran out before it had removed its visitors from their shards.
      local unfinished = redis.call('GET', KEYS[11])
      if unfinished then return { 'unfinished', unfinished } end
      expire_active()
      local active = redis.call('ZCARD', K_ACTIVE)
      local tokens = refill(s)
      save_bucket(tokens)
      local want = 0
      if s.state == 'queue' and now >= s.starts_at then
        want = math.max(0, math.min(math.floor(tokens), s.max_active - active, tonumber(ARGV[3])))
      end
      if want == 0 then
        redis.call('HSET', K_STATS, 'rate_1m', measured())
        redis.call('DEL', K_LEASE)
      end
      return { 'reserved', want, waiting_count(s), active, now }
      """)

  /// KEYS: as `reserve`. ARGV: lease id, most to admit, visitors the shards held when read,
  /// then `visitor, score` pairs: the shards' heads merged in the room's order. Walks them in
  /// that order as the one-queue `admit` walks its queue — abandoned ones dropped, the rest
  /// admitted while the cap and the bucket allow — and says how many it went through, for the
  /// caller to remove from their shards: { admitted visitors, consumed, abandoned, waiting,
  /// active, now }, or { 'lost' } when the lease ran out (nothing written).
  public static let commit = RedisScript(
    prologue + """
      local K_LEASE = KEYS[10]
      local s = settings()
      if not s then return { 'no_room' } end
      if redis.call('GET', K_LEASE) ~= ARGV[1] then return { 'lost' } end
      expire_active()
      local active = redis.call('ZCARD', K_ACTIVE)
      local tokens = refill(s)
      local want = 0
      if s.state == 'queue' and now >= s.starts_at then
        want = math.max(0, math.min(math.floor(tokens), s.max_active - active, tonumber(ARGV[2])))
      end
      local observed = tonumber(ARGV[3])
      local bucket = now_s % SEEN
      local deadline = now + s.claim * 1000
      local admitted, entries, abandoned, consumed, counted = {}, {}, 0, 0, 0
      local K_JOURNAL = KEYS[11]
      local gone = {}
      local i = 4
      while i < #ARGV and #admitted < want do
        local v, score = ARGV[i], tonumber(ARGV[i + 1])
        gone[#gone + 1] = v
        if (bucket - score % SEEN) % SEEN > s.abandon then
          abandoned = abandoned + 1
          counted = counted + 1
        else
          admitted[#admitted + 1] = v
          entries[#entries + 1] = deadline
          entries[#entries + 1] = v
          counted = counted + 1
        end
        consumed = consumed + 1
        i = i + 2
      end
      if #entries > 0 then redis.call('ZADD', K_ACTIVE, unpack(entries)) end
      if #admitted > 0 then
        redis.call('HINCRBY', K_STATS, 'admitted', #admitted)
        record(#admitted)
      end
      if abandoned > 0 then redis.call('HINCRBY', K_STATS, 'abandoned', abandoned) end
      -- Who must leave their shards, kept until the tick gives its lease back: a tick that
      -- stops before removing them leaves them to the next (`reserve` hands them over).
      if #gone > 0 then redis.call('APPEND', K_JOURNAL, table.concat(gone, ' ') .. ' ') end
      save_bucket(tokens - #admitted)
      redis.call('HSET', K_STATS, 'rate_1m', measured())
      -- The count never stays below what the shards were seen to hold; it falls to nothing
      -- only once they have been seen empty for two seconds (a join counts its place here
      -- a moment before its shard has it).
      local queued = math.max((tonumber(redis.call('HGET', K_STATS, 'queued')) or 0) - counted, observed - consumed, 0)
      if observed > 0 then
        redis.call('HDEL', K_STATS, 'empty_since')
      else
        local since = tonumber(redis.call('HGET', K_STATS, 'empty_since'))
        if not since then
          redis.call('HSET', K_STATS, 'empty_since', now)
        elseif now - since >= 2000 then
          queued = 0
        end
      end
      redis.call('HSET', K_STATS, 'queued', queued)
      return { admitted, consumed, abandoned, queued, active + #admitted, now }
      """)

  /// KEYS: the tick lease, the removal journal. ARGV: lease id. Once the tick's removals are
  /// done: gives the lease back and clears the journal, if the lease is still this tick's.
  public static let unlock = RedisScript(
    """
    if redis.call('GET', KEYS[1]) == ARGV[1] then
      redis.call('DEL', KEYS[2])
      return redis.call('DEL', KEYS[1])
    end
    return 0
    """)
}
