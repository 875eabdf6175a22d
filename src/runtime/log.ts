import { COMMON_ENV } from '../counter-env';

/**
 * The one structured log line per request (docs/architecture.md, "The contracts"). The metric filter
 * of each backend reads `$.counter` from it, so `counter` is only present
 * when the request produced or read a value.
 */
export interface RequestLogLine {
  level: 'INFO' | 'WARN' | 'ERROR';
  backend: string;
  id?: string;
  operation?: string;
  counter?: number;
  /** The step of an increment (`?by=N`; 1 when not given). */
  by?: number;
  /** A sharded counter: the slot that took the change (no `counter`: no single write knows the total). */
  shard?: number;
  /** A keyed increment: true when the key had been applied before (nothing written now). */
  replayed?: boolean;
  accepted: boolean;
  statusCode: number;
  code?: string;
  durationMs: number;
  /** Error class and message for 5xx answers (never a credential). */
  error?: string;
  /** The function's deployment (`COUNTER_DEPLOYMENT`): the metric's `Deployment` dimension. */
  deployment?: string;
  /** The datastore rejected the credentials: the secret was re-read and the request ran again on a fresh store. */
  credentialsRefreshed?: boolean;
}

export type LogSink = (line: string) => void;

/**
 * Lines go to stdout with `process.stdout.write`, not `console.log`: Lambda's
 * text log format prefixes console output with a timestamp and request id,
 * which would stop CloudWatch's JSON metric filter (`$.counter`) from parsing
 * the line. `ATOMIC_COUNTER_LOG=off` silences them (local load runs).
 */
const stdoutSink: LogSink = (line) => {
  process.stdout.write(line + '\n');
};
const silent: LogSink = () => undefined;
let sink: LogSink = process.env.ATOMIC_COUNTER_LOG === 'off' ? silent : stdoutSink;

/** Replaces where log lines go (unit tests capture them). Returns the previous sink. */
export function setLogSink(next: LogSink): LogSink {
  const previous = sink;
  sink = next;
  return previous;
}

const deployment = process.env[COMMON_ENV.DEPLOYMENT] || undefined;

/**
 * A warning line outside the request lines (a store's own observation, e.g.
 * a replaced idle connection). It has no `counter`, so the metric filter
 * ignores it.
 */
export function writeWarning(backend: string, message: string): void {
  if (sink === silent) return;
  sink(JSON.stringify({ level: 'WARN', backend, message }));
}

/** Writes the line; adds the deployment to `entry` (the caller's own object). */
export function writeLogLine(entry: RequestLogLine): void {
  // Per request: no line to build when nothing will be written.
  if (sink === silent) return;
  if (deployment) entry.deployment = deployment;
  sink(JSON.stringify(entry));
}
