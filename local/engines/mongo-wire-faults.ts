/**
 * Fault injection for the in-process MongoDB-wire test server, shaped like
 * MongoDB's own `failCommand` fail point (a test-only server command):
 *
 * ```js
 * db.adminCommand({configureFailPoint: 'failCommand', mode: {times: 1},
 *   data: {failCommands: ['findAndModify'], errorCode: 112, errorLabels: ['TransientTransactionError']}})
 * ```
 *
 * - `errorCode` (+ `errorLabels`): the command is not run; the reply is
 *   `{ok: 0, code, codeName, errmsg, errorLabels}`.
 * - `closeConnection`: the command is not run; the server closes the socket
 *   without a reply (the driver sees a network error).
 * - `writeConcernError` (`{code, errmsg}`): the command runs and is applied;
 *   its reply carries that `writeConcernError` (the client cannot tell
 *   whether its write will last: a commit whose outcome is unknown).
 * - `afterRun` + `closeConnection` (not in MongoDB's fail point): the
 *   command runs and is applied, then the socket closes without a reply:
 *   a reply lost on the way back.
 * - `blockConnection` + `blockTimeMS`: the reply is held back for that long;
 *   the command is then run normally (so a client that gave up waiting
 *   never learns that its write was applied: the ambiguous case), unless
 *   `errorCode` or `closeConnection` is set as well.
 *
 * `mode` is `'alwaysOn'`, `'off'` or `{times: n}`. The same fail point can be
 * set from a test without a client (`MongoWireServer.failCommand`).
 */
import { Document } from 'bson';
import { CommandError } from './mongo-wire-auth';

type Doc = Document;

export interface FailCommandOptions {
  /** Commands the fail point applies to (the driver's command names, e.g. `findAndModify`). */
  readonly failCommands: readonly string[];
  /**
   * Only commands on these collections (the command's target, e.g. the
   * keys collection of `findAndModify: 'counters_keys'`). Not in MongoDB's
   * fail point: it lets a test fail one step of a transaction that sends the
   * same command to two collections. Unset: any target.
   */
  readonly collections?: readonly string[];
  /** Reply with this error code instead of running the command. */
  readonly errorCode?: number;
  /** Labels attached to that error reply (e.g. `TransientTransactionError`). */
  readonly errorLabels?: readonly string[];
  /** Close the socket without replying. */
  readonly closeConnection?: boolean;
  /** Run the command first, then close the socket (with `closeConnection`; not in MongoDB). */
  readonly afterRun?: boolean;
  /** Run the command, then attach this to its reply. */
  readonly writeConcernError?: { readonly code: number; readonly errmsg?: string };
  /** Hold the reply back for `blockTimeMS`. */
  readonly blockConnection?: boolean;
  readonly blockTimeMS?: number;
  /** How many matching commands fail; unset: until switched off. */
  readonly times?: number;
}

/** What the server does with one command. */
export type FaultAction =
  | { readonly kind: 'none' }
  | { readonly kind: 'error'; readonly error: CommandError; readonly delayMs: number }
  | { readonly kind: 'close'; readonly delayMs: number }
  | { readonly kind: 'delay'; readonly delayMs: number }
  /** Run the command, then close the socket (`reply` undefined) or send its reply with `reply` merged in. */
  | { readonly kind: 'after'; readonly delayMs: number; readonly reply?: Document };

/** Code names the server uses for injected codes (MongoDB's error_codes.yml). */
const CODE_NAMES: Record<number, string> = {
  6: 'HostUnreachable',
  7: 'HostNotFound',
  11: 'UserNotFound',
  13: 'Unauthorized',
  18: 'AuthenticationFailed',
  50: 'MaxTimeMSExpired',
  64: 'WriteConcernFailed',
  89: 'NetworkTimeout',
  91: 'ShutdownInProgress',
  112: 'WriteConflict',
  189: 'PrimarySteppedDown',
  225: 'TransactionTooOld',
  251: 'NoSuchTransaction',
  263: 'OperationNotSupportedInTransaction',
  262: 'ExceededTimeLimit',
  10107: 'NotWritablePrimary',
  11600: 'InterruptedAtShutdown',
  11602: 'InterruptedDueToReplStateChange',
  13435: 'NotPrimaryNoSecondaryOk',
};

/** The `failCommand` fail point of one server. */
export class FailPoint {
  private active?: FailCommandOptions & { remaining: number };
  /** How many commands the fail point has hit since it was last set. */
  public hits = 0;

  public set(options: FailCommandOptions | undefined): void {
    this.hits = 0;
    this.active = options ? { ...options, remaining: options.times ?? Number.POSITIVE_INFINITY } : undefined;
  }

  /** `configureFailPoint` command (MongoDB's shape). */
  public configure(cmd: Doc): Doc {
    if (cmd.configureFailPoint !== 'failCommand') {
      throw new CommandError(2, 'BadValue', `Cannot find failpoint with name: ${String(cmd.configureFailPoint)}`);
    }
    const mode = cmd.mode;
    if (mode === 'off') {
      this.set(undefined);
      return { count: 0, ok: 1 };
    }
    const data = (cmd.data ?? {}) as Doc;
    if (!Array.isArray(data.failCommands) || !data.failCommands.length) throw new CommandError(2, 'BadValue', 'data.failCommands must be a non-empty array');
    let times: number | undefined;
    if (mode === 'alwaysOn') times = undefined;
    else if (mode && typeof mode === 'object' && Number.isInteger(Number(mode.times)) && Number(mode.times) > 0) times = Number(mode.times);
    else throw new CommandError(2, 'BadValue', 'mode must be "alwaysOn", "off" or {times: n}');
    this.set({
      failCommands: data.failCommands.map(String),
      errorCode: data.errorCode === undefined ? undefined : Number(data.errorCode),
      errorLabels: Array.isArray(data.errorLabels) ? data.errorLabels.map(String) : undefined,
      closeConnection: !!data.closeConnection,
      afterRun: !!data.afterRun,
      writeConcernError: isWriteConcernError(data.writeConcernError)
        ? { code: Number(data.writeConcernError.code), errmsg: data.writeConcernError.errmsg }
        : undefined,
      blockConnection: !!data.blockConnection,
      blockTimeMS: data.blockTimeMS === undefined ? undefined : Number(data.blockTimeMS),
      times,
    });
    return { count: 0, ok: 1 };
  }

  /** What to do with command `name` on `collection` (consumes one of the fail point's `times`). */
  public take(name: string, collection?: string): FaultAction {
    const fp = this.active;
    if (!fp || fp.remaining <= 0 || !fp.failCommands.includes(name)) return { kind: 'none' };
    if (fp.collections && (collection === undefined || !fp.collections.includes(collection))) return { kind: 'none' };
    fp.remaining--;
    this.hits++;
    const delayMs = fp.blockConnection ? Math.max(0, fp.blockTimeMS ?? 0) : 0;
    if (fp.closeConnection && fp.afterRun) return { kind: 'after', delayMs };
    if (fp.closeConnection) return { kind: 'close', delayMs };
    if (fp.writeConcernError) {
      const { code, errmsg } = fp.writeConcernError;
      return { kind: 'after', delayMs, reply: { writeConcernError: { code, codeName: CODE_NAMES[code] ?? `Location${code}`, errmsg: errmsg ?? `Failing write concern of ${name} via 'failCommand' failpoint` } } };
    }
    if (fp.errorCode !== undefined) {
      const codeName = CODE_NAMES[fp.errorCode] ?? `Location${fp.errorCode}`;
      const extra = fp.errorLabels?.length ? { errorLabels: [...fp.errorLabels] } : {};
      return { kind: 'error', error: new CommandError(fp.errorCode, codeName, `Failing command ${name} via 'failCommand' failpoint`, extra), delayMs };
    }
    return delayMs > 0 ? { kind: 'delay', delayMs } : { kind: 'none' };
  }
}

function isWriteConcernError(v: unknown): v is { code: number; errmsg?: string } {
  return !!v && typeof v === 'object' && Number.isInteger(Number((v as Doc).code));
}
