/**
 * The layout and scripts of a sharded Redis counter (docs/redis.md, "Sharded
 * counters"). Slot 0 is the counter's own key `<prefix><id>`, so a counter
 * that was never sharded is slot 0 of a width-1 counter and can be widened
 * live. Slot i > 0 is `<prefix><id>\u001f<i>`; the width (the largest shard
 * count ever written with) is `<prefix><id>\u001fw`. Ids never contain
 * control characters (the request parser rejects them), so no id's key can
 * equal a slot's or the width's key, and a listing maps `<id>\u001f…` back
 * to its id.
 *
 * ElastiCache here runs with cluster mode disabled: one primary runs each
 * script to completion before any other command, over any keys. So the
 * scripts build the slot keys from KEYS[1] themselves (the width is only
 * known inside the script), and a conditional change reads every slot, checks
 * the bound on the total and INCRBYs one slot, all in one atomic step: no
 * escrow shares are needed for the bound to be exact. The slot keys are not
 * hash-tagged (slot 0 must stay the unsharded key): in cluster mode these
 * scripts would be refused, which is why that mode is not supported.
 */

/** Separates an id from its slot number or `w` in a slot's key: a control character no id can contain. */
export const SLOT_SEPARATOR = '\u001f';

/** The key of slot `slot` of the counter whose slot-0 key is `base`. */
export function slotKey(base: string, slot: number): string {
  return slot === 0 ? base : `${base}${SLOT_SEPARATOR}${slot}`;
}

/** The key holding the width of the counter whose slot-0 key is `base`. */
export function widthKey(base: string): string {
  return `${base}${SLOT_SEPARATOR}w`;
}

/**
 * Lua helpers every sharded script shares (Lua 5.1 inside Redis: numbers are
 * doubles, exact for every integer up to 2^53). `'\\031'` is U+001F.
 * `width()` reads the stored width (1 when absent); a stored value that is
 * no integer is an error reply before anything is written, as INCRBY would
 * give. `total(n)` sums slots 0…n−1 with one MGET (a missing slot reads 0).
 */
const SHARD_LUA_HELPERS = `
local base = KEYS[1]
local function slot_key(i)
  if i == 0 then return base end
  return base .. '\\031' .. string.format('%d', i)
end
local width_key = base .. '\\031w'
local function width()
  local w = tonumber(redis.call('GET', width_key) or '1')
  if w == nil then return nil end
  return w
end
local function total(n)
  local keys = {}
  for i = 0, n - 1 do keys[i + 1] = slot_key(i) end
  local values = redis.call('MGET', unpack(keys))
  local sum = 0
  for i = 1, #values do
    local v = tonumber(values[i] or '0')
    if v == nil then return nil end
    sum = sum + v
  end
  return sum
end
`;

const NOT_AN_INTEGER = "return redis.error_reply('ERR value is not an integer or out of range')";

/**
 * The body of a sharded change. ARGV[1] = by, ARGV[2]/ARGV[3] = lowest and
 * highest previous value allowed (`allowedPrevious`), ARGV[4] = N (the
 * container's shard count), ARGV[5] = the slot chosen by the caller (in
 * 0…N−1), ARGV[6] = '1' when the bound applies to the total (conditional
 * mode), '0' when only the chosen slot must stay within the safe integers
 * (unconditional: O(1), no read of the other slots).
 *
 * Conditional: every slot 0…max(N, w)−1 is read (slots above a lowered N
 * still hold value and count), the total checked, then INCRBY on the slot.
 * A slot may go below 0 after a decrement; only the total is bounded. The
 * width is raised to N before the first write to a slot ≥ the old width, in
 * the same script: a GET that reads the width then always sees every slot
 * that holds anything. Rejected → `{0, value checked}` and nothing written;
 * applied → `{1, slot}`.
 */
const SHARDED_CHANGE_LUA = `
local n = tonumber(ARGV[4])
local slot = tonumber(ARGV[5])
local w = width()
if w == nil then ${NOT_AN_INTEGER} end
local checked
if ARGV[6] == '1' then
  local span = n
  if w > span then span = w end
  checked = total(span)
else
  checked = tonumber(redis.call('GET', slot_key(slot)) or '0')
end
if checked == nil then ${NOT_AN_INTEGER} end
if checked < tonumber(ARGV[2]) or checked > tonumber(ARGV[3]) then
  return {0, string.format('%.0f', checked)}
end
if w < n then redis.call('SET', width_key, ARGV[4]) end
redis.call('INCRBY', slot_key(slot), ARGV[1])
`;

/** A sharded change without a key: see SHARDED_CHANGE_LUA. */
export const SHARDED_APPLY_LUA = `${SHARD_LUA_HELPERS}${SHARDED_CHANGE_LUA}return {1, slot}
`;

/**
 * A sharded change with an Idempotency-Key: KEYS[2] is the key record (the
 * same namespace as an unsharded counter's: the key belongs to the id, not
 * to a slot), ARGV[7] its retention in ms, ARGV[8] the id. The record is
 * looked up first (present → `{2, record}`, nothing written), then the
 * change; the record "<by>:s<slot>:<id>" is written in the same script
 * (the `s` tells a sharded result from an unsharded "<by>:<value>:<id>").
 */
export const SHARDED_APPLY_KEYED_LUA = `${SHARD_LUA_HELPERS}
local record = redis.call('GET', KEYS[2])
if record then
  return {2, record}
end
${SHARDED_CHANGE_LUA}redis.call('SET', KEYS[2], ARGV[1] .. ':s' .. ARGV[5] .. ':' .. ARGV[8], 'PX', ARGV[7])
return {1, slot}
`;

/**
 * The total of a sharded counter, read-only, in one round trip: the width,
 * then slots 0…max(N, w)−1 in one MGET, summed. ARGV[1] = N. Answers the
 * total as a decimal string (exact: `%.0f`).
 */
export const SHARDED_READ_LUA = `${SHARD_LUA_HELPERS}
local w = width()
if w == nil then ${NOT_AN_INTEGER} end
local span = tonumber(ARGV[1])
if w > span then span = w end
local sum = total(span)
if sum == nil then ${NOT_AN_INTEGER} end
return string.format('%.0f', sum)
`;

/** A key record written by a sharded change: "<by>:s<slot>:<id>". */
export const SHARDED_RECORD = /^(-?\d+):s(\d+):([\s\S]*)$/;
