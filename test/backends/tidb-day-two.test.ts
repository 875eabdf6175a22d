/**
 * TiDB (MySQL protocol, the machine's MariaDB), day two: the password of the
 * application user rotated mid-run, on the engine and in the stand-in
 * secret. The user is this file's own; the engine's other users are untouched.
 */
import { Connection, createConnection, RowDataPacket } from 'mysql2/promise';
import { uniqueNamespace } from '../../local/backends/fixture';
import { runTiDbSetup, tidbEnv } from '../../local/backends/tidb';
import { Engine } from '../../local/engines/engine';
import { startFaultProxy } from '../../local/engines/fault-proxy';
import { acquireMysql, mysqlConnectionOptions } from '../../local/engines/mysql';
import { closeContainers, loadBundledHandler } from '../../local/lambda-container';
import { TIDB_BUNDLES, TIDB_ENV } from '../../src/backends/tidb/tidb-env';
import { SECRET_READ_BOUNDS } from '../../src/timeouts';
import { call } from '../kit/conformance';
import { SecretsStandIn, startSecretsStandIn } from '../kit/secrets-stand-in';

const ENTRY = TIDB_BUNDLES.counter;
const ARN = 'arn:aws:secretsmanager:eu-west-1:123456789012:secret:tidb-app-AbCdEf';
const SLACK_MS = 1500;

let engine: Engine;
let root: Connection;
let secrets: SecretsStandIn | undefined;
const users: string[] = [];
/** Databases this file created on the shared server, dropped afterwards. */
const databases: string[] = [];

beforeAll(async () => {
  engine = await acquireMysql();
  root = await createConnection(mysqlConnectionOptions(engine.url));
}, 120_000);
afterAll(async () => {
  // Every container this file loaded holds a pool (two, with the keyed one): closed, or jest cannot exit.
  await closeContainers();
  await secrets?.close();
  for (const u of users) await root.query(`DROP USER IF EXISTS '${u}'@'%'`).catch(() => undefined);
  for (const d of databases) await root.query(`DROP DATABASE IF EXISTS \`${d}\``);
  await root?.end();
  await engine?.stop();
});

/** Kills the sessions of a user (a rotation that retires the old password ends them). */
async function killSessions(user: string): Promise<void> {
  const [rows] = await root.query<RowDataPacket[]>('SELECT ID FROM information_schema.PROCESSLIST WHERE USER = ?', [user]);
  for (const r of rows) await root.query(`KILL ${Number(r.ID)}`).catch(() => undefined);
}

/**
 * The handlers' connect and query timeouts in these tests: the bounds they
 * assert follow from them, and 3 s keeps a warm-up or a reconnect on a
 * machine busy with other work inside them (1 s did not always).
 */
const CLIENT_TIMEOUT_MS = 3000;

test('application password rotated mid-run: the same warm container answers 200 on its next request (one secret re-read), nothing lost, none counted twice', async () => {
  const database = uniqueNamespace('t_tidb_rot');
  databases.push(database);
  await runTiDbSetup(tidbEnv(engine, database), { Database: database });
  const user = uniqueNamespace('rot').slice(0, 32);
  users.push(user);
  await root.query(`CREATE USER '${user}'@'%' IDENTIFIED BY 'first-Password-1'`);
  await root.query(`GRANT SELECT, INSERT, UPDATE ON \`${database}\`.* TO '${user}'@'%'`);
  const { host, port } = mysqlConnectionOptions(engine.url);
  const secret = (password: string) => ({ host, port, user, password, database });
  secrets = await startSecretsStandIn(ARN, secret('first-Password-1'));
  const handler = loadBundledHandler(ENTRY, {
    [TIDB_ENV.SECRET_ARN]: ARN,
    [TIDB_ENV.DATABASE]: database,
    [TIDB_ENV.TLS]: 'false',
    // 3 s: this test is about the rotation, not the bounds; a slow machine must not make a 503.
    [TIDB_ENV.CONNECT_TIMEOUT_MS]: String(CLIENT_TIMEOUT_MS),
    [TIDB_ENV.QUERY_TIMEOUT_MS]: String(CLIENT_TIMEOUT_MS),
    USE_CONDITIONAL_WRITES: 'false',
    ATOMIC_COUNTER_LOG: 'off',
  });
  let ok = 0;
  for (let i = 0; i < 10; i++) expect(await call(handler, 'POST', 'tidb', 'rot')).toMatchObject({ status: 200, body: { counter: ++ok } });
  expect(secrets.reads).toBe(1);

  // The rotation: new password on the engine, old sessions ended, then the secret.
  await root.query(`ALTER USER '${user}'@'%' IDENTIFIED BY 'second-Password-2'`);
  await killSessions(user);
  secrets.setValue(secret('second-Password-2'));
  await new Promise((r) => setTimeout(r, 100));

  const t0 = performance.now();
  const recovered = await call(handler, 'POST', 'tidb', 'rot');
  const ms = performance.now() - t0;
  console.log(`tidb rotation: first request after the rotation answered ${recovered.status} in ${ms.toFixed(1)} ms (secret re-read + new pool)`);
  expect(recovered).toMatchObject({ status: 200, body: { counter: ++ok } });
  expect(ms).toBeLessThan(SECRET_READ_BOUNDS.requestTimeoutMs + 2 * CLIENT_TIMEOUT_MS + SLACK_MS);
  expect(secrets.reads).toBe(2);
  for (let i = 0; i < 10; i++) expect(await call(handler, 'POST', 'tidb', 'rot')).toMatchObject({ status: 200, body: { counter: ++ok } });
  expect(secrets.reads).toBe(2);

  // A wrong password with no re-read allowed yet: 500 (misconfiguration), nothing written.
  await root.query(`ALTER USER '${user}'@'%' IDENTIFIED BY 'third-Password-3'`);
  await killSessions(user);
  await new Promise((r) => setTimeout(r, 100));
  expect(await call(handler, 'POST', 'tidb', 'rot')).toMatchObject({ status: 500, body: { code: 'INTERNAL', error: 'Internal error' } });
  expect(secrets.reads).toBe(2);
  const [rows] = await root.query<RowDataPacket[]>(`SELECT value FROM \`${database}\`.counters WHERE id = 'rot'`);
  expect(Number(rows[0].value)).toBe(ok);
}, 60_000);

test('idle pooled connection dropped silently (frozen container behind a NAT): the first request after a long idle answers 200 within ping + connect + statement, nothing lost', async () => {
  const database = uniqueNamespace('t_tidb_idle');
  databases.push(database);
  await runTiDbSetup(tidbEnv(engine, database), { Database: database });
  const { host, port } = mysqlConnectionOptions(engine.url);
  const proxy = await startFaultProxy({ host, port });
  try {
    const handler = loadBundledHandler(ENTRY, {
      ...tidbEnv({ ...engine, url: engine.url.replace(`${host}:${port}`, proxy.address) }, database),
      [TIDB_ENV.CONNECT_TIMEOUT_MS]: String(CLIENT_TIMEOUT_MS),
      [TIDB_ENV.QUERY_TIMEOUT_MS]: String(CLIENT_TIMEOUT_MS),
      USE_CONDITIONAL_WRITES: 'false',
      ATOMIC_COUNTER_LOG: 'off',
    });
    for (let i = 1; i <= 5; i++) expect((await call(handler, 'POST', 'tidb', 'idle')).body.counter).toBe(i);
    expect(proxy.blackholeExisting()).toBeGreaterThanOrEqual(1);
    // The store pings a pooled connection idle for more than 20 s before using it.
    await new Promise((r) => setTimeout(r, 21_000));
    const t0 = performance.now();
    const first = await call(handler, 'POST', 'tidb', 'idle');
    const ms = performance.now() - t0;
    console.log(`tidb after a silent drop and 21 s idle: answered ${first.status} in ${ms.toFixed(0)} ms (query timeout ${CLIENT_TIMEOUT_MS} ms)`);
    expect(first).toMatchObject({ status: 200, body: { counter: 6 } });
    expect(ms).toBeLessThan(3 * CLIENT_TIMEOUT_MS + SLACK_MS);
    const [rows] = await root.query<RowDataPacket[]>(`SELECT value FROM \`${database}\`.counters WHERE id = 'idle'`);
    expect(Number(rows[0].value)).toBe(6);
  } finally {
    await proxy.close();
  }
}, 60_000);
