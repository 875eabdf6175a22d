import * as fs from 'fs';
import * as path from 'path';
import { ALL_BACKEND_CONTRACTS } from '../../src/private/backends';

/**
 * The bundle entries named in the backends' contracts (`bundles`, from each
 * `<B>_BUNDLES`) and the `*.lambda.ts` entries on disk (which .projenrc.ts
 * bundles) are the same set.
 */
const SRC = path.join(__dirname, '..', '..', 'src');

function entriesOnDisk(): string[] {
  const backends = path.join(SRC, 'backends');
  return fs.readdirSync(backends).flatMap((backend) => {
    const runtime = path.join(backends, backend, 'runtime');
    if (!fs.existsSync(runtime)) return [];
    return fs.readdirSync(runtime)
      .filter((file) => file.endsWith('.lambda.ts'))
      .map((file) => `backends/${backend}/runtime/${file.slice(0, -'.ts'.length)}`);
  }).sort();
}

const named = ALL_BACKEND_CONTRACTS.flatMap(({ name: backend, bundles }) =>
  Object.values(bundles).map((entry) => ({ backend, entry })));

test('every backend folder has a contract, and every contract its folder', () => {
  const folders = fs.readdirSync(path.join(SRC, 'backends'), { withFileTypes: true }).filter((d) => d.isDirectory()).map((d) => d.name).sort();
  expect(ALL_BACKEND_CONTRACTS.map((c) => c.name).sort()).toEqual(folders);
});

test.each(named)('$backend bundle $entry names an entry on disk, in its own backend folder', ({ backend, entry }) => {
  expect(fs.existsSync(path.join(SRC, `${entry}.ts`))).toBe(true);
  expect(entry.startsWith(`backends/${backend}/runtime/`)).toBe(true);
});

test('every entry on disk is named by its backend\'s contract', () => {
  expect(named.map(({ entry }) => entry).sort()).toEqual(entriesOnDisk());
});

test('projen bundles exactly the entries on disk', () => {
  const tasks = JSON.parse(fs.readFileSync(path.join(__dirname, '..', '..', '.projen', 'tasks.json'), 'utf8')).tasks as Record<string, unknown>;
  const bundled = Object.keys(tasks)
    .filter((name) => name.startsWith('bundle:') && !name.endsWith(':watch'))
    .map((name) => name.slice('bundle:'.length))
    .sort();
  expect(bundled).toEqual(entriesOnDisk());
});
