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
 * script to completion before any other command, over any keys. So a
 * conditional change reads every slot, checks the bound on the total and
 * INCRBYs one slot, all in one atomic step: no escrow shares are needed for
 * the bound to be exact. The slot keys are not hash-tagged (slot 0 must stay
 * the unsharded key): in cluster mode these scripts would be refused
 * (CROSSSLOT), which is one more reason that mode is not supported.
 */

import { SLOT_SEPARATOR, slotName as slotKey } from '../../../runtime/shards';

/** The key of slot `slot` of the counter whose slot-0 key is `base`. */
export { slotKey };

/** The key holding the width of the counter whose slot-0 key is `base`. */
export function widthKey(base: string): string {
  return `${base}${SLOT_SEPARATOR}w`;
}

const NOT_AN_INTEGER = "return redis.error_reply('ERR value is not an integer or out of range')";

/**
 * The head of every sharded script. Every key a script touches is passed in
 * KEYS, as the scripting documentation requires: KEYS[1…m] are slot keys
 * (m = ARGV[6] for a change, #KEYS − 1 for a read), KEYS[m+1] the width key.
 * `w` is the stored width (1 when absent); a stored value that is no integer
 * is an error reply before anything is written, as INCRBY would give.
 * `sum_slots()` adds KEYS[1…m] read with one MGET (a missing slot reads 0;
 * Lua 5.1 numbers are doubles, exact for every integer up to 2^53).
 */
const SHARD_HEAD_LUA = (slotCount: string) => `
local m = ${slotCount}
local width_key = KEYS[m + 1]
local w = tonumber(redis.call('GET', width_key) or '1')
if w == nil then ${NOT_AN_INTEGER} end
local function sum_slots()
  local values = redis.call('MGET', unpack(KEYS, 1, m))
  local sum = 0
  for i = 1, #values do
    local v = tonumber(values[i] or '0')
    if v == nil then return nil end
    sum = sum + v
  end
  return sum
end
`;

/**
 * A sharded change. ARGV[1] = by, ARGV[2]/ARGV[3] = lowest and highest
 * previous value allowed (`allowedPrevious`), ARGV[4] = N (the container's
 * shard count), ARGV[5] = the slot chosen by the caller (in 0…N−1),
 * ARGV[6] = m, the slot keys passed, ARGV[7] = '1' when the bound applies to
 * the total (conditional mode).
 *
 * Conditional: KEYS[1…m] are slots 0…m−1 with m ≥ N; when the stored width
 * is larger (a container with a larger N wrote slots above m), the script
 * answers `{4, w}` and writes nothing: the caller passes w slots and sends
 * again. Otherwise every slot is read, the total checked, and INCRBY goes to
 * slot ARGV[5]. A slot may go below 0 after a decrement; only the total is
 * bounded. Unconditional: KEYS[1] is the chosen slot alone (m = 1, O(1)):
 * only that it stays a safe integer is checked.
 *
 * The width is raised to N before the first write to a slot ≥ the old
 * width, in the same script: a read that learns the width then sees every
 * slot that holds anything. Rejected → `{0, value checked}`, nothing
 * written; applied → `{1, slot}`.
 */
const SHARDED_CHANGE_LUA = `
local n = tonumber(ARGV[4])
local target
local checked
if ARGV[7] == '1' then
  if w > m then return {4, string.format('%.0f', w)} end
  checked = sum_slots()
  target = KEYS[tonumber(ARGV[5]) + 1]
else
  target = KEYS[1]
  checked = tonumber(redis.call('GET', target) or '0')
end
if checked == nil then ${NOT_AN_INTEGER} end
if checked < tonumber(ARGV[2]) or checked > tonumber(ARGV[3]) then
  return {0, string.format('%.0f', checked)}
end
if w < n then redis.call('SET', width_key, ARGV[4]) end
redis.call('INCRBY', target, ARGV[1])
`;

/** A sharded change without a key: see SHARDED_CHANGE_LUA. */
export const SHARDED_APPLY_LUA = `${SHARD_HEAD_LUA('tonumber(ARGV[6])')}${SHARDED_CHANGE_LUA}return {1, ARGV[5]}
`;

/**
 * A sharded change with an Idempotency-Key: KEYS[m+2] is the key record (the
 * same namespace as an unsharded counter's: the key belongs to the id, not
 * to a slot), ARGV[8] its retention in ms, ARGV[9] the id. The record is
 * looked up first (present → `{2, record}`, nothing written), then the
 * change; the record "<by>:s<slot>:<id>" is written in the same script
 * (the `s` tells a sharded result from an unsharded "<by>:<value>:<id>").
 */
export const SHARDED_APPLY_KEYED_LUA = `${SHARD_HEAD_LUA('tonumber(ARGV[6])')}
local record = redis.call('GET', KEYS[m + 2])
if record then
  return {2, record}
end
${SHARDED_CHANGE_LUA}redis.call('SET', KEYS[m + 2], ARGV[1] .. ':s' .. ARGV[5] .. ':' .. ARGV[9], 'PX', ARGV[8])
return {1, ARGV[5]}
`;

/**
 * The total of a sharded counter, read-only, one round trip: KEYS[1…m] are
 * slots 0…m−1, KEYS[m+1] the width key. Wider than m → `{4, w}` (read
 * again with w slots); else `{1, total}` (a decimal string, exact).
 */
export const SHARDED_READ_LUA = `${SHARD_HEAD_LUA('#KEYS - 1')}
if w > m then return {4, string.format('%.0f', w)} end
local sum = sum_slots()
if sum == nil then ${NOT_AN_INTEGER} end
return {1, string.format('%.0f', sum)}
`;

/** The keys a sharded script is passed: slots `0…count−1` of the counter at `base`, then its width key. */
export function shardKeys(base: string, count: number): string[] {
  return [...Array.from({ length: count }, (_, i) => slotKey(base, i)), widthKey(base)];
}

/** A key record written by a sharded change: "<by>:s<slot>:<id>". */
export const SHARDED_RECORD = /^(-?\d+):s(\d+):([\s\S]*)$/;
