import * as fs from 'fs';
import * as path from 'path';
import { DOCDB_BUNDLES } from '../../src/backends/docdb/docdb-env';
import { DYNAMO_BUNDLES } from '../../src/backends/dynamo/dynamo-env';
import { MOMENTO_BUNDLES } from '../../src/backends/momento/momento-env';
import { REDIS_BUNDLES } from '../../src/backends/redis/redis-env';
import { TIDB_BUNDLES } from '../../src/backends/tidb/tidb-env';

/**
 * The bundle entries named in the contract files (`<B>_BUNDLES`) and the
 * `*.lambda.ts` entries on disk (which .projenrc.ts bundles) are the same set.
 */
const SRC = path.join(__dirname, '..', '..', 'src');
const BUNDLES: Record<string, Record<string, string>> = {
  docdb: DOCDB_BUNDLES,
  dynamo: DYNAMO_BUNDLES,
  momento: MOMENTO_BUNDLES,
  redis: REDIS_BUNDLES,
  tidb: TIDB_BUNDLES,
};

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

const named = Object.entries(BUNDLES).flatMap(([backend, bundles]) =>
  Object.values(bundles).map((entry) => ({ backend, entry })));

test('every backend folder has a bundle constant', () => {
  const folders = fs.readdirSync(path.join(SRC, 'backends')).sort();
  expect(Object.keys(BUNDLES).sort()).toEqual(folders);
});

test.each(named)('$backend bundle $entry names an entry on disk, in its own backend folder', ({ backend, entry }) => {
  expect(fs.existsSync(path.join(SRC, `${entry}.ts`))).toBe(true);
  expect(entry.startsWith(`backends/${backend}/runtime/`)).toBe(true);
});

test('every entry on disk has a bundle constant', () => {
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
