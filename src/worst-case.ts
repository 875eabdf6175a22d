import { docdbWorstCase } from './backends/docdb/docdb-env';
import { dynamoWorstCase } from './backends/dynamo/dynamo-env';
import { momentoWorstCase } from './backends/momento/momento-env';
import { redisWorstCase } from './backends/redis/redis-env';
import { tidbWorstCase } from './backends/tidb/tidb-env';
import { FUNCTION_TIMEOUT_MARGIN_MS, WorstCase } from './timeouts';

type Env = Readonly<Record<string, string | undefined>>;

/** Each backend's worst-case answer time, from its function's environment (its `<backend>-env.ts`). */
const WORST_CASES: Readonly<Record<string, (env: Env) => WorstCase | undefined>> = {
  dynamo: dynamoWorstCase,
  redis: redisWorstCase,
  momento: momentoWorstCase,
  docdb: docdbWorstCase,
  tidb: tidbWorstCase,
};

/**
 * Synth-time check that a store answers (503 at worst) before its function
 * times out: a Lambda timeout reaches the client as API Gateway's 502.
 * `timeoutSeconds` undefined (a token) or an environment holding tokens:
 * not checkable, nothing happens. Returns the worst case it checked.
 */
export function validateWorstCase(backend: string, environment: Env, timeoutSeconds: number | undefined): WorstCase | undefined {
  const compute = WORST_CASES[backend];
  if (!compute || timeoutSeconds === undefined || !Number.isFinite(timeoutSeconds)) return undefined;
  const worst = compute(environment);
  if (!worst) return undefined;
  const timeoutMs = timeoutSeconds * 1000;
  if (worst.totalMs + FUNCTION_TIMEOUT_MARGIN_MS <= timeoutMs) return worst;
  const parts = Object.entries(worst.parts).map(([name, ms]) => `${name} ${ms} ms`).join(' + ');
  const message = `${backend}: the store's worst-case answer time is ${worst.totalMs} ms (${parts}); with a ${FUNCTION_TIMEOUT_MARGIN_MS} ms margin `
    + `it exceeds the function timeout of ${timeoutMs} ms, so a slow datastore would reach clients as a 502 instead of a 503. `
    + 'Raise `timeout` (at most 25 s) or lower the store\'s timeouts.';
  throw new Error(message);
}
