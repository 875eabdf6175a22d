import type { BackendContract, EnvironmentMap } from './private/backend-contract';
import { FUNCTION_TIMEOUT_MARGIN_MS } from './timeouts';

/**
 * The synth-time problem, if any, with a store's worst-case answer time
 * (its contract's `worstCase`, from its function's environment) against the
 * function timeout: a store must answer (503 at worst) before its function
 * times out, since a Lambda timeout reaches the client as API Gateway's 502.
 * `timeoutMs` undefined (a token) or an environment holding tokens: not
 * checkable, no problem.
 */
export function worstCaseProblem(
  backend: Pick<BackendContract, 'worstCase'>, environment: EnvironmentMap, timeoutMs: number | undefined,
): string | undefined {
  if (timeoutMs === undefined || !Number.isFinite(timeoutMs)) return undefined;
  const worst = backend.worstCase(environment);
  if (!worst || worst.totalMs + FUNCTION_TIMEOUT_MARGIN_MS <= timeoutMs) return undefined;
  const parts = Object.entries(worst.parts).map(([name, ms]) => `${name} ${ms} ms`).join(' + ');
  return `the store's worst-case answer time is ${worst.totalMs} ms (${parts}); with a ${FUNCTION_TIMEOUT_MARGIN_MS} ms margin `
    + `it exceeds the function timeout of ${timeoutMs} ms, so a slow datastore would reach clients as a 502 instead of a 503. `
    + 'Raise `timeout` (at most 25 s) or lower the store\'s timeouts.';
}
