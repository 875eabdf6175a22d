import Redis, { RedisOptions } from 'ioredis';
import { SHARD_LIMITS } from '../../../counter-env';
import { IdempotencyKeyReusedError, rejectionOf } from '../../../runtime/errors';
import { writeWarning } from '../../../runtime/log';
import { readJsonSecret, secretField } from '../../../runtime/secrets';
import { KnownWidths, slotOrder } from '../../../runtime/shards';
import { allowedPrevious, ChangeResult, CounterChange, CounterStore, sameBinding } from '../../../runtime/store';
import { REDIS_SECRET_FIELDS } from '../redis-env';
import { RedisConfig } from './redis-config';
import { isAuthReply, replyCode, toRedisCounterError } from './redis-errors';
import { SHARDED_APPLY_KEYED_LUA, SHARDED_APPLY_LUA, SHARDED_READ_LUA, SHARDED_RECORD, shardKeys, slotKey, widthKey } from './redis-shards';

/**
 * Appended to the key prefix to name a key record: `<prefix>\u0001k\u0001<key>`.
 * Counter ids never contain control characters (the request parser rejects
 * them), so no counter key `<prefix><id>` can equal a key record's name, and
 * a listing of the prefix tells the two apart by the character after it.
 */
export const KEY_RECORD_INFIX = '\u0001k\u0001';

/**
 * The bounded change, shared by both scripts (Lua 5.1 inside Redis; numbers
 * are doubles, exact for every integer up to 2^53, so the safe-integer bounds
 * and any value this store writes compare exactly). ARGV[1] = by, ARGV[2] =
 * lowest, ARGV[3] = highest previous value allowed (`allowedPrevious`), all
 * as decimal strings. A missing counter reads 0. Rejected → `{0, value}` and
 * nothing written; applied → INCRBY. A stored value that is no integer is an
 * error reply, as INCRBY would give, before anything is written.
 */
const BOUNDED_CHANGE_LUA = `
local raw = redis.call('GET', KEYS[1]) or '0'
local current = tonumber(raw)
if current == nil then
  return redis.error_reply('ERR value is not an integer or out of range')
end
if current < tonumber(ARGV[2]) or current > tonumber(ARGV[3]) then
  return {0, raw}
end
local value = redis.call('INCRBY', KEYS[1], ARGV[1])
`;

/**
 * A counter once written with several shards (its width key, KEYS[i], exists)
 * is no longer one key: the unsharded scripts then write nothing and answer
 * `{3, width}`, and the store applies the change with the sharded script
 * (redis-shards.ts) on slot 0, so the bound is checked on the total. A
 * counter never sharded has no width key: one GET more inside the script,
 * and everything else as before.
 */
const wideCheckLua = (i: number) => `
local width = redis.call('GET', KEYS[${i}])
if width then
  return {3, width}
end
`;

/**
 * A step, or any conditional change, without a key: one script. Redis runs
 * a script to completion before serving any other command, so the read, the
 * bound check and the INCRBY are one atomic step. The answer is a distinct
 * result, `{1, new value}` or `{0, current value}`, never an error to be
 * recognised by its text. The id reaches the script only as KEYS[1] (and
 * KEYS[2], its width key).
 */
const APPLY_LUA = `${wideCheckLua(2)}${BOUNDED_CHANGE_LUA}return {1, value}
`;

/**
 * A change with an Idempotency-Key: KEYS[2] is the key record (KEYS[3] the
 * width key, see wideCheckLua), ARGV[4] its
 * retention in milliseconds, ARGV[5] the id. The record is looked up first
 * (a replay answers even when the counter is now at its bound); present →
 * `{2, record}` and nothing written (the caller compares the binding). Else
 * the bounded change; only once INCRBY succeeded is the record written, as
 * "<by>:<value>:<id>" (by and value are integers, so the first two colons
 * delimit them and the id is the rest), with PX: Redis drops it when the
 * retention ends. Everything in one script, so the change and its record are
 * applied together or not at all, and no second request with the key can run
 * between the lookup and the write. `%.0f` prints an integer-valued double
 * exactly (Lua's own tostring would round to 14 digits).
 */
const APPLY_KEYED_LUA = `
local record = redis.call('GET', KEYS[2])
if record then
  return {2, record}
end
${wideCheckLua(3)}${BOUNDED_CHANGE_LUA}redis.call('SET', KEYS[2], ARGV[1] .. ':' .. string.format('%.0f', value) .. ':' .. ARGV[5], 'PX', ARGV[4])
return {1, value}
`;

/**
 * A script's answer: 1 applied (new value; sharded: the slot), 0 rejected
 * (the value checked), 2 key already recorded (the record), 3 the counter is
 * sharded (unsharded scripts only; nothing written).
 */
type ScriptAnswer = [number, number | string];

interface CounterRedis extends Redis {
  counterApply(key: string, widthKey: string, by: string, lowest: string, highest: string): Promise<ScriptAnswer>;
  counterApplyKeyed(
    key: string, recordKey: string, widthKey: string, by: string, lowest: string, highest: string, retentionMs: string, id: string,
  ): Promise<ScriptAnswer>;
  /** Sharded scripts take their key count first (it varies with the width): `numkeys, ...keys, ...args`. */
  counterShardApply(...keysThenArgs: Array<string | number>): Promise<ScriptAnswer>;
  counterShardApplyKeyed(...keysThenArgs: Array<string | number>): Promise<ScriptAnswer>;
  counterShardRead(...keys: Array<string | number>): Promise<ScriptAnswer>;
}

/** A key record's content: "<by>:<value>:<id>". */
const RECORD = /^(-?\d+):(-?\d+):([\s\S]*)$/;

/**
 * Redis (ElastiCache Redis OSS or Valkey): `INCR` for a plain unkeyed
 * increment, one Lua script (EVALSHA, with ioredis' NOSCRIPT fallback to
 * EVAL) for a step, a conditional change or a change with an
 * Idempotency-Key, `MGET` of the counter and its width key for reads; all
 * on the primary, one round trip each. A sharded counter (`shards` > 1, or
 * once written so by any container) is one script per change and one per
 * read (redis-shards.ts).
 *
 * The client is built for Lambda: one connection per container, opened
 * lazily, with bounded connect and command timeouts, no offline queue and
 * no background reconnection. A command on a broken connection fails at
 * once (503); the next request opens a fresh connection. ioredis' automatic
 * reconnect is off on purpose: it would resend unanswered commands, and a
 * resent INCR whose first reply was lost counts one request twice.
 */
export class RedisCounterStore implements CounterStore {
  /**
   * Creates the store. Its client is opened by `connect` (init phase) or the first
   * command, and replaced whenever it breaks, so the store builds each
   * connection itself (`open`).
   */
  static async create(config: RedisConfig): Promise<RedisCounterStore> {
    return new RedisCounterStore(config);
  }

  private client?: CounterRedis;
  private connecting?: Promise<CounterRedis>;
  /** When the current connection last carried a command (or was opened). */
  private lastUsed = 0;
  /** The widest each sharded id has been seen, so a script is passed all its slots the first time. */
  private readonly widths = new KnownWidths();
  /** The pipeline refuses `shards` > 1 for a store without this. */
  readonly sharded = true;

  private constructor(private readonly config: RedisConfig) {}

  /** Opens the container's connection now (init phase); a request meanwhile shares it. */
  async connect(): Promise<void> {
    await this.connection();
  }

  /**
   * One change, one round trip, one command: a script (below). A sharded
   * change (`shards` > 1, or an id this container has seen sharded) is one
   * script (redis-shards.ts), or a bare INCR on a slot for a plain +1. No
   * request sends more than two commands one after the other (the worst
   * case in redis-env.ts counts on it).
   */
  async apply(id: string, change: CounterChange): Promise<ChangeResult> {
    const { by, maximum, idempotency } = change;
    const shards = change.shards ?? 1;
    if (shards > 1 || this.widths.get(id) > 1) {
      const slot = slotOrder(shards)[0];
      if (idempotency === undefined && maximum === undefined && by === 1 && this.widths.get(id) >= shards) {
        // The width is known to be ≥ N already (a script of this container
        // raised or saw it, and it is never lowered): the plain +1 is a bare
        // INCR on the slot, as cheap on the server as an unsharded one.
        await this.write((target) => target.incr(slotKey(this.key(id), slot)));
        return { shard: slot, replayed: false };
      }
      return this.applySharded(id, change, shards, slot);
    }
    const key = this.key(id);
    // Every unsharded change, the plain +1 included, is one script: it sees
    // a width key that another container wrote (the id was sharded) in the
    // same command, where an INCR would need a second one (EXISTS), and it
    // keeps the result within the safe integers.
    const { lowest, highest } = allowedPrevious(by, maximum);
    const [[outcome, value]] = await this.write((target) => (idempotency === undefined
      ? (target as CounterRedis).counterApply(key, widthKey(key), String(by), String(lowest), String(highest))
      : (target as CounterRedis).counterApplyKeyed(key, this.recordKey(idempotency.key), widthKey(key), String(by), String(lowest), String(highest),
        String(idempotency.retentionSeconds * 1000), id))) as [ScriptAnswer];
    if (outcome === 1) return { counter: Number(value), replayed: false };
    if (outcome === 2) return replayOf(String(value), id, by);
    if (outcome === 3) {
      // Sharded by another container: nothing was written; apply on slot 0
      // (a second round trip, passing every slot there can be, so it is the last).
      this.widths.remember(id, Number(value));
      return this.applySharded(id, change, 1, 0, true);
    }
    throw rejectionOf(by, maximum, Number(value));
  }

  /**
   * A change of a sharded counter on `slot` (in 0…shards−1), one script: in
   * conditional mode it checks the bound on the total of every slot, else
   * only that the slot stays a safe integer. Answers the slot, never a total.
   * A conditional change passes every slot it knows of (max(N, the width
   * this container has seen)); a counter found wider costs one more round
   * trip, once per container and width (`KnownWidths`), which passes every
   * slot there can be (`SHARD_LIMITS.max`), so it cannot be found wider
   * again. `allSlots`: pass them all at once.
   */
  private async applySharded(id: string, change: CounterChange, shards: number, slot: number, allSlots = false): Promise<ChangeResult> {
    const { by, maximum, idempotency } = change;
    const key = this.key(id);
    const { lowest, highest } = allowedPrevious(by, maximum);
    for (let everySlot = allSlots; ; everySlot = true) {
      const bounded = maximum !== undefined;
      const keys = bounded
        ? shardKeys(key, everySlot ? SHARD_LIMITS.max : Math.max(shards, this.widths.get(id)))
        : [slotKey(key, slot), widthKey(key)];
      if (idempotency !== undefined) keys.push(this.recordKey(idempotency.key));
      const slotCount = bounded ? keys.length - (idempotency ? 2 : 1) : 1;
      const args = [String(by), String(lowest), String(highest), String(shards), String(slot), String(slotCount), bounded ? '1' : '0'];
      if (idempotency !== undefined) args.push(String(idempotency.retentionSeconds * 1000), id);
      const [[outcome, value]] = await this.write((target) => (idempotency === undefined
        ? (target as CounterRedis).counterShardApply(keys.length, ...keys, ...args)
        : (target as CounterRedis).counterShardApplyKeyed(keys.length, ...keys, ...args))) as [ScriptAnswer];
      if (outcome === 1) {
        this.widths.remember(id, shards);
        return { shard: Number(value), replayed: false };
      }
      if (outcome === 2) return replayOf(String(value), id, by);
      if (outcome === 4 && !everySlot) {
        // Wider than the slots passed (written by a container with a larger N): nothing written; pass them all.
        this.widths.remember(id, Number(value));
        continue;
      }
      // Conditional: the total, read atomically. Unconditional: only the slot was read, so no value to report.
      throw rejectionOf(by, maximum, bounded ? Number(value) : undefined);
    }
  }

  /**
   * The total, one round trip. Unsharded (`shards` 1): MGET of the counter
   * and its width key; a counter sharded by another container (the width
   * exists) costs a second round trip, the sharded read. Sharded: one
   * read-only script that reads the width and sums every slot (max(N, the
   * width this container has seen); one more round trip, over every slot
   * there can be, when it finds the counter wider).
   */
  async read(id: string, shards = 1): Promise<number> {
    const key = this.key(id);
    let everySlot = false;
    if (shards <= 1 && this.widths.get(id) <= 1) {
      const [value, wide] = await this.run((client) => client.mget(key, widthKey(key)));
      if (wide === null) return value === null ? 0 : Number(value);
      this.widths.remember(id, Number(wide));
      everySlot = true;
    }
    for (; ; everySlot = true) {
      const keys = shardKeys(key, everySlot ? SHARD_LIMITS.max : Math.max(shards, this.widths.get(id)));
      const [outcome, value] = await this.run((client) => client.counterShardRead(keys.length, ...keys));
      if (outcome !== 4 || everySlot) return Number(value);
      this.widths.remember(id, Number(value));
    }
  }

  async close(): Promise<void> {
    const client = this.client ?? await this.connecting?.catch(() => undefined);
    this.client = undefined;
    client?.disconnect();
  }

  /** The key of a counter: the prefix, then the id verbatim (ids are never parsed or escaped). */
  key(id: string): string {
    return this.config.keyPrefix + id;
  }

  /** The key record of an Idempotency-Key: the prefix, a control-character infix no id can contain, then the key verbatim. */
  recordKey(requestKey: string): string {
    return this.config.keyPrefix + KEY_RECORD_INFIX + requestKey;
  }

  /**
   * One write command (a single command or one script), followed in the
   * same round trip by `WAIT` when replica acknowledgements are asked for.
   * WAIT blocks this connection until the replicas confirm every earlier
   * write on it, or the timeout passes. A shortfall does not turn into an
   * error: the change is applied and visible, and a retry by the client
   * would count it twice (unless it carries an Idempotency-Key).
   */
  private async write(...commands: Array<(target: Redis | ReturnType<Redis['pipeline']>) => unknown>): Promise<unknown[]> {
    const { waitReplicas, waitTimeoutMs } = this.config;
    if (waitReplicas === 0 && commands.length === 1) return [await this.run((client) => commands[0](client) as Promise<unknown>)];
    return this.run(async (client) => {
      const pipeline = client.pipeline();
      for (const command of commands) command(pipeline);
      if (waitReplicas > 0) pipeline.wait(waitReplicas, waitTimeoutMs);
      const results = (await pipeline.exec()) ?? [];
      const values: unknown[] = [];
      for (const [err, value] of results.slice(0, commands.length)) {
        if (err) throw err;
        values.push(value);
      }
      if (waitReplicas > 0) {
        const [waitErr, acknowledged] = results[commands.length] ?? [new Error('no WAIT reply'), 0];
        if (waitErr || Number(acknowledged) < waitReplicas) {
          writeWarning('redis', `WAIT: ${waitErr ? 'failed' : `${acknowledged} of ${waitReplicas} replicas acknowledged within ${waitTimeoutMs} ms`}`);
        }
      }
      return values;
    });
  }

  /** Runs one command; its failure is sorted by `toRedisCounterError`. */
  private async run<T>(command: (client: CounterRedis) => Promise<T>): Promise<T> {
    const client = await this.connection();
    try {
      return await command(client);
    } catch (err) {
      const code = replyCode(err);
      // A transport failure, or NOAUTH / WRONGPASS (the command was refused
      // before it ran; the pipeline re-reads the secret and retries on a
      // fresh store): the next command starts on a fresh connection. So
      // does READONLY: after a failover this connection still points at the
      // old primary, now a replica; a fresh connection resolves the primary
      // endpoint's DNS name again and reaches the new one.
      if (code === undefined || isAuthReply(err) || code === 'READONLY') this.discard(client);
      throw toRedisCounterError(err, 'command', this.config.authSecretArn);
    } finally {
      this.lastUsed = Date.now();
    }
  }

  /**
   * The container's connection: reused while ready, replaced once broken.
   * Concurrent callers share one connect. A connection idle for longer than
   * `idleCheckMs` is pinged first: a frozen container's idle flow may have
   * been dropped silently (a NAT forgets idle flows after 350 s), and a
   * command sent on it would only time out, ambiguously. A failed ping
   * sent nothing that counts, so a fresh connection is safe.
   */
  private async connection(): Promise<CounterRedis> {
    const client = this.client;
    if (client && client.status === 'ready') {
      if (Date.now() - this.lastUsed <= this.config.idleCheckMs) return client;
      try {
        await client.ping();
        this.lastUsed = Date.now();
        return client;
      } catch (err) {
        if (isAuthReply(err)) {
          this.discard(client);
          throw toRedisCounterError(err, 'connect', this.config.authSecretArn);
        }
        writeWarning('redis', `idle connection (${Date.now() - this.lastUsed} ms) did not answer a PING; replaced`);
        this.discard(client);
      }
    }
    if (this.client) this.discard(this.client);
    this.connecting ??= this.open().then(
      (fresh) => {
        this.client = fresh;
        this.lastUsed = Date.now();
        this.connecting = undefined;
        return fresh;
      },
      (err) => {
        this.connecting = undefined;
        throw err;
      },
    );
    return this.connecting;
  }

  private discard(client: Redis): void {
    if (this.client === client) this.client = undefined;
    client.disconnect();
  }

  private async open(): Promise<CounterRedis> {
    const { config } = this;
    const credentials = config.authSecretArn ? await readCredentials(config.authSecretArn) : {};
    const options: RedisOptions = {
      ...credentials,
      lazyConnect: true,
      connectTimeout: config.connectTimeoutMs,
      commandTimeout: config.commandTimeoutMs,
      // Fail fast instead of queueing while disconnected, and never replay.
      enableOfflineQueue: false,
      maxRetriesPerRequest: 0,
      retryStrategy: () => null,
      autoResendUnfulfilledCommands: false,
      // The ready check costs an INFO round trip per connect; a server still
      // loading its data answers LOADING instead, which is a 503 anyway.
      enableReadyCheck: false,
      // Two CLIENT SETINFO commands per connect otherwise: a round trip spent
      // on a label, and an error on engines before Redis 7.2.
      disableClientInfo: true,
    };
    const client = (config.url
      ? new Redis(config.url, options)
      : new Redis({
        ...options,
        host: config.host,
        port: config.port,
        // Node verifies the certificate chain and the host name by default.
        tls: config.tls ? { servername: config.host } : undefined,
      })) as CounterRedis;
    // Errors surface through the commands; without a listener ioredis prints them.
    client.on('error', () => undefined);
    client.defineCommand('counterApply', { numberOfKeys: 2, lua: APPLY_LUA });
    client.defineCommand('counterApplyKeyed', { numberOfKeys: 3, lua: APPLY_KEYED_LUA });
    // No numberOfKeys: the first argument is the key count.
    client.defineCommand('counterShardApply', { lua: SHARDED_APPLY_LUA });
    client.defineCommand('counterShardApplyKeyed', { lua: SHARDED_APPLY_KEYED_LUA });
    client.defineCommand('counterShardRead', { lua: SHARDED_READ_LUA });
    // connect() rejects with a generic "Connection is closed."; the socket's
    // own error (refused, timed out, certificate rejected) arrives as an event.
    let socketError: unknown;
    const keepSocketError = (err: unknown) => {
      socketError = err;
    };
    client.on('error', keepSocketError);
    try {
      await client.connect();
    } catch (err) {
      client.disconnect();
      throw toRedisCounterError(socketError ?? err, 'connect', config.authSecretArn);
    } finally {
      client.off('error', keepSocketError);
    }
    return client;
  }
}

/**
 * The key was already recorded: the same id and step replay the recorded
 * result (an unsharded record its value, a sharded one its slot); anything
 * else is a reuse (nothing was written either way).
 */
function replayOf(record: string, id: string, by: number): ChangeResult {
  const sharded = SHARDED_RECORD.exec(record);
  const match = sharded ?? RECORD.exec(record);
  if (!match) throw new Error(`Unreadable idempotency key record: ${JSON.stringify(record.slice(0, 40))}`);
  if (!sameBinding({ id: match[3], by: Number(match[1]) }, id, by)) throw new IdempotencyKeyReusedError();
  return sharded ? { shard: Number(match[2]), replayed: true } : { counter: Number(match[2]), replayed: true };
}

async function readCredentials(secretArn: string): Promise<{ password: string; username?: string }> {
  // readJsonSecret loads the Secrets Manager client on first use only.
  const secret = await readJsonSecret(secretArn);
  const password = secretField(secret, REDIS_SECRET_FIELDS.AUTH_TOKEN, 'Redis auth secret');
  const username = typeof secret[REDIS_SECRET_FIELDS.USERNAME] === 'string' ? secret[REDIS_SECRET_FIELDS.USERNAME] as string : undefined;
  return username ? { password, username } : { password };
}
