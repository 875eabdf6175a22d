/**
 * DocumentDB, day two, through the bundled handlers on a MongoDB-wire server
 * that enforces SCRAM credentials and roles: the application user created by
 * the setup, a password rotated mid-run (engine and secret), transient server
 * errors injected with the `failCommand` fail point, and idle connections
 * dropped silently (a frozen container behind a NAT). Times are printed and
 * asserted against the configured bounds, with slack.
 */
import * as vm from 'vm';
import { MongoClient } from 'mongodb';
import { startFaultProxy } from '../../local/engines/fault-proxy';
import { MongoWireServer } from '../../local/engines/mongo-wire-server';
import { loadBundledHandler, ProxyHandler } from '../../local/lambda-container';
import { DOCDB_BUNDLES, DOCDB_ENV } from '../../src/backends/docdb/docdb-env';
import { ensureCounterCollection } from '../../src/backends/docdb/runtime/docdb-setup';
import { BACKEND_UNAVAILABLE_MESSAGE } from '../../src/runtime/errors';
import { call } from '../kit/conformance';
import { SecretsStandIn, startSecretsStandIn } from '../kit/secrets-stand-in';

const ENTRY = DOCDB_BUNDLES.counter;
const SETUP_ENTRY = DOCDB_BUNDLES.setup;
const APP_ARN = 'arn:aws:secretsmanager:eu-west-1:123456789012:secret:docdb-app-AbCdEf';
const MASTER = { username: 'counteradmin', password: 'm@ster:p?ss#1%' };
/** The counter function's socket timeout in these tests. */
const TIMEOUT_MS = 1000;
/** Scheduling slack on a shared machine: bounds are asserted as bound + SLACK. */
const SLACK_MS = 1500;
/** The stale-connection test's socket timeout: the answer must come well before it (without the fix it is a 503 at this bound). */
const STALE_SOCKET_TIMEOUT_MS = 3000;

type SetupHandler = (event: unknown) => Promise<{ PhysicalResourceId: string; Data?: Record<string, string> }>;

let engine: MongoWireServer;
let master: MongoClient;
let secrets: SecretsStandIn | undefined;
let dbCount = 0;
const freshDb = () => `d2_${++dbCount}`;

beforeAll(async () => {
  engine = await MongoWireServer.start({ ...MASTER });
  master = new MongoClient(engine.uri, { auth: MASTER, authSource: 'admin' });
});
afterEach(async () => {
  engine.failCommand(undefined);
  await secrets?.close();
  secrets = undefined;
});
afterAll(async () => {
  await master?.close();
  await engine?.stop();
});

async function timed<T>(fn: () => Promise<T>): Promise<T & { ms: number }> {
  const t0 = performance.now();
  const answer = await fn();
  return { ...answer, ms: performance.now() - t0 };
}

/** A counter container logging in with the credentials in the stand-in secret (the AWS path: host, port, secret ARN). */
function counterContainer(database: string, extra: Record<string, string> = {}): ProxyHandler {
  return loadBundledHandler(ENTRY, {
    [DOCDB_ENV.HOST]: '127.0.0.1',
    [DOCDB_ENV.PORT]: String(engine.port),
    [DOCDB_ENV.TLS]: 'false',
    [DOCDB_ENV.SECRET_ARN]: APP_ARN,
    [DOCDB_ENV.DATABASE]: database,
    [DOCDB_ENV.SERVER_SELECTION_TIMEOUT_MS]: String(TIMEOUT_MS),
    [DOCDB_ENV.CONNECT_TIMEOUT_MS]: String(TIMEOUT_MS),
    [DOCDB_ENV.SOCKET_TIMEOUT_MS]: String(TIMEOUT_MS),
    USE_CONDITIONAL_WRITES: 'false',
    ATOMIC_COUNTER_LOG: 'off',
    ...extra,
  });
}

async function stored(database: string, id: string): Promise<number | undefined> {
  const doc = await master.db(database).collection<{ _id: string; counter: number }>('counters').findOne({ _id: id });
  return doc?.counter;
}

/** The application user as the setup would leave it: readWrite on `database` only. */
function appUser(database: string, password: string): { username: string; password: string } {
  const username = `app_${database}`;
  engine.createUser(username, password, [{ role: 'readWrite', db: database }]);
  return { username, password };
}

describe('the application user', () => {
  test('the setup (logged in as master) creates it with readWrite on the counter database only, idempotently; a new secret value resets its password', async () => {
    const database = freshDb();
    const app = { username: 'counterapp', password: 'app:p?ss#1%[x]' };
    secrets = await startSecretsStandIn(APP_ARN, app);
    const setup = loadBundledHandler(SETUP_ENTRY, {
      // Local runs only: the master credentials in the URI; on AWS they come from DOCDB_SECRET_ARN.
      [DOCDB_ENV.URI]: `mongodb://${MASTER.username}:${encodeURIComponent(MASTER.password)}@127.0.0.1:${engine.port}/?directConnection=true&authSource=admin`,
      [DOCDB_ENV.APP_SECRET_ARN]: APP_ARN,
      [DOCDB_ENV.DATABASE]: database,
    }) as unknown as SetupHandler;
    const properties = { Database: database, Collection: 'counters', AppUserSecret: APP_ARN };
    const created = await setup({ RequestType: 'Create', ResourceProperties: properties });
    expect(created.Data).toEqual({ database, collection: 'counters', idIndex: '_id_', keysCollection: 'counters_keys', keyExpiryIndex: 'expiresAt_ttl', appUser: 'counterapp' });
    const info = await master.db('admin').command({ usersInfo: { user: 'counterapp', db: 'admin' } });
    expect(info.users).toEqual([expect.objectContaining({ user: 'counterapp', roles: [{ role: 'readWrite', db: database }] })]);

    // Create again (a replaced resource) and Update: the user exists, nothing fails.
    expect(await setup({ RequestType: 'Create', ResourceProperties: properties })).toEqual(created);
    // The secret gets a new value (a rotation, or a replaced secret): the next Update sets it on the cluster.
    secrets.setValue({ ...app, password: 'second-password' });
    const fresh = loadBundledHandler(SETUP_ENTRY, {
      [DOCDB_ENV.URI]: `mongodb://${MASTER.username}:${encodeURIComponent(MASTER.password)}@127.0.0.1:${engine.port}/?directConnection=true&authSource=admin`,
      [DOCDB_ENV.APP_SECRET_ARN]: APP_ARN,
    }) as unknown as SetupHandler;
    await fresh({ RequestType: 'Update', ResourceProperties: properties, OldResourceProperties: properties, PhysicalResourceId: created.PhysicalResourceId });
    const login = (password: string) => new MongoClient(engine.uri, { auth: { username: 'counterapp', password }, authSource: 'admin', serverSelectionTimeoutMS: 2000 }).connect();
    await expect(login(app.password)).rejects.toMatchObject({ code: 18 });
    const ok = await login('second-password');
    await ok.close();
    // Delete is harmless: the user and the data stay (a retained cluster keeps working).
    expect(await fresh({ RequestType: 'Delete', ResourceProperties: properties, PhysicalResourceId: created.PhysicalResourceId }))
      .toEqual({ PhysicalResourceId: created.PhysicalResourceId });
    expect((await master.db('admin').command({ usersInfo: 'counterapp' })).users).toHaveLength(1);
    await master.db('admin').command({ dropUser: 'counterapp' });
  });

  test('the counter function works as the app user (POST and GET); the app user cannot write another database: 500, nothing written', async () => {
    const database = freshDb();
    secrets = await startSecretsStandIn(APP_ARN, appUser(database, 'app-pass'));
    const handler = counterContainer(database);
    for (let i = 1; i <= 10; i++) expect(await call(handler, 'POST', 'docdb', 'x')).toMatchObject({ status: 200, body: { counter: i } });
    expect(await call(handler, 'GET', 'docdb', 'x')).toMatchObject({ status: 200, body: { counter: 10 } });
    expect(await stored(database, 'x')).toBe(10);

    // The same user pointed at a database it has no role on.
    const other = freshDb();
    const elsewhere = counterContainer(other);
    expect(await call(elsewhere, 'POST', 'docdb', 'x')).toMatchObject({ status: 500, body: { code: 'INTERNAL', error: 'Internal error' } });
    expect(await call(elsewhere, 'GET', 'docdb', 'x')).toMatchObject({ status: 500, body: { code: 'INTERNAL' } });
    expect(await stored(other, 'x')).toBeUndefined();
    expect((await master.db(other).listCollections().toArray()).length).toBe(0);
  });

  test('a wrong password answers 500 (after one re-read of the secret), writes nothing, and does not re-read again on the next request', async () => {
    const database = freshDb();
    const user = appUser(database, 'right-password');
    secrets = await startSecretsStandIn(APP_ARN, { ...user, password: 'wrong-password' });
    const handler = counterContainer(database);
    const first = await timed(() => call(handler, 'POST', 'docdb', 'x'));
    expect(first).toMatchObject({ status: 500, body: { code: 'INTERNAL', error: 'Internal error' } });
    expect(JSON.stringify(first.body)).not.toMatch(/password|Authentication/i);
    expect(secrets.reads).toBe(2); // the read, and one re-read after the rejection
    expect(await call(handler, 'POST', 'docdb', 'x')).toMatchObject({ status: 500 });
    expect(secrets.reads).toBe(2); // re-reads are rate-bound
    expect(await stored(database, 'x')).toBeUndefined();
  });
});

describe('credential rotation', () => {
  test('password changed on the engine and in the secret mid-run: the same warm container recovers within one request, nothing lost', async () => {
    const database = freshDb();
    const user = appUser(database, 'before-rotation');
    secrets = await startSecretsStandIn(APP_ARN, user);
    const handler = counterContainer(database);
    let accepted = 0;
    for (let i = 0; i < 10; i++) {
      expect(await call(handler, 'POST', 'docdb', 'r')).toMatchObject({ status: 200, body: { counter: ++accepted } });
    }
    expect(secrets.reads).toBe(1);

    // Rotation: the new password on the engine, then in the secret.
    engine.setPassword(user.username, 'after-rotation');
    secrets.setValue({ ...user, password: 'after-rotation' });
    // Sessions that authenticated before keep working, as on DocumentDB.
    expect(await call(handler, 'POST', 'docdb', 'r')).toMatchObject({ status: 200, body: { counter: ++accepted } });
    // Then the connections end (a failover, a restart, an idle drop): the pool reconnects with the cached, old password.
    engine.dropConnections();
    await new Promise((r) => setTimeout(r, 100)); // let the driver see the closed sockets

    const recovered = await timed(() => call(handler, 'POST', 'docdb', 'r'));
    console.log(`docdb rotation: first request after the rotation answered ${recovered.status} in ${recovered.ms.toFixed(1)} ms (auth failure, secret re-read, new client, retry)`);
    expect(recovered).toMatchObject({ status: 200, body: { counter: ++accepted } });
    expect(recovered.ms).toBeLessThan(TIMEOUT_MS + SLACK_MS);
    expect(secrets.reads).toBe(2);
    for (let i = 0; i < 10; i++) {
      expect(await call(handler, 'POST', 'docdb', 'r')).toMatchObject({ status: 200, body: { counter: ++accepted } });
    }
    expect(secrets.reads).toBe(2);
    expect(await stored(database, 'r')).toBe(accepted); // nothing lost, nothing counted twice
  });
});

describe('before the setup has run (issue 19, item 2)', () => {
  test('a keyed request answers 503 with Retry-After (never 500), and its WARN log line names the missing keys collection; nothing is written', async () => {
    const database = freshDb();
    secrets = await startSecretsStandIn(APP_ARN, appUser(database, 'app-pass'));
    // The previous schema: the counters collection only (a store set up before keys existed).
    await master.db(database).createCollection('counters');
    const handler = counterContainer(database, { ATOMIC_COUNTER_LOG: 'on' });
    // The bundle writes to the real process's stdout, not to jest's copy of `process`.
    const stdout: NodeJS.WriteStream = vm.runInThisContext('process').stdout;
    const lines: string[] = [];
    const write = stdout.write;
    stdout.write = ((chunk: string | Uint8Array, ...rest: unknown[]) => {
      lines.push(String(chunk));
      return (write as (...a: unknown[]) => boolean).call(stdout, chunk, ...rest);
    }) as typeof stdout.write;
    let answer;
    try {
      answer = await call(handler, 'POST', 'docdb', 'x', { key: 'k-1' });
    } finally {
      stdout.write = write;
    }
    expect(answer).toMatchObject({ status: 503, body: { code: 'BACKEND_UNAVAILABLE', error: BACKEND_UNAVAILABLE_MESSAGE } });
    expect(answer.headers['Retry-After']).toBeDefined();
    const logged = lines.flatMap((l) => l.split('\n')).filter((l) => l.startsWith('{')).map((l) => JSON.parse(l)).filter((l) => l.statusCode === 503);
    expect(logged).toHaveLength(1);
    expect(logged[0]).toMatchObject({ level: 'WARN', code: 'BACKEND_UNAVAILABLE' });
    expect(logged[0].error).toContain(`DocumentDB setup has not run: collection ${database}.counters_keys missing`);
    expect(await stored(database, 'x')).toBeUndefined();
    // Unkeyed requests keep working meanwhile.
    expect(await call(handler, 'POST', 'docdb', 'x')).toMatchObject({ status: 200, body: { counter: 1 } });
  });
});

describe('credential rotation with alternating users (AWS multi-user rotation)', () => {
  test('the secret switches from user A to its clone B, then back to A with a new password: the warm container re-reads on the auth failure and keeps answering 200, nothing lost', async () => {
    const database = freshDb();
    const a = appUser(database, 'a-first');
    const b = { username: `${a.username}_clone`, password: 'b-first' };
    secrets = await startSecretsStandIn(APP_ARN, a);
    await ensureCounterCollection(master, database, 'counters'); // keyed requests below: the setup's collections
    const handler = counterContainer(database);
    let accepted = 0;
    const post = async () => expect(await call(handler, 'POST', 'docdb', 'alt', { key: `alt-${accepted + 1}` })).toMatchObject({ status: 200, body: { counter: ++accepted } });
    for (let i = 0; i < 5; i++) await post();

    // Rotation 1: the clone gets a password and the secret points at it; A stays valid.
    engine.createUser(b.username, b.password, [{ role: 'readWrite', db: database }]);
    secrets.setValue(b);
    engine.dropConnections();
    await new Promise((r) => setTimeout(r, 100));
    await post(); // still A (cached): A's password is still valid, no re-read needed
    expect(secrets.reads).toBe(1);
    const fresh = counterContainer(database);
    expect(await call(fresh, 'POST', 'docdb', 'alt', { key: `alt-${accepted + 1}` })).toMatchObject({ status: 200, body: { counter: ++accepted } });
    expect(secrets.reads).toBe(2); // the new container read B

    // Rotation 2: A gets a new password and the secret points back at A. The warm container's cached A fails on reconnect.
    engine.setPassword(a.username, 'a-second');
    secrets.setValue({ ...a, password: 'a-second' });
    engine.dropConnections();
    await new Promise((r) => setTimeout(r, 100));
    await post(); // auth failure → re-read → new client as A → 200
    expect(secrets.reads).toBe(3);
    for (let i = 0; i < 5; i++) await post();
    expect(secrets.reads).toBe(3);
    // B still logs in until the next rotation changes it (the other container keeps working).
    expect(await call(fresh, 'POST', 'docdb', 'alt', { key: `alt-${accepted + 1}` })).toMatchObject({ status: 200, body: { counter: ++accepted } });
    expect(await stored(database, 'alt')).toBe(accepted);
  });
});

describe('transient server errors (injected with the failCommand fail point)', () => {
  test('each transient code or label answers 503 with Retry-After and the fixed body, nothing written; other errors stay 500', async () => {
    const database = freshDb();
    secrets = await startSecretsStandIn(APP_ARN, appUser(database, 'pw'));
    const handler = counterContainer(database);
    expect(await call(handler, 'POST', 'docdb', 't')).toMatchObject({ status: 200, body: { counter: 1 } });
    const cases: Array<{ name: string; errorCode: number; errorLabels?: string[]; times?: number }> = [
      // WriteConflict is retried once (it was not applied): it takes two in a row to reach the client.
      { name: 'WriteConflict 112, twice', errorCode: 112, times: 2 },
      { name: 'MaxTimeMSExpired 50', errorCode: 50 },
      { name: 'ExceededTimeLimit 262', errorCode: 262 },
      { name: 'ShutdownInProgress 91', errorCode: 91 },
      { name: 'NotWritablePrimary 10107', errorCode: 10107 },
      { name: 'PrimarySteppedDown 189', errorCode: 189 },
      { name: 'InterruptedDueToReplStateChange 11602', errorCode: 11602 },
      { name: 'an unknown code labelled TransientTransactionError', errorCode: 9999, errorLabels: ['TransientTransactionError'] },
      { name: 'an unknown code labelled RetryableWriteError', errorCode: 9998, errorLabels: ['RetryableWriteError'] },
    ];
    for (const c of cases) {
      engine.failCommand({ failCommands: ['findAndModify'], errorCode: c.errorCode, errorLabels: c.errorLabels, times: c.times ?? 1 });
      const answer = await call(handler, 'POST', 'docdb', 't');
      expect({ case: c.name, status: answer.status, body: answer.body, retryAfter: answer.headers['Retry-After'] })
        .toEqual({ case: c.name, status: 503, body: { code: 'BACKEND_UNAVAILABLE', error: BACKEND_UNAVAILABLE_MESSAGE, backend: 'docdb' }, retryAfter: '1' });
      expect(engine.failPoint.hits).toBe(c.times ?? 1);
      expect(await stored(database, 't')).toBe(1);
    }
    // A read fails the same way.
    engine.failCommand({ failCommands: ['find'], errorCode: 50, times: 1 });
    expect(await call(handler, 'GET', 'docdb', 't')).toMatchObject({ status: 503, body: { code: 'BACKEND_UNAVAILABLE' } });
    // Not transient: a bad request to the server is a 500.
    engine.failCommand({ failCommands: ['findAndModify'], errorCode: 2, times: 1 });
    expect(await call(handler, 'POST', 'docdb', 't')).toMatchObject({ status: 500, body: { code: 'INTERNAL' } });
    expect(await call(handler, 'POST', 'docdb', 't')).toMatchObject({ status: 200, body: { counter: 2 } });
  });

  test('one WriteConflict is retried (the write was not applied): 200, counted exactly once', async () => {
    const database = freshDb();
    secrets = await startSecretsStandIn(APP_ARN, appUser(database, 'pw'));
    const handler = counterContainer(database, { USE_CONDITIONAL_WRITES: 'true', MAX_COUNTER_VALUE: '5' });
    engine.failCommand({ failCommands: ['findAndModify'], errorCode: 112, errorLabels: ['TransientTransactionError'], times: 1 });
    expect(await call(handler, 'POST', 'docdb', 'wc')).toMatchObject({ status: 200, body: { counter: 1 } });
    expect(engine.failPoint.hits).toBe(1);
    expect(await stored(database, 'wc')).toBe(1);
  });

  test('ambiguous failures are never retried: a dropped connection and a reply that never comes answer 503 once; the late write counts once', async () => {
    const database = freshDb();
    secrets = await startSecretsStandIn(APP_ARN, appUser(database, 'pw'));
    const handler = counterContainer(database);
    expect(await call(handler, 'POST', 'docdb', 'amb')).toMatchObject({ status: 200, body: { counter: 1 } });

    engine.failCommand({ failCommands: ['findAndModify'], closeConnection: true, times: 2 });
    expect(await call(handler, 'POST', 'docdb', 'amb')).toMatchObject({ status: 503, body: { code: 'BACKEND_UNAVAILABLE' } });
    expect(engine.failPoint.hits).toBe(1); // not sent a second time
    engine.failCommand(undefined);

    // The server holds the reply past the socket timeout, then applies the write anyway.
    engine.failCommand({ failCommands: ['findAndModify'], blockConnection: true, blockTimeMS: TIMEOUT_MS + 500, times: 1 });
    const late = await timed(() => call(handler, 'POST', 'docdb', 'amb'));
    console.log(`docdb, reply held past the socket timeout: answered ${late.status} in ${late.ms.toFixed(0)} ms (socket timeout ${TIMEOUT_MS} ms)`);
    expect(late).toMatchObject({ status: 503, body: { code: 'BACKEND_UNAVAILABLE' } });
    expect(late.ms).toBeLessThan(TIMEOUT_MS + SLACK_MS);
    expect(engine.failPoint.hits).toBe(1);
    await new Promise((r) => setTimeout(r, 700)); // the held write lands
    expect(await stored(database, 'amb')).toBe(2); // applied once, by the server, never retried by the store
    expect(await call(handler, 'POST', 'docdb', 'amb')).toMatchObject({ status: 200, body: { counter: 3 } });
  });
});

describe('the operation timeout bounds a whole store call', () => {
  test('a reply held longer than the operation timeout (socket timeout far longer) answers 503 at the operation timeout; the late write counts once', async () => {
    const database = freshDb();
    secrets = await startSecretsStandIn(APP_ARN, appUser(database, 'pw'));
    const OPERATION_MS = 600;
    const handler = counterContainer(database, { [DOCDB_ENV.SOCKET_TIMEOUT_MS]: '10000', [DOCDB_ENV.OPERATION_TIMEOUT_MS]: String(OPERATION_MS) });
    expect(await call(handler, 'POST', 'docdb', 'op')).toMatchObject({ status: 200, body: { counter: 1 } });

    // Without the bound this request waits for the held reply (200 after 2.5 s).
    engine.failCommand({ failCommands: ['findAndModify'], blockConnection: true, blockTimeMS: 2500, times: 1 });
    const cut = await timed(() => call(handler, 'POST', 'docdb', 'op'));
    console.log(`docdb, reply held 2500 ms, operation timeout ${OPERATION_MS} ms: answered ${cut.status} in ${cut.ms.toFixed(0)} ms`);
    expect(cut).toMatchObject({ status: 503, body: { code: 'BACKEND_UNAVAILABLE', error: BACKEND_UNAVAILABLE_MESSAGE } });
    expect(cut.ms).toBeLessThan(OPERATION_MS + SLACK_MS);
    await new Promise((r) => setTimeout(r, 2500)); // the held write lands
    expect(await stored(database, 'op')).toBe(2);
    expect(await call(handler, 'POST', 'docdb', 'op')).toMatchObject({ status: 200, body: { counter: 3 } });
  });
});

describe('stale connections after a freeze', () => {
  test('idle connections blackholed silently: the next request answers 200 well within one socket timeout, nothing lost or counted twice', async () => {
    const database = freshDb();
    secrets = await startSecretsStandIn(APP_ARN, appUser(database, 'pw'));
    const proxy = await startFaultProxy({ host: '127.0.0.1', port: engine.port });
    try {
      // The default idle bound is 60 s (a NAT forgets a flow after 350 s); shortened here to keep the test short.
      const handler = counterContainer(database, {
        [DOCDB_ENV.PORT]: String(proxy.port),
        [DOCDB_ENV.MAX_IDLE_TIME_MS]: '300',
        [DOCDB_ENV.SOCKET_TIMEOUT_MS]: String(STALE_SOCKET_TIMEOUT_MS),
      });
      let accepted = 0;
      for (let i = 0; i < 5; i++) expect(await call(handler, 'POST', 'docdb', 's')).toMatchObject({ status: 200, body: { counter: ++accepted } });
      expect(proxy.blackholeExisting()).toBeGreaterThanOrEqual(1);
      await new Promise((r) => setTimeout(r, 400)); // idle past the bound, as a frozen container would be
      const first = await timed(() => call(handler, 'POST', 'docdb', 's'));
      console.log(`docdb after a silent drop: answered ${first.status} in ${first.ms.toFixed(0)} ms (socket timeout ${STALE_SOCKET_TIMEOUT_MS} ms)`);
      expect(first).toMatchObject({ status: 200, body: { counter: ++accepted } });
      expect(first.ms).toBeLessThan(STALE_SOCKET_TIMEOUT_MS);
      for (let i = 0; i < 5; i++) expect(await call(handler, 'POST', 'docdb', 's')).toMatchObject({ status: 200, body: { counter: ++accepted } });
      expect(await stored(database, 's')).toBe(accepted);
    } finally {
      await proxy.close();
    }
  });
});
