"""``RedisStore``: the :class:`~dodo_ingest.gate.ReservationStore` of a fleet, on Redis.

Every method is one Lua script (or one read), so a reservation is decided atomically across
processes and machines by Redis itself: no lock, no home-made protocol. Time is the caller's
(``now``, ``expires_at``, ``reflected_before`` are Unix seconds passed in); Redis's clock is
used only for the TTL that makes abandoned customers disappear.

Keys of one store key ``K`` (all under the hash tag ``{<prefix>:K}``, so that they live in one
Redis Cluster slot and one script may touch them all):

- ``{<prefix>:K}:snap``: hash ``balance``, ``overage``, ``headroom`` (decimal strings, as
  given), ``fetched_at`` (the float's ``repr``) and ``floor`` (the headroom in ticks, rounded
  down); a save keeps the newer ``fetched_at``.
- ``{<prefix>:K}:holds``: hash hold id -> amount in ticks; ``{<prefix>:K}:leases``: sorted
  set hold id scored by the end of its lease (``expires_at``).
- ``{<prefix>:K}:usage``: hash hold id -> settled usage not yet reflected, in ticks;
  ``{<prefix>:K}:used``: sorted set hold id scored by the time the usage was recorded. A saved
  snapshot whose headroom dropped lowers (or removes) the oldest entries by the drop.
- ``{<prefix>:K}:totals``: hash of running totals in ticks: ``held``, the sum of the holds
  (each leaves it when released, replaced or dropped at the end of its lease), and
  ``recent``, the sum of the usage recorded at or after ``bound``, the largest
  ``reflected_before`` a call has given (as given). Every script updates them with the
  entries it writes; their TTL is never shorter than the entries' (an entry key gone with its
  TTL counts 0). A key without totals (new) has them counted from its entries once; totals
  beyond the exact range are not kept, and are counted from the entries by each call until
  they are back in range (as before the totals: such a call answers an error).

A call costs a number of Redis commands that does not depend on the number of holds or usage
entries (amortized): ended holds are popped from the lease index a hundred at a time (each
hold once); when ``reflected_before`` rises past ``bound``, the entries recorded in between
leave ``recent`` (each entry once, as ``bound`` only rises); a call with an older
``reflected_before`` (a process still using an older snapshot) adds the entries recorded
between it and ``bound`` by a range read; usage recorded before ``reflected_before -
PRUNE_MARGIN`` is dropped (each entry once); a headroom drop walks the oldest entries, removing
all it walks but one.

Amounts are integers of *ticks*, 10^-10 of the entitlement's unit (the API's entitlements have
at most 10 decimal places), written as decimal strings and added in Lua on two limbs
(``hi * 10^9 + lo``), since Lua's numbers are doubles: see :class:`RedisStore`.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence
from decimal import ROUND_CEILING, ROUND_FLOOR, Decimal, localcontext
from typing import Any, NoReturn

import redis

from .._redis import client_from_url, redacted
from ..client import ConfigurationError
from ._store import PRUNE_MARGIN, Reservation, Snapshot, StaleSnapshotError

__all__ = ["PLACES", "RedisStore"]

logger = logging.getLogger("dodo_ingest")

PLACES = 10
"""Decimal places kept of every amount: a tick is ``10**-PLACES`` of the unit."""
_TICK = Decimal(1).scaleb(-PLACES)
_LIMIT = Decimal(10) ** 14
"""Amounts must stay below this many units (a finite headroom beyond it is cut down to it)."""
_DEFAULT_TTL = 86_400.0
_LONGEST_LEASE = 366 * 86_400.0
"""Leases beyond a year (or infinite) keep the keys a year (plus ``ttl``)."""

# Lua helpers shared by the scripts. A value in ticks is a string of digits (with a '-' for a
# negative headroom); it is read as two limbs, hi * B + lo with 0 <= lo < B, each an integer a
# double holds exactly. Sums of non-negative values stay exact while hi < 2^52 (checked).
# Every script is given the keys of one store key: holds, leases, usage, used, snap, totals.
_LIB = """
local B = 1000000000
local HI_LIMIT = 4503599627370496 -- 2^52, in the hi limb (4.5e14 units)
local FOLD = 4503599627370496 -- 2^52 ticks, for sums of plain doubles
local BATCH = 100 -- ended holds dropped per command
local PRUNE_BATCH = 1000 -- old usage entries dropped per command

local function limbs(text)
  local negative = string.sub(text, 1, 1) == '-'
  if negative then text = string.sub(text, 2) end
  local n = #text
  local hi, lo = 0, 0
  if n > 9 then
    hi = tonumber(string.sub(text, 1, n - 9))
    lo = tonumber(string.sub(text, n - 8))
  else
    lo = tonumber(text)
  end
  if negative then
    hi, lo = -hi, -lo
    if lo < 0 then
      lo = lo + B
      hi = hi - 1
    end
  end
  return hi, lo
end

local function add(ah, al, bh, bl)
  local hi, lo = ah + bh, al + bl
  if lo >= B then return hi + 1, lo - B end
  return hi, lo
end

local function sub(ah, al, bh, bl)
  local hi, lo = ah - bh, al - bl
  if lo < 0 then return hi - 1, lo + B end
  return hi, lo
end

local function ge(ah, al, bh, bl)
  return ah > bh or (ah == bh and al >= bl)
end

-- A non-negative value as the string of digits limbs() reads.
local function text(hi, lo)
  if hi == 0 then return string.format('%d', lo) end
  return string.format('%d%09d', hi, lo)
end

-- An integer 0 <= n < 2^53 as two limbs.
local function split(n)
  local hi = math.floor(n / B)
  local lo = n - hi * B
  if lo < 0 then
    hi, lo = hi - 1, lo + B
  elseif lo >= B then
    hi, lo = hi + 1, lo - B
  end
  return hi, lo
end

-- Add the values (strings of ticks >= 0; false: none) to hi, lo. Values of at most 15
-- digits are added as plain doubles (exact below 2^53), folded into the limbs before 2^52.
local function sum(values, hi, lo)
  local acc = 0
  for i = 1, #values do
    local value = values[i]
    if value then
      if #value <= 15 then
        acc = acc + tonumber(value)
        if acc >= FOLD then
          hi, lo = add(hi, lo, split(acc))
          acc = 0
        end
      else
        hi, lo = add(hi, lo, limbs(value))
      end
    end
  end
  return add(hi, lo, split(acc))
end

-- Add the usage of the ids (members of the used sorted set) to hi, lo.
local function sum_usage(ids, hi, lo)
  for first = 1, #ids, 1000 do
    local amounts = redis.call('HMGET', KEYS[3], unpack(ids, first, math.min(first + 999, #ids)))
    hi, lo = sum(amounts, hi, lo)
  end
  return hi, lo
end

local function checked(hi)
  if hi >= HI_LIMIT then
    error('credit gate: amounts beyond the exact range of RedisStore (4.5e14 units)')
  end
  return hi
end

-- Extend the TTL of a key (that exists) to at least ms milliseconds, never shorten it.
local function keep(key, ms)
  local left = redis.call('PTTL', key)
  if left == -1 or (left >= 0 and left < ms) then
    redis.call('PEXPIRE', key, ms)
  end
end

-- The running totals of the key (the hash KEYS[6]), read by load() and written by save():
-- held, the ticks of every hold in KEYS[1] (ended or not: ended ones leave as they are
-- dropped); recent, the ticks of the usage recorded at or after bound; bound, the largest
-- reflected_before any call gave (as given; false: none yet, and every entry is recent).
-- valid: held and recent were stored (absent from a new key, and from one whose totals left
-- the exact range: counted again from the entries by rebuild() when needed).
local T = {held_hi = 0, held_lo = 0, recent_hi = 0, recent_lo = 0, bound = false,
           valid = false, exists = false}

-- Count the totals from the entries themselves: O(entries), only when they are not valid
-- (or one is below zero: not expected).
local function rebuild()
  T.held_hi, T.held_lo = sum(redis.call('HVALS', KEYS[1]), 0, 0)
  local ids = redis.call('ZRANGEBYSCORE', KEYS[4], T.bound or '-inf', '+inf')
  T.recent_hi, T.recent_lo = sum_usage(ids, 0, 0)
  T.valid = T.held_hi < HI_LIMIT and T.recent_hi < HI_LIMIT
end

local function load()
  local fields = redis.call('HMGET', KEYS[6], 'held', 'recent', 'bound')
  T.bound = fields[3]
  T.exists = (fields[1] or fields[3]) and true or false
  T.valid = (fields[1] and fields[2]) and true or false
  if not T.valid then return end
  T.held_hi, T.held_lo = limbs(fields[1])
  T.recent_hi, T.recent_lo = limbs(fields[2])
  -- The totals' TTL is never shorter than the entries': entries gone with theirs count 0.
  if redis.call('EXISTS', KEYS[1]) == 0 then T.held_hi, T.held_lo = 0, 0 end
  if redis.call('EXISTS', KEYS[3]) == 0 then T.recent_hi, T.recent_lo = 0, 0 end
end

local function repair()
  if not T.valid or T.held_hi < 0 or T.recent_hi < 0 then rebuild() end
end

-- Write the totals, keeping their key at least ms milliseconds (every script that extends
-- an entry key's TTL saves with the same ms, so the totals outlive the entries). Totals
-- beyond the exact range (kept exact up to 2^53 in the hi limb: one amount more) are not
-- stored: calls count them from the entries until they are back in range.
local function save(ms)
  if T.valid and (T.held_hi < 0 or T.recent_hi < 0) then rebuild() end
  if not T.exists and redis.call('EXISTS', KEYS[1], KEYS[3]) == 0 then return end -- empty
  if T.valid and T.held_hi < HI_LIMIT and T.recent_hi < HI_LIMIT then
    if T.bound then
      redis.call('HSET', KEYS[6], 'held', text(T.held_hi, T.held_lo),
                 'recent', text(T.recent_hi, T.recent_lo), 'bound', T.bound)
    else
      redis.call('HSET', KEYS[6], 'held', text(T.held_hi, T.held_lo),
                 'recent', text(T.recent_hi, T.recent_lo))
    end
  else
    redis.call('HDEL', KEYS[6], 'held', 'recent')
    if not T.bound then return end
    redis.call('HSET', KEYS[6], 'bound', T.bound)
  end
  keep(KEYS[6], ms)
end

-- Save the totals (what this call dropped stays dropped) and refuse a total beyond the exact
-- range.
local function check_total(hi, ms)
  if hi >= HI_LIMIT then
    save(ms)
    checked(hi)
  end
  return hi
end

-- Drop the holds whose lease ended (expires_at <= now), oldest end first, BATCH at a time:
-- each hold is dropped once.
local function expire(now)
  while true do
    local ended = redis.call('ZRANGEBYSCORE', KEYS[2], '-inf', now, 'LIMIT', 0, BATCH)
    if #ended == 0 then return end
    T.held_hi, T.held_lo = sub(T.held_hi, T.held_lo,
                               sum(redis.call('HMGET', KEYS[1], unpack(ended)), 0, 0))
    redis.call('HDEL', KEYS[1], unpack(ended))
    redis.call('ZREM', KEYS[2], unpack(ended))
    if #ended < BATCH then return end
  end
end

-- Raise the bound to since: the usage recorded in [bound, since) leaves recent (each entry
-- once, since the bound only rises).
local function advance(since)
  if T.bound and tonumber(since) <= tonumber(T.bound) then return end
  if T.valid then
    local ids = redis.call('ZRANGEBYSCORE', KEYS[4], T.bound or '-inf', '(' .. since)
    T.recent_hi, T.recent_lo = sub(T.recent_hi, T.recent_lo, sum_usage(ids, 0, 0))
  end
  T.bound = since
end

-- Forget the usage recorded before prune_before, PRUNE_BATCH at a time (each entry once).
-- prune_before < since <= bound: none of it is in recent.
local function prune(prune_before)
  local before = '(' .. prune_before
  while true do
    local old = redis.call('ZRANGEBYSCORE', KEYS[4], '-inf', before, 'LIMIT', 0, PRUNE_BATCH)
    if #old == 0 then return end
    redis.call('HDEL', KEYS[3], unpack(old))
    redis.call('ZREM', KEYS[4], unpack(old))
    if #old < PRUNE_BATCH then return end
  end
end

-- Load the totals, drop the holds whose lease ended and the usage recorded before
-- prune_before; return the live holds plus the unreflected usage recorded at or after since:
-- recent, plus (a call with an older since than the bound) the usage in [since, bound).
local function tally(now, since, prune_before)
  load()
  expire(now)
  advance(since)
  prune(prune_before)
  repair()
  local hi, lo = T.recent_hi, T.recent_lo
  if tonumber(since) < tonumber(T.bound) then
    hi, lo = sum_usage(redis.call('ZRANGEBYSCORE', KEYS[4], since, '(' .. T.bound), hi, lo)
  end
  return add(T.held_hi, T.held_lo, hi, lo)
end
"""

_RESERVE = (
    _LIB
    + """
-- ARGV: hold id, amount (ticks), headroom (ticks, 'inf' or '-inf'), reflected_before,
--       expires_at, now, prune_before, ttl (ms), the caller snapshot's fetched_at ('': none)
if ARGV[9] ~= '' then
  local stored = redis.call('HGET', KEYS[5], 'fetched_at')
  if stored and tonumber(stored) > tonumber(ARGV[9]) then return {2, 0, 0} end
end
local ms = tonumber(ARGV[8])
local hi, lo = tally(ARGV[6], ARGV[4], ARGV[7])
check_total(hi, ms)
local need_hi, need_lo = add(hi, lo, limbs(ARGV[2]))
check_total(need_hi, ms)
local admitted
if ARGV[3] == 'inf' then
  admitted = true
elseif ARGV[3] == '-inf' then
  admitted = false
else
  local head_hi, head_lo = limbs(ARGV[3])
  admitted = ge(head_hi, head_lo, need_hi, need_lo)
end
if admitted then
  local replaced = redis.call('HGET', KEYS[1], ARGV[1])
  if replaced then T.held_hi, T.held_lo = sub(T.held_hi, T.held_lo, limbs(replaced)) end
  T.held_hi, T.held_lo = add(T.held_hi, T.held_lo, limbs(ARGV[2]))
  redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])
  redis.call('ZADD', KEYS[2], ARGV[5], ARGV[1])
end
for i = 1, 4 do keep(KEYS[i], ms) end
save(ms)
if admitted then return {1, hi, lo} end
return {0, hi, lo}
"""
)
"""Drop what ended, count the rest, and hold the amount if the headroom covers it."""

_OUTSTANDING = (
    _LIB
    + """
-- ARGV: now, reflected_before, prune_before, ttl (ms)
local ms = tonumber(ARGV[4])
local hi, lo = tally(ARGV[1], ARGV[2], ARGV[3])
check_total(hi, ms)
save(ms)
return {hi, lo}
"""
)

_RELEASE = (
    _LIB
    + """
-- ARGV: hold id, usage (ticks), now, ttl (ms)
local ms = tonumber(ARGV[4])
load()
local held = redis.call('HGET', KEYS[1], ARGV[1])
if held then T.held_hi, T.held_lo = sub(T.held_hi, T.held_lo, limbs(held)) end
local recorded = ARGV[2] ~= '0'
if recorded then
  local bound = T.bound and tonumber(T.bound)
  local previous = redis.call('HGET', KEYS[3], ARGV[1])
  local previous_at = redis.call('ZSCORE', KEYS[4], ARGV[1])
  if previous and previous_at and (not bound or tonumber(previous_at) >= bound) then
    T.recent_hi, T.recent_lo = sub(T.recent_hi, T.recent_lo, limbs(previous))
  end
  if not bound or tonumber(ARGV[3]) >= bound then
    T.recent_hi, T.recent_lo = add(T.recent_hi, T.recent_lo, limbs(ARGV[2]))
  end
end
if held then
  redis.call('HDEL', KEYS[1], ARGV[1])
  redis.call('ZREM', KEYS[2], ARGV[1])
end
if recorded then
  redis.call('HSET', KEYS[3], ARGV[1], ARGV[2])
  redis.call('ZADD', KEYS[4], ARGV[3], ARGV[1])
  keep(KEYS[3], ms)
  keep(KEYS[4], ms)
end
if held or recorded then save(ms) end
return 1
"""
)
"""End a hold and record its usage under the hold's id (so a second release of the same hold
replaces its usage rather than adding to it)."""

_EXTEND = (
    _LIB
    + """
-- ARGV: hold id, expires_at, now ('' when not given), ttl (ms)
local ms = tonumber(ARGV[4])
local amount = redis.call('HGET', KEYS[1], ARGV[1])
if not amount then return 0 end
if ARGV[3] ~= '' then
  local ends = redis.call('ZSCORE', KEYS[2], ARGV[1])
  if ends and tonumber(ends) <= tonumber(ARGV[3]) then
    load()
    T.held_hi, T.held_lo = sub(T.held_hi, T.held_lo, limbs(amount))
    redis.call('HDEL', KEYS[1], ARGV[1])
    redis.call('ZREM', KEYS[2], ARGV[1])
    save(ms)
    return 0
  end
end
redis.call('ZADD', KEYS[2], ARGV[2], ARGV[1])
keep(KEYS[1], ms)
keep(KEYS[2], ms)
keep(KEYS[6], ms)
return 1
"""
)

_SAVE_SNAPSHOT = (
    _LIB
    + """
-- ARGV: balance, overage, headroom (as given), fetched_at, headroom in ticks rounded down
--       and rounded up ('inf' or '-inf' when infinite), ttl (ms)
local current = redis.call('HGET', KEYS[5], 'fetched_at')
if current and tonumber(current) > tonumber(ARGV[4]) then return 0 end
local previous = redis.call('HGET', KEYS[5], 'floor')
redis.call('HSET', KEYS[5], 'balance', ARGV[1], 'overage', ARGV[2], 'headroom', ARGV[3],
           'fetched_at', ARGV[4], 'floor', ARGV[5])
local ms = tonumber(ARGV[7])
keep(KEYS[5], ms)
if not previous or string.find(previous, 'inf') or string.find(ARGV[6], 'inf') then
  return 1
end
-- The drop in headroom (rounded down) is usage the API deducted since the previous read:
-- mark as much of the usage recorded before this read reflected, oldest first (removed
-- entries, and the one lowered, leave recent if they were in it). Each call removes what it
-- walks but the last entry: the walks cost O(1) per entry recorded.
local previous_hi, previous_lo = limbs(previous)
local left_hi, left_lo = sub(previous_hi, previous_lo, limbs(ARGV[6]))
if left_hi < 0 or (left_hi == 0 and left_lo == 0) then return 1 end
local before = '(' .. ARGV[4]
local loaded, bound = false, false
while left_hi > 0 or left_lo > 0 do
  local entries = redis.call('ZRANGEBYSCORE', KEYS[4], '-inf', before, 'WITHSCORES',
                             'LIMIT', 0, 100)
  if #entries == 0 then break end
  if not loaded then
    load()
    loaded, bound = true, T.bound and tonumber(T.bound)
  end
  for i = 1, #entries, 2 do
    local id = entries[i]
    local recent = not bound or tonumber(entries[i + 1]) >= bound
    local amount = redis.call('HGET', KEYS[3], id)
    local a_hi, a_lo = 0, 0
    if amount then a_hi, a_lo = limbs(amount) end
    if ge(left_hi, left_lo, a_hi, a_lo) then
      left_hi, left_lo = sub(left_hi, left_lo, a_hi, a_lo)
      redis.call('HDEL', KEYS[3], id)
      redis.call('ZREM', KEYS[4], id)
      if recent then T.recent_hi, T.recent_lo = sub(T.recent_hi, T.recent_lo, a_hi, a_lo) end
    else
      redis.call('HSET', KEYS[3], id, text(sub(a_hi, a_lo, left_hi, left_lo)))
      if recent then
        T.recent_hi, T.recent_lo = sub(T.recent_hi, T.recent_lo, left_hi, left_lo)
      end
      left_hi, left_lo = 0, 0
      break
    end
  end
end
if loaded then save(ms) end
return 1
"""
)
"""Keep a snapshot unless the stored one was read later (the same time: the new one wins);
when it replaces one with a higher finite headroom, consume that much of the older usage."""


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


def _amount(name: str, value: Decimal) -> Decimal:
    """``value`` checked: a finite ``Decimal`` >= 0 below the exact range."""
    if not isinstance(value, Decimal) or not value.is_finite() or value < 0:
        raise ValueError(f"{name} must be a finite Decimal >= 0, got {value!r}")
    if value >= _LIMIT:
        raise ValueError(f"{name} {value} is beyond what RedisStore keeps exactly (10^14)")
    return value


def _ticks(value: Decimal, rounding: str) -> str:
    """``value`` (below the exact range) in ticks, rounded with ``rounding``."""
    with localcontext() as context:
        context.prec = 60
        return str(int(value.quantize(_TICK, rounding=rounding).scaleb(PLACES)))


def _headroom(value: Decimal, rounding: str = ROUND_FLOOR) -> str:
    """A headroom in ticks (``'inf'``/``'-inf'`` when infinite), rounded down unless told;
    a finite one beyond the exact range is cut to it (a total that large is refused anyway)."""
    if not isinstance(value, Decimal) or value.is_nan():
        raise ValueError(f"headroom must be a Decimal (Infinity allowed), got {value!r}")
    if value.is_infinite():
        return "-inf" if value < 0 else "inf"
    return _ticks(max(min(value, _LIMIT), -_LIMIT), rounding)


def _units(hi: int, lo: int) -> Decimal:
    """Two limbs of ticks as a ``Decimal`` of units, without needless trailing zeros."""
    with localcontext() as context:
        context.prec = 60
        value = Decimal(int(hi) * 10**9 + int(lo)).scaleb(-PLACES)
        if value == value.to_integral_value():
            return value.quantize(Decimal(1))
        return value.normalize()


def _time(name: str, value: float) -> str:
    """A time (Unix seconds) as the exact text of its float; NaN is refused."""
    number = float(value)
    if math.isnan(number):
        raise ValueError(f"{name} must be a number of seconds, got {value!r}")
    return repr(number)


class RedisStore:
    """A :class:`~dodo_ingest.gate.ReservationStore` on Redis, shared by a fleet.

    ``url_or_client`` is a ``redis://`` (``rediss://``, ``unix://``) URL or a ``redis.Redis``
    client (its own timeouts and retries then apply). ``prefix`` starts every key (default
    ``dodo-gate``); ``timeout`` is the connect and read timeout in seconds of a client built
    from a URL (default 0.5), which makes no retry: a Redis that does not answer raises
    ``redis.TimeoutError`` or ``redis.ConnectionError`` (with :attr:`where` in the message)
    after about ``timeout`` (at most a few times it when a connection must be opened), and the
    gate applies its ``on_unavailable`` policy. ``ttl`` (seconds, default a day): a customer's
    keys disappear that long after its last write (or after its longest lease, if later).

    Every method is one atomic Lua script: reservations made by any number of threads,
    processes and machines never admit more than the headroom. Times are the caller's.

    **Cost.** Each call is one round trip, and inside Redis a bounded number of commands,
    whatever the number of live holds and of usage entries not yet reflected: the script keeps
    running totals of the holds and of the usage recorded since the newest
    ``reflected_before`` it was given, and each hold or entry leaves them once (amortized
    O(1)). Only a call with a ``reflected_before`` older than another call's reads the usage
    recorded between the two (a range of the usage index; short when both come from recent
    balance reads). While a key's totals are beyond the exact range (below), each call counts
    them from its entries. Every process writing one key must run this version of the scripts.

    **Exactness.** Amounts are kept as integers of ticks, ``10**-10`` of the unit, added
    exactly in Lua on two limbs. Any value with at most 10 decimal places is exact, as long as
    each amount (reserved or settled) is below 10^14 units (else ``ValueError``) and the total
    held plus unreflected usage of one key stays below 4.5 x 10^14 units (else Redis answers an
    error). More decimals are rounded the safe way: an amount to reserve and a usage up, a
    headroom down (so the store may refuse up to 10^-10 unit earlier than the exact answer). A
    finite headroom beyond 10^14 units is cut down to 10^14. ``Decimal("Infinity")`` admits
    everything (and still holds it). :attr:`Reservation.available` is the exact headroom minus
    the stored total, as a ``Decimal``.

    Unlike :class:`~dodo_ingest.gate.MemoryStore`, usage is recorded under its hold's id, so a
    second :meth:`release` of one hold replaces its usage (a retried release never counts
    twice), and a headroom drop seen by :meth:`save_snapshot` consumes the usage recorded
    before the read that is in the store at that moment (oldest first). Keys are dropped under memory pressure only if Redis's ``maxmemory-policy`` is a
    ``volatile-*`` or ``allkeys-*`` one: use ``noeviction`` (lost holds would over-admit).
    """

    def __init__(
        self,
        url_or_client: str | redis.Redis,
        *,
        prefix: str = "dodo-gate",
        timeout: float = 0.5,
        ttl: float = _DEFAULT_TTL,
    ) -> None:
        for name, value in (("timeout", timeout), ("ttl", ttl)):
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not value > 0:
                raise ConfigurationError(f"{name} must be a number of seconds > 0, got {value!r}")
            if not math.isfinite(value):
                raise ConfigurationError(f"{name} must be finite, got {value!r}")
        if not isinstance(prefix, str) or not prefix:
            raise ConfigurationError(f"prefix must be a non-empty string, got {prefix!r}")
        self.prefix = prefix
        self.timeout = float(timeout)
        self.ttl = float(ttl)
        if isinstance(url_or_client, str):
            self.where = redacted(url_or_client)
            try:
                # The gate decides what a failure means (on_unavailable).
                self._client: Any = client_from_url(url_or_client, self.timeout)
            except ValueError as error:
                raise ConfigurationError(f"invalid Redis URL {self.where!r}: {error}") from None
            self._owns_client = True
        elif isinstance(url_or_client, redis.Redis):
            self._client = url_or_client
            kwargs = url_or_client.connection_pool.connection_kwargs
            self.where = f"redis://{kwargs.get('host', '?')}:{kwargs.get('port', '?')}"
            self._owns_client = False
            if kwargs.get("socket_timeout") is None:
                logger.warning(
                    "RedisStore: the given Redis client has no socket_timeout, so a Redis that "
                    "stops answering holds every reservation as long as the client waits"
                )
        else:
            raise ConfigurationError(
                "RedisStore needs a redis:// URL or a redis.Redis client, got "
                f"{type(url_or_client).__name__}"
            )
        self._reserve = self._client.register_script(_RESERVE)
        self._outstanding = self._client.register_script(_OUTSTANDING)
        self._release = self._client.register_script(_RELEASE)
        self._extend = self._client.register_script(_EXTEND)
        self._save_snapshot = self._client.register_script(_SAVE_SNAPSHOT)
        self._closed = False

    # --- keys --------------------------------------------------------------------------------

    def _tag(self, key: str) -> str:
        return f"{{{self.prefix}:{key}}}"

    def _keys(self, key: str) -> list[str]:
        """holds, leases, usage, used, snap, totals: the order the scripts expect."""
        tag = self._tag(key)
        return [
            f"{tag}:holds",
            f"{tag}:leases",
            f"{tag}:usage",
            f"{tag}:used",
            f"{tag}:snap",
            f"{tag}:totals",
        ]

    def _ttl_ms(self, lease: float = 0.0) -> int:
        """The TTL of keys written now: ``ttl``, plus the lease still to run (capped)."""
        return math.ceil((self.ttl + min(max(lease, 0.0), _LONGEST_LEASE)) * 1000)

    def _failed(self, operation: str, error: redis.RedisError) -> NoReturn:
        """Raise ``error`` again, of the same class, naming this store and the operation."""
        try:
            located = type(error)(f"credit gate store {self.where}: {operation}: {error}")
        except Exception:
            raise error from None
        raise located from error

    # --- the protocol ------------------------------------------------------------------------

    def snapshot(self, key: str) -> Snapshot | None:
        """See :meth:`~dodo_ingest.gate.ReservationStore.snapshot`."""
        try:
            fields = self._client.hmget(
                self._keys(key)[4], "balance", "overage", "headroom", "fetched_at"
            )
        except (redis.ConnectionError, redis.TimeoutError) as error:
            self._failed("snapshot", error)
        if any(field is None for field in fields):
            return None
        balance, overage, headroom, fetched_at = (_text(field) for field in fields)
        return Snapshot(Decimal(balance), Decimal(overage), Decimal(headroom), float(fetched_at))

    def save_snapshot(self, key: str, snapshot: Snapshot) -> None:
        """See :meth:`~dodo_ingest.gate.ReservationStore.save_snapshot`."""
        args = [
            str(snapshot.balance),
            str(snapshot.overage),
            str(snapshot.headroom),
            _time("fetched_at", snapshot.fetched_at),
            _headroom(snapshot.headroom, ROUND_FLOOR),
            _headroom(snapshot.headroom, ROUND_CEILING),
            str(self._ttl_ms()),
        ]
        try:
            self._save_snapshot(keys=self._keys(key), args=args)
        except (redis.ConnectionError, redis.TimeoutError) as error:
            self._failed("save_snapshot", error)

    def reserve(
        self,
        key: str,
        hold_id: str,
        amount: Decimal,
        *,
        headroom: Decimal,
        reflected_before: float,
        expires_at: float,
        now: float,
        fetched_at: float | None = None,
    ) -> Reservation:
        """See :meth:`~dodo_ingest.gate.ReservationStore.reserve` (``amount`` >= 0)."""
        amount = _amount("amount", amount)
        args = [
            hold_id,
            _ticks(amount, ROUND_CEILING),
            _headroom(headroom),
            _time("reflected_before", reflected_before),
            _time("expires_at", expires_at),
            _time("now", now),
            _time("reflected_before", float(reflected_before) - PRUNE_MARGIN),
            str(self._ttl_ms(float(expires_at) - float(now))),
            "" if fetched_at is None else _time("fetched_at", fetched_at),
        ]
        try:
            admitted, hi, lo = self._reserve(keys=self._keys(key), args=args)
        except (redis.ConnectionError, redis.TimeoutError) as error:
            self._failed("reserve", error)
        if admitted == 2:
            raise StaleSnapshotError(key)
        return Reservation(bool(admitted), headroom - _units(hi, lo))

    def release(self, key: str, hold_id: str, usage: Decimal, *, now: float) -> None:
        """See :meth:`~dodo_ingest.gate.ReservationStore.release` (usage rounded up to a
        tick; a second release of one hold replaces its usage)."""
        usage = _amount("usage", usage)
        args = [hold_id, _ticks(usage, ROUND_CEILING), _time("now", now), str(self._ttl_ms())]
        try:
            self._release(keys=self._keys(key), args=args)
        except (redis.ConnectionError, redis.TimeoutError) as error:
            self._failed("release", error)

    def extend(
        self, key: str, hold_id: str, *, expires_at: float, now: float | None = None
    ) -> bool:
        """See :meth:`~dodo_ingest.gate.ReservationStore.extend`. Without ``now`` (as the
        protocol calls it), a hold whose lease ended but that no call has dropped yet is
        extended, like :class:`~dodo_ingest.gate.MemoryStore` does; with ``now``, a lease
        that ended at or before ``now`` is dropped and False returned."""
        lease = float(expires_at) - (float(now) if now is not None else 0.0)
        args = [
            hold_id,
            _time("expires_at", expires_at),
            "" if now is None else _time("now", now),
            str(self._ttl_ms(lease if now is not None else 0.0)),
        ]
        try:
            extended = self._extend(keys=self._keys(key), args=args)
        except (redis.ConnectionError, redis.TimeoutError) as error:
            self._failed("extend", error)
        return bool(extended)

    def extend_many(self, leases: Sequence[tuple[str, str, float]]) -> list[bool]:
        """:meth:`extend` (without ``now``) for each ``(key, hold_id, expires_at)``, in one
        round trip (a pipeline; each script is still atomic on its own)."""
        if not leases:
            return []
        pipeline = self._client.pipeline(transaction=False)
        for key, hold_id, expires_at in leases:
            args = [hold_id, _time("expires_at", expires_at), "", str(self._ttl_ms())]
            self._extend(keys=self._keys(key), args=args, client=pipeline)
        try:
            answers = pipeline.execute()
        except (redis.ConnectionError, redis.TimeoutError) as error:
            self._failed("extend", error)
        return [bool(answer) for answer in answers]

    def outstanding(self, key: str, *, reflected_before: float, now: float) -> Decimal:
        """See :meth:`~dodo_ingest.gate.ReservationStore.outstanding`."""
        args = [
            _time("now", now),
            _time("reflected_before", reflected_before),
            _time("reflected_before", float(reflected_before) - PRUNE_MARGIN),
            str(self._ttl_ms()),
        ]
        try:
            hi, lo = self._outstanding(keys=self._keys(key), args=args)
        except (redis.ConnectionError, redis.TimeoutError) as error:
            self._failed("outstanding", error)
        return _units(hi, lo)

    # --- lifecycle ---------------------------------------------------------------------------

    def close(self) -> None:
        """Close the connections of a client built from a URL (idempotent)."""
        if self._closed:
            return
        self._closed = True
        if self._owns_client:
            try:
                self._client.close()
            except redis.RedisError:
                logger.debug("closing the Redis connections failed", exc_info=True)

    def __enter__(self) -> RedisStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"RedisStore({self.where!r}, prefix={self.prefix!r})"
