/**
 * Reading the handler's environment (the contract between a construct and
 * its function, docs/architecture.md). Read once, at module load, as Lambda's init
 * phase would; an invalid value fails the init with a clear message.
 */

import { COMMON_ENV, IDEMPOTENCY_DEFAULTS, MODE_DEFAULTS, SHARD_LIMITS } from '../counter-env';

export interface CounterModeConfig {
  readonly conditionalWrites: boolean;
  readonly maxCounterValue: number;
  /** Seconds an `Idempotency-Key` is remembered. */
  readonly idempotencyRetentionSeconds?: number;
  /** Slots a change may go to (`COUNTER_SHARDS`); 1 = an unsharded counter. @default 1 */
  readonly shards?: number;
}

export type Env = Record<string, string | undefined>;

export class ConfigError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'ConfigError';
  }
}

export function readBoolean(env: Env, name: string, fallback: boolean): boolean {
  const raw = env[name];
  if (raw === undefined || raw === '') return fallback;
  const value = raw.trim().toLowerCase();
  if (['true', '1', 'yes'].includes(value)) return true;
  if (['false', '0', 'no'].includes(value)) return false;
  throw new ConfigError(`${name} must be true or false (got "${raw}")`);
}

export function readInteger(env: Env, name: string, fallback: number, min = Number.MIN_SAFE_INTEGER): number {
  const raw = env[name];
  if (raw === undefined || raw === '') return fallback;
  const value = Number(raw);
  if (!Number.isSafeInteger(value) || value < min) {
    throw new ConfigError(`${name} must be an integer ≥ ${min} (got "${raw}")`);
  }
  return value;
}

export function readString(env: Env, name: string, fallback?: string): string {
  const raw = env[name];
  if (raw !== undefined && raw !== '') return raw;
  if (fallback !== undefined) return fallback;
  throw new ConfigError(`${name} must be set`);
}

export function readOptionalString(env: Env, name: string): string | undefined {
  const raw = env[name];
  return raw === undefined || raw === '' ? undefined : raw;
}

export function readModeConfig(env: Env): CounterModeConfig {
  return {
    conditionalWrites: readBoolean(env, COMMON_ENV.USE_CONDITIONAL_WRITES, MODE_DEFAULTS.conditionalWrites),
    maxCounterValue: readInteger(env, COMMON_ENV.MAX_COUNTER_VALUE, MODE_DEFAULTS.maxCounterValue, 1),
    idempotencyRetentionSeconds: readInteger(env, COMMON_ENV.IDEMPOTENCY_RETENTION_SECONDS, IDEMPOTENCY_DEFAULTS.retentionSeconds, 1),
    shards: readShards(env),
  };
}

/** `COUNTER_SHARDS`: an integer within `SHARD_LIMITS`, 1 when absent. */
export function readShards(env: Env): number {
  const shards = readInteger(env, COMMON_ENV.SHARDS, SHARD_LIMITS.default, SHARD_LIMITS.min);
  if (shards > SHARD_LIMITS.max) throw new ConfigError(`${COMMON_ENV.SHARDS} must be at most ${SHARD_LIMITS.max} (got ${shards})`);
  return shards;
}
