/**
 * The published API is exactly this list. `src/index.ts` exports by name, and
 * whatever it exports reaches every jsii language and API.md: plumbing
 * (function and setup-resource options, placement, defaults, helpers) stays
 * in src/private/ and the other unexported modules. Adding a public type is
 * a decision: add it here in the same change.
 */
import * as fs from 'fs';
import * as path from 'path';
import * as ts from 'typescript';

const ROOT = path.join(__dirname, '..', '..');
const ENTRY = path.join(ROOT, 'src', 'index.ts');

/** Everything a user of any jsii language sees. */
const PUBLIC_API = [
  // The API and its dashboard
  'AtomicCounterApi', 'AtomicCounterApiProps', 'UsagePlanLimits',
  'AtomicCounterDashboard', 'AtomicCounterDashboardProps',
  // What every counter shares
  'ICounter', 'CounterBase', 'CounterOptions', 'ExistingEndpoint', 'FunctionPlacementOptions',
  // The five backends
  'DynamoCounter', 'DynamoCounterProps',
  'RedisCounter', 'RedisCounterProps', 'RedisEngine',
  'MomentoCounter', 'MomentoCounterProps',
  'DocDbCounter', 'DocDbCounterProps',
  'TiDbCounter', 'TiDbCounterProps',
].sort();

/** The names `src/index.ts` exports, read with the TypeScript compiler (`export *` resolved too). */
function exportedNames(): string[] {
  const program = ts.createProgram([ENTRY], { target: ts.ScriptTarget.ES2022, module: ts.ModuleKind.CommonJS, strict: true, skipLibCheck: true });
  const checker = program.getTypeChecker();
  const entry = checker.getSymbolAtLocation(program.getSourceFile(ENTRY)!)!;
  return checker.getExportsOfModule(entry).map((s) => s.getName()).sort();
}

test('src/index.ts exports exactly the public API, by name', () => {
  expect(exportedNames()).toEqual(PUBLIC_API);
  // By name: an `export *` would publish whatever a module adds later.
  const source = ts.createSourceFile(ENTRY, fs.readFileSync(ENTRY, 'utf8'), ts.ScriptTarget.ES2022);
  const starExports = source.statements.filter((s) => ts.isExportDeclaration(s) && s.exportClause === undefined);
  expect(starExports.map((s) => s.getText(source))).toEqual([]);
});

// `npx projen compile` (CI runs it before the tests) writes the jsii assembly:
// the types every other language gets. Without one (a bare `jest` run), skip.
const ASSEMBLY = path.join(ROOT, '.jsii');
const assemblyTest = fs.existsSync(ASSEMBLY) ? test : test.skip;
assemblyTest('the jsii assembly (.jsii) holds only the public API', () => {
  const assembly = JSON.parse(fs.readFileSync(ASSEMBLY, 'utf8')) as { name: string; types: Record<string, unknown> };
  const types = Object.keys(assembly.types).map((fqn) => fqn.slice(assembly.name.length + 1)).sort();
  expect(types).toEqual(PUBLIC_API);
});

test('no public member of CounterBase or a counter exposes plumbing', () => {
  const assembly = fs.existsSync(ASSEMBLY) ? JSON.parse(fs.readFileSync(ASSEMBLY, 'utf8')) as {
    types: Record<string, { methods?: { name: string; protected?: boolean }[]; properties?: { name: string; protected?: boolean }[] }>;
  } : undefined;
  if (!assembly) return;
  // Protected members are API too (a subclass sees them); CounterBase is not meant for extension.
  const protectedMembers = Object.entries(assembly.types).flatMap(([fqn, t]) =>
    [...(t.methods ?? []), ...(t.properties ?? [])].filter((m) => m.protected).map((m) => `${fqn}.${m.name}`));
  expect(protectedMembers).toEqual([]);
});
