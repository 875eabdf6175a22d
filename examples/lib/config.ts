import * as fs from 'fs';
import * as path from 'path';

/**
 * The example's configuration, read once at synth from `.env` (plus the
 * process environment, which wins) and CDK context. Every problem is a
 * `ConfigError` whose message is one line naming the variable or file.
 */
export interface ExampleConfig {
  /** STACK_NAME, or `-c stackName=…` (wins): the CloudFormation stack, and the deployment's identity. */
  readonly stackName: string;
  /** BACKENDS: the backends to deploy (a SaaS one also needs its credentials). */
  readonly backends: ReadonlySet<BackendName>;
  /** API_GATEWAY_CLOUDWATCH_ROLE: set the account's API Gateway CloudWatch Logs role (AtomicCounterApi's `cloudWatchRole`). */
  readonly cloudWatchRole: boolean;
  /** USE_CONDITIONAL_WRITES */
  readonly conditionalWrites: boolean;
  /** MAX_COUNTER_VALUE */
  readonly maxCounterValue: number;
  /** COUNTER_SHARDS: shard records per counter id, 1–64 (README, "Sharded counters"). */
  readonly shards: number;
  /** Momento: where its API key comes from, or why it is left out; MOMENTO_CACHE_NAME when set (else the library's per-deployment default). */
  readonly momento: CredentialSource<{ readonly cacheName?: string }>;
  /** TiDB: where its connection secret comes from, or why it is left out. */
  readonly tidb: CredentialSource;
  /** Lines to show as synth-time warnings (backends left out, plaintext opt-in). */
  readonly warnings: string[];
}

/** The example's backends, in the order the stack creates them. */
export const BACKEND_NAMES = ['dynamo', 'redis', 'momento', 'docdb', 'tidb'] as const;
export type BackendName = typeof BACKEND_NAMES[number];

/**
 * Credentials of a SaaS backend: the name of an existing Secrets Manager
 * secret (the safe path; with the ARN of the customer-managed KMS key that
 * encrypts it, if any), the JSON read from a local file (opt-in: it ends up
 * in the template), or nothing (the backend is left out).
 */
export type CredentialSource<Extra = {}> =
  | ({ readonly kind: 'secretName'; readonly secretName: string; readonly kmsKeyArn?: string } & Extra)
  | ({ readonly kind: 'plaintextFile'; readonly file: string; readonly secretJson: string } & Extra)
  | { readonly kind: 'absent'; readonly reason: string };

/** A configuration problem, reported as one line. */
export class ConfigError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'ConfigError';
  }
}

/** CDK context key that allows reading the credential files at synth. */
export const PLAINTEXT_OPT_IN = 'allowPlaintextSecretsFromFiles';

/** Credential files, in the example's root (gitignored). */
export const CREDENTIAL_FILES = { momento: 'momento_key_info.json', tidb: 'tidb_info.json' } as const;

/** The library's largest `shards` (its props check says the same at synth; this says it in the variable's name). */
export const MAX_SHARDS = 64;

/** CDK context key naming the stack (wins over STACK_NAME). */
export const STACK_NAME_CONTEXT = 'stackName';

/** Defaults of every variable (`.env.example` mirrors them). */
export const CONFIG_DEFAULTS = {
  stackName: 'AtomicCounterExample',
  backends: BACKEND_NAMES.join(','),
  cloudWatchRole: true,
  conditionalWrites: false,
  maxCounterValue: 10,
  shards: 1,
} as const;

/** Where the configuration comes from. */
export interface ConfigSources {
  /** Directory holding `.env` and the credential files. */
  readonly dir: string;
  /** The process environment (wins over `.env`). */
  readonly env?: NodeJS.ProcessEnv;
  /** CDK context lookup (e.g. `app.node.tryGetContext`). */
  readonly context?: (key: string) => unknown;
}

export function loadExampleConfig(sources: ConfigSources): ExampleConfig {
  const dotenvPath = path.join(sources.dir, '.env');
  const fromFile = fs.existsSync(dotenvPath) ? parseDotenv(fs.readFileSync(dotenvPath, 'utf8'), '.env') : {};
  const vars: Record<string, string | undefined> = { ...fromFile, ...pickDefined(sources.env ?? {}) };
  const allowPlaintext = readContextBoolean(sources.context?.(PLAINTEXT_OPT_IN), PLAINTEXT_OPT_IN);
  const warnings: string[] = [];

  const stackName = readStackName(sources.context?.(STACK_NAME_CONTEXT), vars.STACK_NAME);
  const backends = readBackends(vars);
  const cloudWatchRole = readBoolean(vars, 'API_GATEWAY_CLOUDWATCH_ROLE', CONFIG_DEFAULTS.cloudWatchRole);
  const conditionalWrites = readBoolean(vars, 'USE_CONDITIONAL_WRITES', CONFIG_DEFAULTS.conditionalWrites);
  const maxCounterValue = readPositiveInteger(vars, 'MAX_COUNTER_VALUE', CONFIG_DEFAULTS.maxCounterValue);
  const shards = readPositiveInteger(vars, 'COUNTER_SHARDS', CONFIG_DEFAULTS.shards);
  if (shards > MAX_SHARDS) throw new ConfigError(`COUNTER_SHARDS: expected an integer from 1 to ${MAX_SHARDS}, got "${vars.COUNTER_SHARDS}"`);
  const cacheName = vars.MOMENTO_CACHE_NAME === undefined ? undefined : readString(vars, 'MOMENTO_CACHE_NAME', '');
  if (cacheName !== undefined && !/^[A-Za-z0-9_.-]{1,255}$/.test(cacheName)) {
    throw new ConfigError(`MOMENTO_CACHE_NAME: "${cacheName}" is not a valid Momento cache name (letters, digits, "_", ".", "-")`);
  }

  // A backend left out by BACKENDS needs no credentials, and gets no warning.
  const leftOut = (backend: string): CredentialSource => ({ kind: 'absent', reason: `${backend} left out by BACKENDS` });
  const momentoSource = backends.has('momento') ? readCredentials({
    dir: sources.dir, vars, allowPlaintext, warnings,
    backend: 'Momento', variable: 'MOMENTO_SECRET_NAME', file: CREDENTIAL_FILES.momento, validate: validateMomentoKey,
  }) : leftOut('Momento');
  const momento = momentoSource.kind === 'absent' ? momentoSource : { ...momentoSource, cacheName };
  const tidb = backends.has('tidb') ? readCredentials({
    dir: sources.dir, vars, allowPlaintext, warnings,
    backend: 'TiDB', variable: 'TIDB_SECRET_NAME', file: CREDENTIAL_FILES.tidb, validate: validateTiDbInfo,
  }) : leftOut('TiDB');
  return { stackName, backends, cloudWatchRole, conditionalWrites, maxCounterValue, shards, momento, tidb, warnings };
}

/** `-c stackName=…` wins over STACK_NAME; CloudFormation's rule for stack names. */
function readStackName(fromContext: unknown, fromEnv: string | undefined): string {
  const [source, value] = fromContext !== undefined ? [`-c ${STACK_NAME_CONTEXT}`, String(fromContext)] : ['STACK_NAME', fromEnv];
  if (value === undefined) return CONFIG_DEFAULTS.stackName;
  if (!/^[A-Za-z][A-Za-z0-9-]{0,127}$/.test(value)) {
    throw new ConfigError(`${source}: "${value}" is not a CloudFormation stack name (a letter, then up to 127 letters, digits or "-")`);
  }
  return value;
}

/** BACKENDS: a comma-separated subset of BACKEND_NAMES, at least one. */
function readBackends(vars: Record<string, string | undefined>): ReadonlySet<BackendName> {
  const value = vars.BACKENDS ?? CONFIG_DEFAULTS.backends;
  const names = value.split(',').map((n) => n.trim()).filter((n) => n !== '');
  const unknown = names.filter((n) => !(BACKEND_NAMES as readonly string[]).includes(n));
  if (unknown.length > 0) throw new ConfigError(`BACKENDS: unknown backend "${unknown[0]}" (expected a comma-separated list of ${BACKEND_NAMES.join(', ')})`);
  if (names.length === 0) throw new ConfigError(`BACKENDS: empty; list at least one of ${BACKEND_NAMES.join(', ')}`);
  return new Set(names as BackendName[]);
}

interface CredentialOptions {
  readonly dir: string;
  readonly vars: Record<string, string | undefined>;
  readonly allowPlaintext: boolean;
  readonly warnings: string[];
  readonly backend: string;
  readonly variable: string;
  readonly file: string;
  /** Returns what is wrong with the parsed JSON, or undefined. */
  readonly validate: (value: Record<string, unknown>) => string | undefined;
}

function readCredentials(o: CredentialOptions): CredentialSource {
  const secretName = o.vars[o.variable];
  if (secretName !== undefined) {
    // Secrets Manager's own rule for names: 1-512 of these characters.
    if (!/^[A-Za-z0-9/_+=.@-]{1,512}$/.test(secretName)) {
      throw new ConfigError(`${o.variable}: "${secretName}" is not a Secrets Manager secret name (1-512 of A-Z a-z 0-9 / _ + = . @ -)`);
    }
    // Secrets Manager reads a trailing "-" plus six characters as a full ARN's random suffix.
    if (/-.{6}$/.test(secretName)) {
      throw new ConfigError(`${o.variable}: "${secretName}" ends in "-" plus six characters, which Secrets Manager takes for the random suffix of a full ARN (lookups by name then fail); rename the secret`);
    }
    // The customer-managed key encrypting the secret, if any: the functions
    // then also get kms:Decrypt on it (through Secrets Manager only).
    const keyVariable = `${o.variable.replace(/_NAME$/, '')}_KMS_KEY_ARN`;
    const kmsKeyArn = o.vars[keyVariable];
    if (kmsKeyArn === undefined) return { kind: 'secretName', secretName };
    if (!/^arn:aws[a-z-]*:kms:[a-z0-9-]+:\d{12}:key\/[A-Za-z0-9-]+$/.test(kmsKeyArn)) {
      throw new ConfigError(`${keyVariable}: "${kmsKeyArn}" is not a KMS key ARN (arn:aws:kms:<region>:<account>:key/<key id>; an alias cannot be granted)`);
    }
    return { kind: 'secretName', secretName, kmsKeyArn };
  }
  const filePath = path.join(o.dir, o.file);
  if (!o.allowPlaintext) {
    const reason = `${o.backend} left out: set ${o.variable} in .env to the name of a Secrets Manager secret holding ${o.file}` +
      (fs.existsSync(filePath) ? ` (${o.file} is present but is read only with -c ${PLAINTEXT_OPT_IN}=true)` : '');
    o.warnings.push(reason);
    return { kind: 'absent', reason };
  }
  if (!fs.existsSync(filePath)) {
    const reason = `${o.backend} left out: neither ${o.variable} nor ${o.file} is provided`;
    o.warnings.push(reason);
    return { kind: 'absent', reason };
  }
  let parsed: unknown;
  try {
    parsed = JSON.parse(fs.readFileSync(filePath, 'utf8'));
  } catch (e) {
    throw new ConfigError(`${o.file}: not valid JSON (${(e as Error).message.split('\n')[0]})`);
  }
  if (typeof parsed !== 'object' || parsed === null || Array.isArray(parsed)) {
    throw new ConfigError(`${o.file}: expected a JSON object`);
  }
  const problem = o.validate(parsed as Record<string, unknown>);
  if (problem) throw new ConfigError(`${o.file}: ${problem}`);
  o.warnings.push(`${o.backend}: ${o.file} read because of -c ${PLAINTEXT_OPT_IN}=true; its content is in the synthesized template ` +
    `(cdk.out) and the CloudFormation stack as plain text. Prefer ${o.variable} (see README)`);
  return { kind: 'plaintextFile', file: o.file, secretJson: JSON.stringify(parsed) };
}

/** v2 `{apiKey, endpoint}` or the legacy `{apiKey, refreshToken, validUntil, restEndpoint}`. */
function validateMomentoKey(value: Record<string, unknown>): string | undefined {
  if (!nonEmptyString(value.apiKey)) return 'missing the string field "apiKey"';
  if (!nonEmptyString(value.endpoint) && !nonEmptyString(value.restEndpoint)) return 'missing "endpoint" (v2 key) or "restEndpoint" (legacy key)';
  return undefined;
}

/** `{host, port, user, password, database}`; TiDB Cloud's `pwd` and `db` are accepted too. */
function validateTiDbInfo(value: Record<string, unknown>): string | undefined {
  for (const field of ['host', 'user']) {
    if (!nonEmptyString(value[field])) return `missing the string field "${field}"`;
  }
  if (!nonEmptyString(value.password) && !nonEmptyString(value.pwd)) return 'missing "password" (or "pwd")';
  if (value.port !== undefined && !Number.isInteger(Number(value.port))) return '"port" is not an integer';
  return undefined;
}

/**
 * `.env` lines: `KEY=value`, optional `export `, `#` comments, values
 * optionally in single or double quotes. Anything else is an error naming the line.
 */
export function parseDotenv(text: string, fileName: string): Record<string, string> {
  const out: Record<string, string> = {};
  text.split(/\r?\n/).forEach((raw, index) => {
    const line = raw.trim();
    if (line === '' || line.startsWith('#')) return;
    const match = /^(?:export\s+)?([A-Za-z_][A-Za-z0-9_]*)\s*=\s*(.*)$/.exec(line);
    if (!match) throw new ConfigError(`${fileName}:${index + 1}: expected KEY=value, got "${line}"`);
    let value = match[2];
    const quoted = /^(['"])(.*)\1$/.exec(value);
    value = quoted ? quoted[2] : value.replace(/\s+#.*$/, '').trim();
    out[match[1]] = value;
  });
  return out;
}

function readString(vars: Record<string, string | undefined>, name: string, fallback: string): string {
  const value = vars[name];
  if (value === undefined) return fallback;
  if (value.trim() === '') throw new ConfigError(`${name}: empty; remove the line to use the default "${fallback}"`);
  return value.trim();
}

function readBoolean(vars: Record<string, string | undefined>, name: string, fallback: boolean): boolean {
  const value = vars[name];
  if (value === undefined) return fallback;
  if (/^true$/i.test(value.trim())) return true;
  if (/^false$/i.test(value.trim())) return false;
  throw new ConfigError(`${name}: expected true or false, got "${value}"`);
}

function readPositiveInteger(vars: Record<string, string | undefined>, name: string, fallback: number): number {
  const value = vars[name];
  if (value === undefined) return fallback;
  const n = Number(value.trim());
  if (!/^\d+$/.test(value.trim()) || !Number.isSafeInteger(n) || n < 1) {
    throw new ConfigError(`${name}: expected an integer ≥ 1, got "${value}"`);
  }
  return n;
}

function readContextBoolean(value: unknown, name: string): boolean {
  if (value === undefined) return false;
  if (value === true || value === 'true') return true;
  if (value === false || value === 'false') return false;
  throw new ConfigError(`-c ${name}: expected true or false, got "${String(value)}"`);
}

function nonEmptyString(value: unknown): boolean {
  return typeof value === 'string' && value.trim() !== '';
}

function pickDefined(env: NodeJS.ProcessEnv): Record<string, string> {
  return Object.fromEntries(Object.entries(env).filter((e): e is [string, string] => e[1] !== undefined));
}
