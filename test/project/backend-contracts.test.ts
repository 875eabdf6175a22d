/**
 * Issue 19, item 9: one place knows the backends. Each backend is one typed
 * contract object (src/backends/<b>/<b>-contract.ts) collected in
 * BACKEND_CONTRACTS (src/private/backends.ts); a backend without a contract,
 * or a contract without its worst case, does not compile, and every counter
 * carries the facts of its own contract.
 */
import * as path from 'path';
import * as ts from 'typescript';
import type { BackendContract } from '../../src/private/backend-contract';
import { ALL_BACKEND_CONTRACTS, BACKEND_CONTRACTS } from '../../src/private/backends';
import { counterMetricNameOf } from '../../src/private/defaults';
import { BACKENDS } from '../../src/runtime/store';
import { CONSTRUCTS } from '../kit/construct-contract';

test('the table holds one contract per backend, keyed by its name, in BACKENDS order', () => {
  expect(Object.keys(BACKEND_CONTRACTS)).toEqual([...BACKENDS]);
  expect(ALL_BACKEND_CONTRACTS.map((c) => c.name)).toEqual([...BACKENDS]);
  for (const [name, contract] of Object.entries(BACKEND_CONTRACTS)) expect(contract.name).toBe(name);
});

test.each(ALL_BACKEND_CONTRACTS.map((c) => [c.name, c] as const))('%s: every field is there, and the worst case of its defaults is known', (_, contract) => {
  expect(contract.metricPrefix).toMatch(/^[A-Z][A-Za-z]*$/);
  expect(contract.bundles.counter).toBe(`backends/${contract.name}/runtime/${contract.name}-counter.lambda`);
  const worst = contract.worstCase({});
  expect(worst?.totalMs).toBeGreaterThan(0);
});

test('metric names: the published ones (README, "Default settings": `<Backend>AtomicCounter`), distinct across backends', () => {
  const names = ALL_BACKEND_CONTRACTS.map(counterMetricNameOf);
  expect(names).toEqual(['DynamoAtomicCounter', 'RedisAtomicCounter', 'MomentoAtomicCounter', 'DocDbAtomicCounter', 'TiDbAtomicCounter']);
  expect(new Set(names).size).toBe(names.length);
});

// What the constructs carry comes from their own contract, not from a lookup by name.
test.each([...BACKENDS])('the %s counter carries its contract\'s name and metric name', (backend) => {
  const contract = BACKEND_CONTRACTS[backend];
  const { counter } = CONSTRUCTS[backend]();
  expect(counter.backend).toBe(contract.name);
  expect(counter.counterMetricName).toBe(counterMetricNameOf(contract));
});

/**
 * Type-checks `source` as if it were a file in test/project/ (so its
 * relative imports resolve as they do here), and returns the compiler's
 * messages for that file only.
 */
function typeErrors(source: string): string[] {
  const fileName = path.join(__dirname, '__contract_probe__.ts');
  const options: ts.CompilerOptions = {
    target: ts.ScriptTarget.ES2022, module: ts.ModuleKind.CommonJS, strict: true, skipLibCheck: true, noEmit: true, types: [],
  };
  const host = ts.createCompilerHost(options);
  const getSourceFile = host.getSourceFile.bind(host);
  host.getSourceFile = (name, version, ...rest) => name === fileName
    ? ts.createSourceFile(name, source, version)
    : getSourceFile(name, version, ...rest);
  const fileExists = host.fileExists.bind(host);
  host.fileExists = (name) => name === fileName || fileExists(name);
  const program = ts.createProgram([fileName], options, host);
  return ts.getPreEmitDiagnostics(program, program.getSourceFile(fileName))
    .map((d) => ts.flattenDiagnosticMessageText(d.messageText, '\n'));
}

describe('the types refuse an incomplete backend', () => {
  const imports = [
    "import type { BackendContract } from '../../src/private/backend-contract';",
    "import type { BackendName } from '../../src/runtime/store';",
    "import { BACKEND_CONTRACTS } from '../../src/private/backends';",
  ].join('\n');

  test('a complete contract compiles (the probe itself is sound)', () => {
    expect(typeErrors(`${imports}
      export const C: BackendContract<'dynamo'> = { ...BACKEND_CONTRACTS.dynamo };
      export const T: { readonly [B in BackendName]: BackendContract<B> } = { ...BACKEND_CONTRACTS };
    `)).toEqual([]);
  });

  test('a contract without its worst case does not compile', () => {
    const errors = typeErrors(`${imports}
      export const C: BackendContract<'dynamo'> = { name: 'dynamo', metricPrefix: 'Dynamo', bundles: { counter: 'x' }, sharded: false };
    `);
    expect(errors.join('\n')).toMatch(/Property 'worstCase' is missing/);
  });

  test('a table without one of the backends does not compile', () => {
    const errors = typeErrors(`${imports}
      const { tidb: _left, ...others } = BACKEND_CONTRACTS;
      export const T: { readonly [B in BackendName]: BackendContract<B> } = others;
    `);
    expect(errors.join('\n')).toMatch(/Property 'tidb' is missing/);
  });

  test('a contract under another backend\'s name does not compile', () => {
    const errors = typeErrors(`${imports}
      export const T: { readonly [B in BackendName]: BackendContract<B> } = { ...BACKEND_CONTRACTS, tidb: BACKEND_CONTRACTS.momento };
    `);
    expect(errors.join('\n')).toMatch(/"momento"' is not assignable to type '"tidb"'/);
  });
});

// The same, for `tsc --noEmit` (CI's typecheck): this line must stay an error.
// @ts-expect-error a contract without `worstCase` is not a BackendContract
const withoutWorstCase: BackendContract<'dynamo'> = { name: 'dynamo', metricPrefix: 'Dynamo', bundles: { counter: 'x' }, sharded: false };
void withoutWorstCase;
