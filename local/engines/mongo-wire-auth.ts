/* eslint-disable no-bitwise -- SCRAM's proof is an XOR */
/**
 * Users, SCRAM authentication and role checks for the in-process MongoDB-wire
 * test server (`mongo-wire-server.ts`).
 *
 * - Users live in a database (DocumentDB keeps them all in `admin`) and are
 *   managed with `createUser`, `updateUser`, `dropUser` and `usersInfo`.
 * - Clients authenticate with SCRAM-SHA-1 or SCRAM-SHA-256 (RFC 5802 / 7677),
 *   the two mechanisms the `mongodb` driver negotiates through
 *   `saslSupportedMechs`. The server side is written on `node:crypto`.
 *   As in MongoDB, SCRAM-SHA-1 hashes the password as
 *   `md5("<user>:mongo:<password>")` first.
 * - Every command is checked against the authenticated user's roles
 *   (`root`, `readWriteAnyDatabase`, `readAnyDatabase`, `userAdminAnyDatabase`
 *   on `admin`; `readWrite`, `read`, `dbAdmin`, `userAdmin` on one database).
 *   A user whose roles do not cover a command gets `13 Unauthorized`.
 * - Changing a password does not end sessions that already authenticated
 *   (MongoDB and DocumentDB behave the same way); a dropped user's
 *   connections lose their rights at once.
 */
import * as crypto from 'crypto';
import { Binary, Document } from 'bson';

type Doc = Document;

/** The driver's minimum; keeps the client's PBKDF2 cheap in tests. */
export const SCRAM_ITERATIONS = 4096;

export type ScramMechanism = 'SCRAM-SHA-1' | 'SCRAM-SHA-256';
export const SCRAM_MECHANISMS: readonly ScramMechanism[] = ['SCRAM-SHA-256', 'SCRAM-SHA-1'];

/** A command failure, answered as `{ok: 0, errmsg, code, codeName, ...extra}`. */
export class CommandError extends Error {
  constructor(readonly code: number, readonly codeName: string, message: string, readonly extra: Doc = {}) {
    super(message);
  }
}

export const authFailed = () => new CommandError(18, 'AuthenticationFailed', 'Authentication failed.');

export interface RoleGrant { readonly role: string; readonly db: string }

interface ScramKeys { readonly salt: Buffer; readonly storedKey: Buffer; readonly serverKey: Buffer }

export interface UserRecord {
  readonly user: string;
  readonly db: string;
  readonly roles: RoleGrant[];
  readonly keys: Record<ScramMechanism, ScramKeys>;
}

/** Per-connection SCRAM state between `saslStart` and `saslContinue`. */
export interface ScramState {
  readonly mechanism: ScramMechanism;
  readonly user: UserRecord;
  readonly clientFirstBare: string;
  readonly serverFirst: string;
  readonly nonce: string;
  readonly skipEmptyExchange: boolean;
  finished: boolean;
}

/** Roles granted on `admin` that apply to every database. */
const CLUSTER_ROLES = new Set(['root', 'readWriteAnyDatabase', 'readAnyDatabase', 'userAdminAnyDatabase']);
/** Roles granted on one database. */
const DATABASE_ROLES = new Set(['readWrite', 'read', 'dbAdmin', 'userAdmin', 'dbOwner']);

/** Commands any authenticated user may run. */
const OPEN_COMMANDS = new Set([
  'hello', 'isMaster', 'ismaster', 'ping', 'buildInfo', 'buildinfo', 'saslStart', 'saslContinue', 'endSessions',
  'connectionStatus', 'getParameter', 'killCursors', 'getMore', 'logout',
  // Ending a transaction writes nothing the user was not already allowed to write.
  'commitTransaction', 'abortTransaction',
]);
const READ_COMMANDS = new Set(['find', 'count', 'distinct', 'aggregate', 'listCollections', 'listIndexes']);
const WRITE_COMMANDS = new Set(['insert', 'update', 'delete', 'findAndModify', 'findandmodify', 'create', 'createIndexes', 'dropIndexes', 'drop']);
const USER_COMMANDS = new Set(['createUser', 'updateUser', 'dropUser', 'usersInfo']);
/** Commands only `root` may run (cluster-wide or test hooks). */
const ROOT_COMMANDS = new Set(['dropDatabase', 'listDatabases', 'configureFailPoint']);

/** The users a server knows, with their SCRAM keys and roles. */
export class UserStore {
  private readonly users = new Map<string, UserRecord>();

  public get size(): number { return this.users.size; }

  public get(db: string, user: string): UserRecord | undefined {
    return this.users.get(`${db}.${user}`);
  }

  /** The live record of an authenticated user (undefined once the user was dropped). */
  public current(user: UserRecord): UserRecord | undefined {
    return this.get(user.db, user.user);
  }

  public create(db: string, user: string, password: string, roles: RoleGrant[]): void {
    if (this.get(db, user)) throw new CommandError(51003, 'Location51003', `User "${user}@${db}" already exists`);
    this.users.set(`${db}.${user}`, { user, db, roles, keys: deriveKeys(user, password) });
  }

  public update(db: string, user: string, changes: { password?: string; roles?: RoleGrant[] }): void {
    const existing = this.get(db, user);
    if (!existing) throw userNotFound(user, db);
    this.users.set(`${db}.${user}`, {
      user,
      db,
      roles: changes.roles ?? existing.roles,
      keys: changes.password === undefined ? existing.keys : deriveKeys(user, changes.password),
    });
  }

  public drop(db: string, user: string): void {
    if (!this.users.delete(`${db}.${user}`)) throw userNotFound(user, db);
  }

  public list(db?: string): UserRecord[] {
    return [...this.users.values()].filter((u) => db === undefined || u.db === db);
  }

  // -------------------------------------------------------------- commands

  /** `createUser` / `updateUser` / `dropUser` / `usersInfo`, run on database `db`. */
  public command(name: string, cmd: Doc, db: string): Doc {
    switch (name) {
      case 'createUser': {
        const user = requireName(cmd.createUser, 'createUser');
        if (typeof cmd.pwd !== 'string' || cmd.pwd === '') throw new CommandError(2, 'BadValue', 'Must provide a \'pwd\' field for all user documents');
        this.create(db, user, cmd.pwd, parseRoles(cmd.roles, db));
        return { ok: 1 };
      }
      case 'updateUser': {
        const user = requireName(cmd.updateUser, 'updateUser');
        if (cmd.pwd === undefined && cmd.roles === undefined) throw new CommandError(2, 'BadValue', 'Must specify at least one field to update in updateUser');
        if (cmd.pwd !== undefined && (typeof cmd.pwd !== 'string' || cmd.pwd === '')) throw new CommandError(2, 'BadValue', 'pwd must be a non-empty string');
        this.update(db, user, { password: cmd.pwd, roles: cmd.roles === undefined ? undefined : parseRoles(cmd.roles, db) });
        return { ok: 1 };
      }
      case 'dropUser':
        this.drop(db, requireName(cmd.dropUser, 'dropUser'));
        return { ok: 1 };
      case 'usersInfo': {
        const wanted = typeof cmd.usersInfo === 'string' ? cmd.usersInfo : (cmd.usersInfo as Doc | undefined)?.user;
        const users = this.list(db).filter((u) => wanted === undefined || u.user === wanted || cmd.usersInfo === 1);
        return {
          users: users.map((u) => ({ _id: `${u.db}.${u.user}`, user: u.user, db: u.db, roles: u.roles.map((r) => ({ ...r })), mechanisms: [...SCRAM_MECHANISMS] })),
          ok: 1,
        };
      }
      default:
        throw new CommandError(59, 'CommandNotFound', `no such command: '${name}'`);
    }
  }

  // -------------------------------------------------------------- SCRAM (RFC 5802 / 7677)

  /** Mechanisms offered in `hello` for `saslSupportedMechs: "<db>.<user>"`. */
  public mechanismsFor(qualified: unknown): ScramMechanism[] | undefined {
    if (typeof qualified !== 'string') return undefined;
    const dot = qualified.indexOf('.');
    return dot > 0 && this.get(qualified.slice(0, dot), qualified.slice(dot + 1)) ? [...SCRAM_MECHANISMS] : undefined;
  }

  public saslStart(cmd: Doc, db: string): { reply: Doc; state: ScramState } {
    const mechanism = cmd.mechanism as ScramMechanism;
    if (!SCRAM_MECHANISMS.includes(mechanism)) {
      throw new CommandError(334, 'MechanismUnavailable', `Received authentication for mechanism ${String(cmd.mechanism)} which is not enabled`);
    }
    const first = payloadString(cmd.payload);
    if (!first.startsWith('n,,')) throw authFailed(); // no channel binding
    const clientFirstBare = first.slice(3);
    const attrs = parseScram(clientFirstBare);
    const name = (attrs.n ?? '').replace(/=2C/g, ',').replace(/=3D/g, '=');
    const user = this.get(db, name);
    if (!user || !attrs.r) throw authFailed();
    const keys = user.keys[mechanism];
    const nonce = attrs.r + crypto.randomBytes(24).toString('base64');
    const serverFirst = `r=${nonce},s=${keys.salt.toString('base64')},i=${SCRAM_ITERATIONS}`;
    return {
      reply: { conversationId: 1, done: false, payload: new Binary(Buffer.from(serverFirst)), ok: 1 },
      state: { mechanism, user, clientFirstBare, serverFirst, nonce, skipEmptyExchange: !!cmd.options?.skipEmptyExchange, finished: false },
    };
  }

  /** Checks the client proof; returns the reply and, when the proof is right, the user now authenticated. */
  public saslContinue(cmd: Doc, s: ScramState | undefined): { reply: Doc; user?: UserRecord } {
    if (!s) throw authFailed();
    if (s.finished) return { reply: { conversationId: 1, done: true, payload: new Binary(Buffer.alloc(0)), ok: 1 } };
    // The keys as they are now: a password changed between the two steps fails the proof.
    const user = this.current(s.user);
    if (!user) throw authFailed();
    const keys = user.keys[s.mechanism];
    const hash = HASHES[s.mechanism];
    const final = payloadString(cmd.payload);
    const attrs = parseScram(final);
    const proofAt = final.lastIndexOf(',p=');
    if (attrs.r !== s.nonce || proofAt < 0) throw authFailed();
    const authMessage = `${s.clientFirstBare},${s.serverFirst},${final.slice(0, proofAt)}`;
    // ClientProof = ClientKey XOR HMAC(StoredKey, AuthMessage); recover ClientKey and check its hash.
    const signature = hmac(hash, keys.storedKey, authMessage);
    const proof = Buffer.from(attrs.p ?? '', 'base64');
    if (proof.length !== signature.length) throw authFailed();
    const clientKey = Buffer.from(proof.map((b, i) => b ^ signature[i]));
    if (!crypto.timingSafeEqual(digest(hash, clientKey), keys.storedKey)) throw authFailed();
    s.finished = true;
    const serverSignature = hmac(hash, keys.serverKey, authMessage).toString('base64');
    return { reply: { conversationId: 1, done: s.skipEmptyExchange, payload: new Binary(Buffer.from(`v=${serverSignature}`)), ok: 1 }, user };
  }
}

// ---------------------------------------------------------------- authorization

/**
 * Throws `13 Unauthorized` unless `user`'s roles allow command `name` on
 * database `db`. `user` undefined: not authenticated (only the handshake and
 * authentication commands are allowed; the caller checks those first).
 */
export function authorize(user: UserRecord | undefined, name: string, db: string): void {
  if (OPEN_COMMANDS.has(name)) return;
  if (user && allows(user.roles, name, db)) return;
  if (!user) throw new CommandError(13, 'Unauthorized', `Command ${name} requires authentication`);
  throw new CommandError(13, 'Unauthorized', `not authorized on ${db} to execute command { ${name} }`);
}

function allows(roles: RoleGrant[], name: string, db: string): boolean {
  return roles.some(({ role, db: on }) => {
    if (role === 'root' && on === 'admin') return true;
    const anyDb = on === 'admin' && CLUSTER_ROLES.has(role);
    const here = on === db && db !== 'admin';
    if (ROOT_COMMANDS.has(name)) return false;
    if (USER_COMMANDS.has(name)) return (anyDb && role === 'userAdminAnyDatabase') || (on === db && (role === 'userAdmin' || role === 'dbOwner'));
    if (READ_COMMANDS.has(name)) {
      return (anyDb && (role === 'readWriteAnyDatabase' || role === 'readAnyDatabase')) || (here && role !== 'userAdmin');
    }
    if (WRITE_COMMANDS.has(name)) {
      return (anyDb && role === 'readWriteAnyDatabase') || (here && (role === 'readWrite' || role === 'dbOwner'));
    }
    return false;
  });
}

/** `roles: ["readWrite", {role: "read", db: "other"}]`; a bare name applies to the command's database. */
function parseRoles(raw: unknown, db: string): RoleGrant[] {
  if (!Array.isArray(raw)) throw new CommandError(2, 'BadValue', '"roles" field must be an array');
  return raw.map((r) => {
    const grant = typeof r === 'string' ? { role: r, db } : { role: String((r as Doc)?.role), db: String((r as Doc)?.db) };
    const known = grant.db === 'admin' ? CLUSTER_ROLES.has(grant.role) || DATABASE_ROLES.has(grant.role) : DATABASE_ROLES.has(grant.role);
    if (!known) throw new CommandError(31, 'RoleNotFound', `Could not find role: ${grant.role}@${grant.db}`);
    return grant;
  });
}

function requireName(v: unknown, field: string): string {
  if (typeof v !== 'string' || v === '') throw new CommandError(2, 'BadValue', `"${field}" must be a non-empty string`);
  return v;
}

const userNotFound = (user: string, db: string) => new CommandError(11, 'UserNotFound', `Could not find user "${user}" for db "${db}"`);

// ---------------------------------------------------------------- SCRAM helpers

const HASHES: Record<ScramMechanism, 'sha1' | 'sha256'> = { 'SCRAM-SHA-1': 'sha1', 'SCRAM-SHA-256': 'sha256' };

/** SCRAM keys for both mechanisms, each with its own salt. */
function deriveKeys(user: string, password: string): Record<ScramMechanism, ScramKeys> {
  // SCRAM-SHA-1 in MongoDB salts the legacy digest of the password, not the password itself.
  const sha1Password = crypto.createHash('md5').update(`${user}:mongo:${password}`).digest('hex');
  return {
    'SCRAM-SHA-1': keysFor('sha1', sha1Password, 20),
    // SASLprep changes only non-ASCII input; test passwords are ASCII.
    'SCRAM-SHA-256': keysFor('sha256', password, 32),
  };
}

function keysFor(hash: 'sha1' | 'sha256', password: string, length: number): ScramKeys {
  const salt = crypto.randomBytes(16);
  const salted = crypto.pbkdf2Sync(password, salt, SCRAM_ITERATIONS, length, hash);
  return { salt, storedKey: digest(hash, hmac(hash, salted, 'Client Key')), serverKey: hmac(hash, salted, 'Server Key') };
}

function hmac(hash: string, key: Buffer, text: string): Buffer {
  return crypto.createHmac(hash, key).update(text).digest();
}

function digest(hash: string, data: Buffer): Buffer {
  return crypto.createHash(hash).update(data).digest();
}

function payloadString(p: unknown): string {
  if (p instanceof Binary) return Buffer.from(p.buffer.subarray(0, p.position)).toString('utf8');
  if (p instanceof Uint8Array) return Buffer.from(p).toString('utf8');
  return typeof p === 'string' ? p : '';
}

function parseScram(msg: string): Record<string, string> {
  const out: Record<string, string> = {};
  for (const part of msg.split(',')) {
    const eq = part.indexOf('=');
    if (eq > 0) out[part.slice(0, eq)] = part.slice(eq + 1);
  }
  return out;
}
