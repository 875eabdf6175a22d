/**
 * Builds the example app (examples/) in the test process, on the library's
 * sources. Shared by test/constructs/examples.test.ts and test/cdk-nag.test.ts.
 */
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import { App } from 'aws-cdk-lib';
import type { AtomicCounterExampleStack as StackType } from '../../examples/lib/atomic-counter-example-stack';
import type * as ConfigModule from '../../examples/lib/config';

// The example imports the library by its package name (examples/package.json:
// "file:.."), which resolves to the compiled lib/. Here it is the source under
// test. A virtual mock of a bare name applies to every importer, whatever its
// directory. aws-cdk-lib, constructs and cdk-nag resolve to the root's copies
// from examples/ too (examples/ installs none of them), so there is one copy.
jest.mock('cdk-atomic-counter', () => jest.requireActual('../../src'), { virtual: true });

// eslint-disable-next-line @typescript-eslint/no-require-imports
export const { AtomicCounterExampleStack } = require('../../examples/lib/atomic-counter-example-stack') as { AtomicCounterExampleStack: typeof StackType };
// eslint-disable-next-line @typescript-eslint/no-require-imports
export const config = require('../../examples/lib/config') as typeof ConfigModule;

/**
 * Distinctive fake credentials: written to the credential files of the test
 * config, and searched for in the synthesized template.
 */
export const FAKE_CREDENTIALS = {
  momentoApiKey: 'fake-momento-api-key-5f0c1b7e9a',
  momentoRefreshToken: 'fake-momento-refresh-token-8d2e4a',
  tidbPassword: 'fake-tidb-password-3c9b7f1d',
  tidbUser: 'fake_tidb_user_71ac',
} as const;

/** The test config: every backend configured, credentials by secret name, and the JSON files also present. */
export const FULL_DOTENV = [
  'USE_CONDITIONAL_WRITES=true',
  'MAX_COUNTER_VALUE=25',
  'MOMENTO_CACHE_NAME=counters-under-test',
  'MOMENTO_SECRET_NAME=atomic-counter/momento',
  'TIDB_SECRET_NAME=atomic-counter/tidb',
].join('\n');

/** A temporary example directory holding `.env` and (unless told otherwise) both credential files. */
export function exampleDir(dotenv: string, files: { momento?: unknown; tidb?: unknown } = {}): string {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'atomic-counter-example-'));
  fs.writeFileSync(path.join(dir, '.env'), dotenv);
  const momento = 'momento' in files ? files.momento : {
    apiKey: FAKE_CREDENTIALS.momentoApiKey,
    refreshToken: FAKE_CREDENTIALS.momentoRefreshToken,
    validUntil: 1900000000,
    restEndpoint: 'api.cache.cell-us-east-1-1.prod.a.momentohq.com',
  };
  const tidb = 'tidb' in files ? files.tidb : {
    host: 'gateway01.us-east-1.prod.aws.tidbcloud.com', port: 4000, user: FAKE_CREDENTIALS.tidbUser, pwd: FAKE_CREDENTIALS.tidbPassword, db: 'test',
  };
  if (momento !== undefined) fs.writeFileSync(path.join(dir, config.CREDENTIAL_FILES.momento), typeof momento === 'string' ? momento : JSON.stringify(momento));
  if (tidb !== undefined) fs.writeFileSync(path.join(dir, config.CREDENTIAL_FILES.tidb), typeof tidb === 'string' ? tidb : JSON.stringify(tidb));
  return dir;
}

/** The example stack as bin/ builds it, from a directory, context and (process) environment. */
export function buildExample(dir: string, context: Record<string, unknown> = {}, env: Record<string, string> = {}): { app: App; stack: StackType } {
  const app = new App({ context });
  const exampleConfig = config.loadExampleConfig({ dir, env, context: (key) => app.node.tryGetContext(key) });
  const stack = new AtomicCounterExampleStack(app, exampleConfig.stackName, { config: exampleConfig });
  return { app, stack };
}

/**
 * The variants CI synthesizes (.ci/run) and the tests check: every backend,
 * then each backend left out in turn (BACKENDS).
 */
export const EXAMPLE_VARIANTS: ReadonlyArray<{ readonly name: string; readonly backends: readonly string[] }> = [
  { name: 'all', backends: config.BACKEND_NAMES },
  ...config.BACKEND_NAMES.map((out) => ({ name: `without-${out}`, backends: config.BACKEND_NAMES.filter((b) => b !== out) })),
];
