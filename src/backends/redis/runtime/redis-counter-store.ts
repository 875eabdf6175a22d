import Redis, { RedisOptions } from 'ioredis';
import { LimitReachedError } from '../../../runtime/errors';
import { writeWarning } from '../../../runtime/log';
import { readJsonSecret, secretField } from '../../../runtime/secrets';
import { CounterStore } from '../../../runtime/store';
import { REDIS_SECRET_FIELDS } from '../redis-env';
import { RedisConfig } from './redis-config';
import { isAuthReply, replyCode, toRedisCounterError } from './redis-errors';

/**
 * Conditional increment as one script: Redis runs a script to completion
 * before serving any other command, so the read, the comparison and the
 * INCR are one atomic step and no other writer can slip between them. A
 * missing key reads as 0, so the first-increment race needs no special case
 * (INCR creates the key). The answer is a pair: `{1, new value}` when applied,
 * `{0, current value}` when rejected — a distinct result, never an error to
 * be recognised by its text. The id reaches the script only as KEYS[1].
 */
const INCREMENT_BELOW_LUA = `
local current = tonumber(redis.call('GET', KEYS[1]) or '0')
if current >= tonumber(ARGV[1]) then
  return {0, current}
end
return {1, redis.call('INCR', KEYS[1])}
`;

interface CounterRedis extends Redis {
  counterIncrementBelow(key: string, maximum: string): Promise<[number, number]>;
}

/**
 * Redis (ElastiCache Redis OSS or Valkey): `INCR` for the unconditional
 * increment, one Lua script (EVALSHA, with ioredis' NOSCRIPT fallback to
 * EVAL) for the conditional one, `GET` for reads; all on the primary.
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

  private constructor(private readonly config: RedisConfig) {}

  /** Opens the container's connection now (init phase); a request meanwhile shares it. */
  async connect(): Promise<void> {
    await this.connection();
  }

  async increment(id: string): Promise<number> {
    return this.write(id, (target, key) => target.incr(key)) as Promise<number>;
  }

  async incrementBelow(id: string, maximum: number): Promise<number> {
    const [applied, value] = await this.write(id, (target, key) =>
      (target as CounterRedis).counterIncrementBelow(key, String(maximum))) as [number, number];
    if (applied !== 1) throw new LimitReachedError(maximum, Number(value));
    return Number(value);
  }

  async read(id: string): Promise<number> {
    const value = await this.run((client) => client.get(this.key(id)));
    return value === null ? 0 : Number(value);
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

  /**
   * One write command, followed in the same round trip by `WAIT` when
   * replica acknowledgements are asked for. WAIT blocks this connection until
   * the replicas confirm every earlier write on it, or the timeout passes.
   * A shortfall does not turn into an error: the increment is applied and
   * visible, and a retry by the client would count it twice.
   */
  private async write(id: string, command: (target: Redis | ReturnType<Redis['pipeline']>, key: string) => unknown): Promise<unknown> {
    const key = this.key(id);
    const { waitReplicas, waitTimeoutMs } = this.config;
    if (waitReplicas === 0) return this.run((client) => command(client, key) as Promise<unknown>);
    return this.run(async (client) => {
      const pipeline = client.pipeline();
      command(pipeline, key);
      pipeline.wait(waitReplicas, waitTimeoutMs);
      const results = (await pipeline.exec()) ?? [];
      const [[writeErr, value], [waitErr, acknowledged]] = results;
      if (writeErr) throw writeErr;
      if (waitErr || Number(acknowledged) < waitReplicas) {
        writeWarning('redis', `WAIT: ${waitErr ? 'failed' : `${acknowledged} of ${waitReplicas} replicas acknowledged within ${waitTimeoutMs} ms`}`);
      }
      return value;
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
    client.defineCommand('counterIncrementBelow', { numberOfKeys: 1, lua: INCREMENT_BELOW_LUA });
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

async function readCredentials(secretArn: string): Promise<{ password: string; username?: string }> {
  // readJsonSecret loads the Secrets Manager client on first use only.
  const secret = await readJsonSecret(secretArn);
  const password = secretField(secret, REDIS_SECRET_FIELDS.AUTH_TOKEN, 'Redis auth secret');
  const username = typeof secret[REDIS_SECRET_FIELDS.USERNAME] === 'string' ? secret[REDIS_SECRET_FIELDS.USERNAME] as string : undefined;
  return username ? { password, username } : { password };
}
