/**
 * Conformance tests for the in-process MongoDB wire-protocol server, driven by the
 * real `mongodb` driver over TCP. They pin the behaviours our DocumentDB counter
 * relies on: unique-index enforcement (E11000), upsert semantics, atomic
 * findAndModify under concurrency, and transactions as DocumentDB runs them
 * (snapshot isolation, write conflicts, waiting plain writes, aborts, the
 * lifetime, DocumentDB's refusals) and TTL indexes.
 */
import * as net from 'net';
import { deserialize, serialize } from 'bson';
import { ClientSession, MongoBulkWriteError, MongoClient, MongoServerError } from 'mongodb';
import { MongoWireServer } from '../../local/engines/mongo-wire-server';

let server: MongoWireServer;
let client: MongoClient;
let dbCounter = 0;
/** A fresh database per test, so tests do not see each other's data. */
const freshDb = () => client.db(`t${++dbCounter}`);

/** Resolves with the server error a promise rejects with (fails the test if it resolves). */
async function serverError(p: Promise<unknown>): Promise<MongoServerError> {
  try {
    await p;
  } catch (e) {
    expect(e).toBeInstanceOf(MongoServerError);
    return e as MongoServerError;
  }
  throw new Error('expected a MongoServerError, but the operation succeeded');
}

async function waitFor(cond: () => boolean, ms = 5000): Promise<void> {
  const deadline = Date.now() + ms;
  while (!cond()) {
    if (Date.now() > deadline) throw new Error('condition not reached in time');
    await new Promise((r) => setTimeout(r, 20));
  }
}

beforeAll(async () => {
  server = await MongoWireServer.start();
  client = new MongoClient(server.uri);
  await client.connect();
});

afterAll(async () => {
  await client?.close();
  await server?.stop();
});

describe('protocol and admin commands', () => {
  test('uri, ping, buildInfo, unknown command', async () => {
    expect(server.uri).toBe(`mongodb://127.0.0.1:${server.port}/?directConnection=true&retryWrites=false`);
    expect(server.port).toBeGreaterThan(0);
    const admin = client.db('admin');
    expect(await admin.command({ ping: 1 })).toMatchObject({ ok: 1 });
    expect((await admin.command({ buildInfo: 1 })).version).toMatch(/^\d+\.\d+/);
    const err = await serverError(admin.command({ frobnicate: 1 }));
    expect(err.code).toBe(59);
    expect(err.codeName).toBe('CommandNotFound');
    expect(err.message).toBe("no such command: 'frobnicate'");
  });

  test('framing: a message split into 1-byte chunks and two messages in one chunk', async () => {
    const opMsg = (requestId: number, body: object) => {
      const doc = serialize(body);
      const header = Buffer.alloc(21);
      header.writeInt32LE(21 + doc.length, 0);
      header.writeInt32LE(requestId, 4);
      header.writeInt32LE(2013, 12);
      return Buffer.concat([header, doc]);
    };
    const socket = net.connect(server.port, server.host);
    await new Promise((r) => socket.once('connect', r));
    const replies: Buffer[] = [];
    let pending = Buffer.alloc(0);
    socket.on('data', (chunk: Buffer) => {
      pending = Buffer.concat([pending, chunk]);
      while (pending.length >= 4 && pending.length >= pending.readInt32LE(0)) {
        replies.push(pending.subarray(0, pending.readInt32LE(0)));
        pending = pending.subarray(pending.readInt32LE(0));
      }
    });
    const first = opMsg(7, { hello: 1, $db: 'admin' });
    for (const byte of first) {
      socket.write(Buffer.from([byte]));
      await new Promise((r) => setImmediate(r));
    }
    socket.write(Buffer.concat([opMsg(8, { ping: 1, $db: 'admin' }), opMsg(9, { nope: 1, $db: 'admin' })]));
    await waitFor(() => replies.length === 3);
    const bodies = replies.map((r) => ({ responseTo: r.readInt32LE(8), opCode: r.readInt32LE(12), body: deserialize(r.subarray(21)) }));
    expect(bodies[0]).toMatchObject({ responseTo: 7, opCode: 2013, body: { isWritablePrimary: true, ok: 1 } });
    expect(bodies[0].body.maxWireVersion).toBeGreaterThanOrEqual(13);
    expect(bodies[1]).toMatchObject({ responseTo: 8, body: { ok: 1 } });
    expect(bodies[2]).toMatchObject({ responseTo: 9, body: { ok: 0, code: 59 } });
    socket.destroy();
  });
});

describe('CRUD', () => {
  test('insert, find/findOne with filter, projection, sort, limit; counts; deleteMany', async () => {
    const c = freshDb().collection<{ _id?: any; n: number; tag: string }>('items');
    await c.insertMany([{ n: 3, tag: 'a' }, { n: 1, tag: 'b' }, { n: 2, tag: 'a' }, { n: 5, tag: 'b' }]);
    expect(await c.findOne({ n: 2 })).toMatchObject({ n: 2, tag: 'a' });
    expect(await c.findOne({ n: 42 })).toBeNull();
    const sorted = await c.find({ n: { $lt: 5 } }, { projection: { _id: 0, n: 1 } }).sort({ n: -1 }).limit(2).toArray();
    expect(sorted).toEqual([{ n: 3 }, { n: 2 }]);
    expect(await c.countDocuments({ tag: 'a' })).toBe(2);
    expect(await c.estimatedDocumentCount()).toBe(4);
    expect(await c.distinct('tag')).toEqual(['a', 'b']);
    const del = await c.deleteMany({ tag: 'b' });
    expect(del.deletedCount).toBe(2);
    expect((await c.find().toArray()).map((d) => d.n).sort()).toEqual([2, 3]);
    expect((await c.deleteOne({ tag: 'a' })).deletedCount).toBe(1);
    expect(await c.countDocuments()).toBe(1);
  });

  test('_id is unique without any index being created; auto ObjectId', async () => {
    const c = freshDb().collection<any>('ids');
    const r = await c.insertOne({ x: 1 });
    expect(r.insertedId.constructor.name).toBe('ObjectId');
    await c.insertOne({ _id: 'k', x: 1 });
    const err = await serverError(c.insertOne({ _id: 'k', x: 2 }));
    expect(err.code).toBe(11000);
    expect(err.message).toMatch(/^E11000 duplicate key error collection: t\d+\.ids index: _id_ dup key: \{ _id: "k" \}$/);
    expect(await c.findOne({ _id: 'k' })).toEqual({ _id: 'k', x: 1 });
  });

  test('updateOne/updateMany with $set, $inc, $setOnInsert, replacement', async () => {
    const c = freshDb().collection<any>('u');
    await c.insertMany([{ _id: 1, v: 1, g: 'x' }, { _id: 2, v: 2, g: 'x' }, { _id: 3, v: 3, g: 'y' }]);
    const many = await c.updateMany({ g: 'x' }, { $inc: { v: 10 }, $set: { seen: true }, $setOnInsert: { created: 1 } });
    expect(many).toMatchObject({ matchedCount: 2, modifiedCount: 2, upsertedCount: 0 });
    expect(await c.findOne({ _id: 1 })).toEqual({ _id: 1, v: 11, g: 'x', seen: true });
    // No-op update: matched but not modified.
    expect(await c.updateOne({ _id: 3 }, { $set: { v: 3 } })).toMatchObject({ matchedCount: 1, modifiedCount: 0 });
    await c.replaceOne({ _id: 3 }, { only: 'this' });
    expect(await c.findOne({ _id: 3 })).toEqual({ _id: 3, only: 'this' });
    const immutable = await serverError(c.updateOne({ _id: 3 }, { $set: { _id: 4 } }));
    expect(immutable.code).toBe(66);
  });
});

describe('upsert semantics', () => {
  test('upsert builds the document from the filter equality fields plus the update', async () => {
    const c = freshDb().collection<any>('counters');
    const r1 = await c.updateOne({ _id: 'a', value: { $lt: 10 } }, { $inc: { value: 1 }, $setOnInsert: { born: true } }, { upsert: true });
    expect(r1).toMatchObject({ upsertedCount: 1, upsertedId: 'a', matchedCount: 0 });
    expect(await c.findOne({ _id: 'a' })).toEqual({ _id: 'a', value: 1, born: true });
    const r2 = await c.updateOne({ _id: 'a', value: { $lt: 10 } }, { $inc: { value: 1 }, $setOnInsert: { born: false } }, { upsert: true });
    expect(r2).toMatchObject({ upsertedCount: 0, matchedCount: 1, modifiedCount: 1 });
    expect(await c.findOne({ _id: 'a' })).toEqual({ _id: 'a', value: 2, born: true });
    // No _id in the filter: the server generates one and keeps the other equality fields.
    const r3 = await c.updateOne({ name: 'n', kind: { $eq: 'k' } }, { $set: { x: 1 } }, { upsert: true });
    expect(r3.upsertedId?.constructor.name).toBe('ObjectId');
    expect(await c.findOne({ name: 'n' })).toMatchObject({ name: 'n', kind: 'k', x: 1 });
  });

  test('updateOne upsert at the maximum collides with _id -> 11000', async () => {
    const c = freshDb().collection<any>('counters');
    await c.insertOne({ _id: 'full', value: 10 });
    const err = await serverError(c.updateOne({ _id: 'full', value: { $lt: 10 } }, { $inc: { value: 1 } }, { upsert: true }));
    expect(err.code).toBe(11000);
    expect(await c.findOne({ _id: 'full' })).toEqual({ _id: 'full', value: 10 });
  });
});

describe('unique indexes', () => {
  test('createIndex is idempotent, conflicts are reported, listIndexes shows them', async () => {
    const c = freshDb().collection<any>('people');
    expect(await c.createIndex({ email: 1 }, { unique: true })).toBe('email_1');
    expect(await c.createIndex({ email: 1 }, { unique: true })).toBe('email_1');
    expect(await c.createIndex({ org: 1, login: 1 }, { unique: true })).toBe('org_1_login_1');
    const indexes = await c.listIndexes().toArray();
    expect(indexes.map((i) => [i.name, i.unique ?? false])).toEqual([['_id_', false], ['email_1', true], ['org_1_login_1', true]]);
    // Same name, different options.
    expect((await serverError(c.createIndex({ email: 1 }, { name: 'email_1' }))).code).toBe(86);
    // Same key, different name.
    expect((await serverError(c.createIndex({ email: 1 }, { unique: true, name: 'other' }))).code).toBe(85);
  });

  test('insert duplicates -> 11000 (single, bulk ordered, compound key)', async () => {
    const c = freshDb().collection<any>('people');
    await c.createIndex({ email: 1 }, { unique: true });
    await c.createIndex({ org: 1, login: 1 }, { unique: true });
    await c.insertOne({ email: 'a@x', org: 'o', login: 'l1' });
    const err = await serverError(c.insertOne({ email: 'a@x', org: 'o', login: 'l2' }));
    expect(err.code).toBe(11000);
    expect(err.message).toMatch(/index: email_1 dup key: \{ email: "a@x" \}/);
    expect(err.keyValue).toEqual({ email: 'a@x' });

    const bulk = await c.insertMany([{ email: 'b@x', org: 'o', login: 'l3' }, { email: 'c@x', org: 'o', login: 'l1' }, { email: 'd@x' }])
      .then(() => undefined, (e) => e);
    expect(bulk).toBeInstanceOf(MongoBulkWriteError);
    expect(bulk.code).toBe(11000);
    expect(bulk.insertedCount).toBe(1); // ordered: stops at the failing document
    expect(bulk.writeErrors[0].errmsg).toMatch(/index: org_1_login_1 dup key: \{ org: "o", login: "l1" \}/);
    expect(await c.countDocuments()).toBe(2);
  });

  test('upsert and update collisions on a unique index -> 11000', async () => {
    const c = freshDb().collection<any>('people');
    await c.createIndex({ email: 1 }, { unique: true });
    await c.insertMany([{ _id: 1, email: 'a@x' }, { _id: 2, email: 'b@x' }]);
    expect((await serverError(c.updateOne({ _id: 3 }, { $set: { email: 'a@x' } }, { upsert: true }))).code).toBe(11000);
    expect((await serverError(c.updateOne({ _id: 2 }, { $set: { email: 'a@x' } }))).code).toBe(11000);
    expect(await c.findOne({ _id: 2 })).toEqual({ _id: 2, email: 'b@x' });
    expect(await c.countDocuments()).toBe(2);
  });

  test('a unique index cannot be built over existing duplicates', async () => {
    const c = freshDb().collection<any>('dups');
    await c.insertMany([{ k: 1 }, { k: 1 }]);
    expect((await serverError(c.createIndex({ k: 1 }, { unique: true }))).code).toBe(11000);
    expect((await c.listIndexes().toArray()).map((i) => i.name)).toEqual(['_id_']);
  });
});

describe('findOneAndUpdate (findAndModify)', () => {
  test('returnDocument after/before, projection, sort, includeResultMetadata', async () => {
    const c = freshDb().collection<any>('fam');
    const created = await c.findOneAndUpdate({ _id: 'c' }, { $inc: { value: 1 } }, { upsert: true, returnDocument: 'after' });
    expect(created).toEqual({ _id: 'c', value: 1 });
    const before = await c.findOneAndUpdate({ _id: 'c' }, { $inc: { value: 1 } }, { returnDocument: 'before' });
    expect(before).toEqual({ _id: 'c', value: 1 });
    const after = await c.findOneAndUpdate({ _id: 'c', value: { $lt: 3 } }, { $inc: { value: 1 } },
      { returnDocument: 'after', projection: { _id: 0, value: 1 } });
    expect(after).toEqual({ value: 3 });
    const meta = await c.findOneAndUpdate({ _id: 'c', value: { $lt: 3 } }, { $inc: { value: 1 } }, { includeResultMetadata: true });
    expect(meta).toMatchObject({ ok: 1, value: null, lastErrorObject: { n: 0, updatedExisting: false } });

    await c.insertMany([{ _id: 'p', prio: 2 }, { _id: 'q', prio: 9 }]);
    const top = await c.findOneAndUpdate({ prio: { $exists: true } }, { $set: { taken: true } }, { sort: { prio: -1 }, returnDocument: 'after' });
    expect(top).toEqual({ _id: 'q', prio: 9, taken: true });
    expect(await c.findOneAndDelete({ _id: 'p' })).toEqual({ _id: 'p', prio: 2 });
    expect(await c.findOne({ _id: 'p' })).toBeNull();
  });

  test('upsert whose filter misses a document at the maximum -> DuplicateKey on _id', async () => {
    const c = freshDb().collection<any>('fam');
    await c.insertOne({ _id: 'id', value: 5 });
    const err = await serverError(c.findOneAndUpdate({ _id: 'id', value: { $lt: 5 } }, { $inc: { value: 1 } }, { upsert: true, returnDocument: 'after' }));
    expect(err.code).toBe(11000);
    expect(err.codeName).toBe('DuplicateKey');
    expect(err.message).toMatch(/index: _id_ dup key: \{ _id: "id" \}/);
    expect(await c.findOne({ _id: 'id' })).toEqual({ _id: 'id', value: 5 });
  });
});

describe('collections and databases', () => {
  test('createCollection, listCollections, drop, dropDatabase, listDatabases', async () => {
    const db = freshDb();
    await db.createCollection('a');
    expect((await serverError(db.createCollection('a'))).code).toBe(48);
    await db.collection('b').insertOne({ x: 1 });
    expect((await db.listCollections({}, { nameOnly: true }).toArray()).map((c) => c.name).sort()).toEqual(['a', 'b']);
    expect(await db.collection('a').drop()).toBe(true);
    expect((await serverError(db.collection('a').drop())).code).toBe(26); // as on MongoDB 6.0
    expect((await db.listCollections().toArray()).map((c) => c.name)).toEqual(['b']);
    const dbs = await client.db('admin').admin().listDatabases();
    expect(dbs.databases.map((d) => d.name)).toContain(db.databaseName);
    expect(await db.dropDatabase()).toBe(true);
    expect(await db.collection('b').countDocuments()).toBe(0);
    expect((await client.db('admin').admin().listDatabases()).databases.map((d) => d.name)).not.toContain(db.databaseName);
  });
});

describe('concurrency', () => {
  test('20 clients x 50 concurrent $inc upserts: no lost or duplicated increments, no leaked sockets', async () => {
    const baseline = server.connectionCount;
    const dbName = freshDb().databaseName;
    const clients = await Promise.all(Array.from({ length: 20 }, () => new MongoClient(server.uri).connect()));
    try {
      const values = await Promise.all(clients.flatMap((cl) => Array.from({ length: 50 }, async () => {
        const doc = await cl.db(dbName).collection<any>('hot').findOneAndUpdate(
          { _id: 'hot' }, { $inc: { value: 1 } }, { upsert: true, returnDocument: 'after' });
        return doc!.value as number;
      })));
      expect(values).toHaveLength(1000);
      expect(new Set(values).size).toBe(1000);
      expect(Math.max(...values)).toBe(1000);
      expect(await client.db(dbName).collection<any>('hot').findOne({ _id: 'hot' })).toEqual({ _id: 'hot', value: 1000 });
      expect(server.connectionCount).toBeGreaterThan(baseline);
    } finally {
      await Promise.all(clients.map((cl) => cl.close()));
    }
    await waitFor(() => server.connectionCount === baseline);
  });

  test('first-increment race on a new id: every upsert succeeds or gets 11000, none is lost', async () => {
    const dbName = freshDb().databaseName;
    const clients = await Promise.all(Array.from({ length: 5 }, () => new MongoClient(server.uri).connect()));
    try {
      const outcomes = await Promise.all(Array.from({ length: 50 }, (_, i) =>
        clients[i % clients.length].db(dbName).collection<any>('race')
          .findOneAndUpdate({ _id: 'new', value: { $lt: 1_000 } }, { $inc: { value: 1 } }, { upsert: true, returnDocument: 'after' })
          .then((doc) => ({ ok: true as const, value: doc!.value as number }), (e) => ({ ok: false as const, code: (e as MongoServerError).code }))));
      const wins = outcomes.filter((o) => o.ok);
      const losses = outcomes.filter((o) => !o.ok);
      losses.forEach((l) => expect(l).toEqual({ ok: false, code: 11000 }));
      expect(wins.length).toBeGreaterThan(0);
      const final = await client.db(dbName).collection<any>('race').findOne({ _id: 'new' });
      expect(final!.value).toBe(wins.length);
      expect(new Set(wins.map((w) => (w as { value: number }).value)).size).toBe(wins.length);
    } finally {
      await Promise.all(clients.map((cl) => cl.close()));
    }
  });
});

describe('authentication (SCRAM-SHA-256)', () => {
  let secured: MongoWireServer;
  beforeAll(async () => { secured = await MongoWireServer.start({ username: 'app', password: 's3cret' }); });
  afterAll(async () => { await secured?.stop(); });

  test('right password works, wrong password fails with 18, no credentials -> 13', async () => {
    const good = await new MongoClient(secured.uri, { auth: { username: 'app', password: 's3cret' } }).connect();
    try {
      await good.db('x').collection('c').insertOne({ a: 1 });
      expect(await good.db('x').collection('c').countDocuments()).toBe(1);
    } finally {
      await good.close();
    }
    const bad = new MongoClient(secured.uri, { auth: { username: 'app', password: 'wrong' }, serverSelectionTimeoutMS: 3000 });
    const err = await serverError(bad.connect());
    expect(err.code).toBe(18);
    expect(err.codeName).toBe('AuthenticationFailed');
    await bad.close();
    const anon = await new MongoClient(secured.uri).connect();
    try {
      expect((await serverError(anon.db('x').collection('c').findOne({}))).code).toBe(13);
    } finally {
      await anon.close();
    }
  });
});

describe('users and roles (createUser / updateUser / dropUser, SCRAM-SHA-1 and SCRAM-SHA-256)', () => {
  let secured: MongoWireServer;
  const open: MongoClient[] = [];
  beforeAll(async () => { secured = await MongoWireServer.start({ username: 'master', password: 'm4ster' }); });
  afterAll(async () => {
    await Promise.all(open.map((c) => c.close()));
    await secured?.stop();
  });
  const connect = async (username: string, password: string, extra: object = {}) => {
    const c = new MongoClient(secured.uri, { auth: { username, password }, authSource: 'admin', serverSelectionTimeoutMS: 3000, ...extra });
    open.push(c);
    return c.connect();
  };

  test('the master user (root) creates an app user with readWrite on one database; both mechanisms authenticate it; usersInfo shows it', async () => {
    const master = await connect('master', 'm4ster');
    const admin = master.db('admin');
    expect(await admin.command({ createUser: 'app1', pwd: 'pw-1', roles: [{ role: 'readWrite', db: 'shop' }] })).toMatchObject({ ok: 1 });
    expect((await serverError(admin.command({ createUser: 'app1', pwd: 'x', roles: [] }))).code).toBe(51003);
    expect((await serverError(admin.command({ createUser: 'bad', pwd: 'x', roles: [{ role: 'superhero', db: 'shop' }] }))).code).toBe(31);
    const info = await admin.command({ usersInfo: { user: 'app1', db: 'admin' } });
    expect(info.users).toEqual([expect.objectContaining({ user: 'app1', db: 'admin', roles: [{ role: 'readWrite', db: 'shop' }] })]);
    for (const authMechanism of ['SCRAM-SHA-1', 'SCRAM-SHA-256'] as const) {
      const app = await connect('app1', 'pw-1', { authMechanism });
      await app.db('shop').collection('c').insertOne({ m: authMechanism });
      expect((await app.db('admin').command({ connectionStatus: 1 })).authInfo.authenticatedUsers).toEqual([{ user: 'app1', db: 'admin' }]);
      await expect(connect('app1', 'wrong', { authMechanism })).rejects.toMatchObject({ code: 18 });
    }
    // Negotiated (no mechanism given): the driver picks SCRAM-SHA-256 from saslSupportedMechs.
    const negotiated = await connect('app1', 'pw-1');
    expect(await negotiated.db('shop').collection('c').countDocuments()).toBe(2);
  });

  test('readWrite on its database only: other databases, dropDatabase, user management and fail points are refused with 13', async () => {
    const master = await connect('master', 'm4ster');
    await master.db('admin').command({ createUser: 'app2', pwd: 'pw-2', roles: [{ role: 'readWrite', db: 'mine' }] });
    await master.db('theirs').collection('c').insertOne({ _id: 'keep' as any });
    const app = await connect('app2', 'pw-2');
    const mine = app.db('mine').collection<{ _id: string; n: number }>('c');
    expect(await mine.findOneAndUpdate({ _id: 'a' }, { $inc: { n: 1 } }, { upsert: true, returnDocument: 'after' })).toEqual({ _id: 'a', n: 1 });
    await app.db('mine').createCollection('other');
    expect((await serverError(app.db('theirs').collection('c').insertOne({ x: 1 }))).code).toBe(13);
    expect((await serverError(app.db('theirs').collection('c').findOne({}))).code).toBe(13);
    expect((await serverError(app.db('theirs').collection('c').findOneAndUpdate({ _id: 'a' as any }, { $inc: { n: 1 } }, { upsert: true }))).code).toBe(13);
    expect((await serverError(app.db('mine').dropDatabase())).code).toBe(13);
    expect((await serverError(app.db('admin').command({ createUser: 'evil', pwd: 'x', roles: ['root'] }))).code).toBe(13);
    expect((await serverError(app.db('admin').command({ configureFailPoint: 'failCommand', mode: 'off' }))).code).toBe(13);
    expect(await master.db('theirs').collection('c').find({}).toArray()).toEqual([{ _id: 'keep' }]);
  });

  test('updateUser changes the password for new sessions (authenticated sessions keep working, as on MongoDB); dropUser ends the rights at once', async () => {
    const master = await connect('master', 'm4ster');
    const admin = master.db('admin');
    await admin.command({ createUser: 'app3', pwd: 'old', roles: [{ role: 'readWrite', db: 'rot' }] });
    const before = await connect('app3', 'old', { maxPoolSize: 1 });
    await before.db('rot').collection('c').insertOne({ n: 1 });
    expect(await admin.command({ updateUser: 'app3', pwd: 'new' })).toMatchObject({ ok: 1 });
    expect(await before.db('rot').collection('c').countDocuments()).toBe(1); // same, authenticated connection
    await expect(connect('app3', 'old')).rejects.toMatchObject({ code: 18 });
    const after = await connect('app3', 'new');
    expect(await after.db('rot').collection('c').countDocuments()).toBe(1);
    // Roles can change too: read only.
    await admin.command({ updateUser: 'app3', roles: [{ role: 'read', db: 'rot' }] });
    expect((await serverError(after.db('rot').collection('c').insertOne({ n: 2 }))).code).toBe(13);
    expect(await admin.command({ dropUser: 'app3' })).toMatchObject({ ok: 1 });
    expect((await serverError(after.db('rot').collection('c').findOne({}))).code).toBe(13);
    expect((await serverError(admin.command({ dropUser: 'app3' }))).code).toBe(11);
    expect((await serverError(admin.command({ updateUser: 'app3', pwd: 'x' }))).code).toBe(11);
  });

  test('the JavaScript hooks: createUser and setPassword without a client, dropConnections closes every session', async () => {
    secured.createUser('app4', 'one', [{ role: 'readWrite', db: 'hooks' }]);
    const app = await connect('app4', 'one');
    await app.db('hooks').collection('c').insertOne({ n: 1 });
    secured.setPassword('app4', 'two');
    const before = secured.connectionCount;
    expect(before).toBeGreaterThan(0);
    secured.dropConnections();
    await waitFor(() => secured.connectionCount === 0);
    // The pool reconnects with the old password: refused with 18 (nothing runs before authentication).
    await expect(app.db('hooks').collection('c').insertOne({ n: 2 })).rejects.toBeDefined();
    await expect(app.db('hooks').collection('c').insertOne({ n: 2 })).rejects.toMatchObject({ code: 18 });
    const fresh = await connect('app4', 'two');
    expect(await fresh.db('hooks').collection('c').countDocuments()).toBe(1);
  });
});

describe('failCommand fail point (injected errors, dropped connections, held replies)', () => {
  const fresh = () => client.db(`fp${++dbCounter}`).collection<{ _id: string; n: number }>('c');
  afterEach(() => server.failCommand(undefined));

  test('errorCode with labels, for the given number of times; other commands are untouched', async () => {
    const coll = fresh();
    expect(await client.db('admin').command({
      configureFailPoint: 'failCommand',
      mode: { times: 2 },
      data: { failCommands: ['findAndModify'], errorCode: 112, errorLabels: ['TransientTransactionError'] },
    })).toMatchObject({ ok: 1 });
    for (let i = 0; i < 2; i++) {
      const err = await serverError(coll.findOneAndUpdate({ _id: 'a' }, { $inc: { n: 1 } }, { upsert: true }));
      expect({ code: err.code, codeName: err.codeName, transient: err.hasErrorLabel('TransientTransactionError') }).toEqual({ code: 112, codeName: 'WriteConflict', transient: true });
    }
    expect(await coll.findOne({})).toBeNull(); // the failed commands were not run
    expect(await coll.findOneAndUpdate({ _id: 'a' }, { $inc: { n: 1 } }, { upsert: true, returnDocument: 'after' })).toEqual({ _id: 'a', n: 1 });
    for (const [code, codeName] of [[50, 'MaxTimeMSExpired'], [262, 'ExceededTimeLimit']] as const) {
      server.failCommand({ failCommands: ['findAndModify'], errorCode: code, times: 1 });
      expect(await serverError(coll.findOneAndUpdate({ _id: 'a' }, { $inc: { n: 1 } }))).toMatchObject({ code, codeName });
    }
    expect(await coll.findOne({})).toEqual({ _id: 'a', n: 1 });
    await client.db('admin').command({ configureFailPoint: 'failCommand', mode: 'off' });
    expect(server.failPoint.hits).toBe(0);
  });

  test('closeConnection: no reply, the socket closes, the command is not run', async () => {
    const coll = fresh();
    await coll.insertOne({ _id: 'a', n: 0 });
    server.failCommand({ failCommands: ['findAndModify'], closeConnection: true, times: 1 });
    await expect(coll.findOneAndUpdate({ _id: 'a' }, { $inc: { n: 1 } })).rejects.toMatchObject({ name: 'MongoNetworkError' });
    expect(server.failPoint.hits).toBe(1);
    expect(await coll.findOne({})).toEqual({ _id: 'a', n: 0 });
  });

  test('writeConcernError: the command runs and is applied, and its reply carries the error (the driver throws MongoWriteConcernError)', async () => {
    const coll = fresh();
    await coll.insertOne({ _id: 'a', n: 0 });
    server.failCommand({ failCommands: ['findAndModify'], writeConcernError: { code: 64 }, times: 1 });
    await expect(coll.findOneAndUpdate({ _id: 'a' }, { $inc: { n: 1 } })).rejects.toMatchObject({ name: 'MongoWriteConcernError', code: 64 });
    expect(server.failPoint.hits).toBe(1);
    expect(await coll.findOne({})).toEqual({ _id: 'a', n: 1 });
  });

  test('afterRun + closeConnection: the command runs and is applied, then the socket closes without a reply; collections narrows the fail point to one target', async () => {
    const coll = fresh();
    await coll.insertOne({ _id: 'a', n: 0 });
    server.failCommand({ failCommands: ['findAndModify'], collections: ['other'], closeConnection: true, afterRun: true, times: 1 });
    expect(await coll.findOneAndUpdate({ _id: 'a' }, { $inc: { n: 1 } }, { returnDocument: 'after' })).toEqual({ _id: 'a', n: 1 });
    expect(server.failPoint.hits).toBe(0);
    server.failCommand({ failCommands: ['findAndModify'], collections: ['c'], closeConnection: true, afterRun: true, times: 1 });
    await expect(coll.findOneAndUpdate({ _id: 'a' }, { $inc: { n: 1 } })).rejects.toMatchObject({ name: 'MongoNetworkError' });
    expect(server.failPoint.hits).toBe(1);
    expect(await coll.findOne({})).toEqual({ _id: 'a', n: 2 });
  });

  test('blockConnection: the reply is held back, then the command runs anyway (a client that gave up never learns it applied)', async () => {
    const coll = fresh();
    const impatient = new MongoClient(server.uri, { socketTimeoutMS: 200, retryWrites: false });
    try {
      server.failCommand({ failCommands: ['findAndModify'], blockConnection: true, blockTimeMS: 1500, times: 1 });
      const started = Date.now();
      await expect(impatient.db(coll.dbName).collection<{ _id: string; n: number }>('c').findOneAndUpdate({ _id: 'a' }, { $inc: { n: 1 } }, { upsert: true }))
        .rejects.toMatchObject({ name: 'MongoNetworkTimeoutError' });
      expect(Date.now() - started).toBeLessThan(1500);
      await waitFor(() => Date.now() - started > 1700);
      expect(await coll.findOne({})).toEqual({ _id: 'a', n: 1 });
    } finally {
      await impatient.close();
    }
  });
});

describe('transactions (as DocumentDB 5.0 runs them)', () => {
  /** A collection that exists (DocumentDB cannot use a missing one in a transaction), with one document. */
  async function seeded(name = 'c') {
    const db = freshDb();
    const coll = db.collection<{ _id: string; n: number }>(name);
    await coll.insertOne({ _id: 'a', n: 0 });
    return coll;
  }
  /** A session as a DocumentDB client must open it: no causal consistency. */
  const session = () => client.startSession({ causalConsistency: false });
  const end = async (...sessions: ClientSession[]) => {
    for (const s of sessions) await s.endSession();
  };

  test('hello reports the primary of replica set rs0, which is what lets the driver run transactions', async () => {
    const hello = await client.db('admin').command({ hello: 1 });
    expect(hello).toMatchObject({ isWritablePrimary: true, secondary: false, setName: 'rs0', hosts: [server.address], primary: server.address, me: server.address, logicalSessionTimeoutMinutes: 30 });
    expect(hello.operationTime).toBeDefined();
  });

  test('commit makes every write visible at once; until then readers outside see the last committed version; abort restores it', async () => {
    const coll = await seeded();
    await coll.insertOne({ _id: 'b', n: 0 });
    const s = session();
    try {
      s.startTransaction();
      await coll.updateOne({ _id: 'a' }, { $inc: { n: 1 } }, { session: s });
      await coll.insertOne({ _id: 'new', n: 7 }, { session: s });
      await coll.deleteOne({ _id: 'b' }, { session: s });
      // Inside: its own writes. Outside: nothing of them.
      expect(await coll.find({}, { session: s }).sort({ _id: 1 }).toArray()).toEqual([{ _id: 'a', n: 1 }, { _id: 'new', n: 7 }]);
      expect(await coll.find({}).sort({ _id: 1 }).toArray()).toEqual([{ _id: 'a', n: 0 }, { _id: 'b', n: 0 }]);
      await s.commitTransaction();
      expect(await coll.find({}).sort({ _id: 1 }).toArray()).toEqual([{ _id: 'a', n: 1 }, { _id: 'new', n: 7 }]);

      s.startTransaction();
      await coll.findOneAndUpdate({ _id: 'a' }, { $inc: { n: 100 } }, { session: s });
      await coll.insertOne({ _id: 'gone', n: 1 }, { session: s });
      await s.abortTransaction();
      expect(await coll.find({}).sort({ _id: 1 }).toArray()).toEqual([{ _id: 'a', n: 1 }, { _id: 'new', n: 7 }]);
      expect(server.transactions.open.size).toBe(0);
    } finally {
      await end(s);
    }
  });

  test('snapshot isolation: a transaction reads the data as of its first command; writing a document committed since is a WriteConflict (TransientTransactionError)', async () => {
    const coll = await seeded();
    const s = session();
    try {
      s.startTransaction();
      expect(await coll.findOne({ _id: 'a' }, { session: s })).toEqual({ _id: 'a', n: 0 }); // the snapshot starts here
      await coll.updateOne({ _id: 'a' }, { $set: { n: 5 } }); // committed by someone else
      await coll.insertOne({ _id: 'late', n: 1 });
      expect(await coll.findOne({ _id: 'a' }, { session: s })).toEqual({ _id: 'a', n: 0 });
      expect(await coll.findOne({ _id: 'late' }, { session: s })).toBeNull();
      const err = await serverError(coll.updateOne({ _id: 'a' }, { $inc: { n: 1 } }, { session: s }));
      expect({ code: err.code, transient: err.hasErrorLabel('TransientTransactionError') }).toEqual({ code: 112, transient: true });
      // The conflict aborted the transaction on the server: its next command is refused.
      const gone = await serverError(coll.findOne({ _id: 'a' }, { session: s }));
      expect({ code: gone.code, transient: gone.hasErrorLabel('TransientTransactionError') }).toEqual({ code: 251, transient: true });
      await s.abortTransaction();
      expect(await coll.findOne({ _id: 'a' })).toEqual({ _id: 'a', n: 5 });
    } finally {
      await end(s);
    }
  });

  test('first writer wins: a second transaction writing (or inserting) a document another open transaction wrote gets WriteConflict; after the commit a new one succeeds (or gets E11000)', async () => {
    const coll = await seeded();
    const [s1, s2] = [session(), session()];
    try {
      s1.startTransaction();
      s2.startTransaction();
      await coll.findOneAndUpdate({ _id: 'a' }, { $inc: { n: 1 } }, { session: s1 });
      await coll.insertOne({ _id: 'k', n: 1 }, { session: s1 });
      const onDoc = await serverError(coll.findOneAndUpdate({ _id: 'a' }, { $inc: { n: 1 } }, { session: s2 }));
      expect({ code: onDoc.code, transient: onDoc.hasErrorLabel('TransientTransactionError') }).toEqual({ code: 112, transient: true });
      await s2.abortTransaction();
      s2.startTransaction();
      const onKey = await serverError(coll.findOneAndUpdate({ _id: 'k' }, { $setOnInsert: { n: 2 } }, { upsert: true, session: s2 }));
      expect(onKey.code).toBe(112);
      await s2.abortTransaction();
      await s1.commitTransaction();

      s2.startTransaction();
      expect(await coll.findOneAndUpdate({ _id: 'a' }, { $inc: { n: 1 } }, { session: s2, returnDocument: 'after' })).toEqual({ _id: 'a', n: 2 });
      expect(await coll.findOneAndUpdate({ _id: 'k' }, { $setOnInsert: { n: 2 } }, { upsert: true, session: s2, returnDocument: 'before' })).toEqual({ _id: 'k', n: 1 });
      const dup = await serverError(coll.insertOne({ _id: 'k', n: 3 }, { session: s2 }));
      expect(dup.code).toBe(11000);
      // An E11000 aborts the transaction, as on MongoDB: nothing of it is committed.
      await s2.abortTransaction();
      expect(await coll.find({}).sort({ _id: 1 }).toArray()).toEqual([{ _id: 'a', n: 1 }, { _id: 'k', n: 1 }]);
    } finally {
      await end(s1, s2);
    }
  });

  test('a plain write to a document a transaction holds waits until the transaction ends, then applies on the committed version', async () => {
    const coll = await seeded();
    const s = session();
    try {
      s.startTransaction();
      await coll.updateOne({ _id: 'a' }, { $inc: { n: 10 } }, { session: s });
      const waitsBefore = server.lockWaits;
      let done = false;
      const plain = coll.findOneAndUpdate({ _id: 'a' }, { $inc: { n: 1 } }, { returnDocument: 'after' }).then((d) => { done = true; return d; });
      await waitFor(() => server.lockWaits > waitsBefore);
      await new Promise((r) => setTimeout(r, 100));
      expect(done).toBe(false);
      // A plain write to another document does not wait.
      await coll.insertOne({ _id: 'other', n: 0 });
      await s.commitTransaction();
      expect(await plain).toEqual({ _id: 'a', n: 11 });

      // Aborted instead: the waiting write applies on the version before the transaction.
      s.startTransaction();
      await coll.updateOne({ _id: 'a' }, { $set: { n: 1000 } }, { session: s });
      const second = coll.findOneAndUpdate({ _id: 'a' }, { $inc: { n: 1 } }, { returnDocument: 'after' });
      await new Promise((r) => setTimeout(r, 50));
      await s.abortTransaction();
      expect(await second).toEqual({ _id: 'a', n: 12 });
    } finally {
      await end(s);
    }
  });

  test('DocumentDB\'s refusals: retryable writes (301), causal consistency (303), a missing collection or DDL in a transaction (263), a commit that is not in progress (251, even after it committed)', async () => {
    const coll = await seeded();
    // A write with a transaction number outside a transaction is a retryable write: not on DocumentDB before 8.0.2.
    const retrying = new MongoClient(server.uri.replace('retryWrites=false', 'retryWrites=true'));
    try {
      const err = await serverError(retrying.db(coll.dbName).collection(coll.collectionName).insertOne({ n: 1 }));
      expect({ code: err.code, message: err.message }).toEqual({ code: 301, message: 'Retryable writes are not supported' });
    } finally {
      await retrying.close();
    }
    // The driver's default for an explicit session is causal consistency: its second read asks for afterClusterTime.
    const causal = client.startSession();
    try {
      await coll.findOne({}, { session: causal });
      expect((await serverError(coll.findOne({}, { session: causal }))).code).toBe(303);
    } finally {
      await causal.endSession();
    }
    const s = session();
    try {
      s.startTransaction();
      expect((await serverError(coll.db.collection('missing').insertOne({ n: 1 }, { session: s }))).code).toBe(263);
      await s.abortTransaction();
      s.startTransaction();
      expect((await serverError(coll.db.command({ createIndexes: coll.collectionName, indexes: [{ key: { n: 1 }, name: 'n_1' }] }, { session: s }))).code).toBe(263);
      await s.abortTransaction();
      s.startTransaction();
      await coll.updateOne({ _id: 'a' }, { $inc: { n: 1 } }, { session: s });
      await s.commitTransaction();
      // The driver's own retry of a commit (after a lost reply) would get this: DocumentDB has no retryable commit.
      const again = await serverError(client.db('admin').command({ commitTransaction: 1, lsid: s.id, txnNumber: s.serverSession!.txnNumber, autocommit: false } as any));
      expect(again.code).toBe(251);
      expect(await coll.findOne({ _id: 'a' })).toEqual({ _id: 'a', n: 1 });
    } finally {
      await end(s);
    }
  });

  test('a transaction open longer than its lifetime is aborted and its locks released; ending the session aborts it too', async () => {
    const short = await MongoWireServer.start({ transactionLifetimeMs: 300 });
    const c = new MongoClient(short.uri);
    try {
      const coll = c.db('life').collection<{ _id: string; n: number }>('c');
      await coll.insertOne({ _id: 'a', n: 0 });
      const s = c.startSession({ causalConsistency: false });
      s.startTransaction();
      await coll.updateOne({ _id: 'a' }, { $inc: { n: 1 } }, { session: s });
      // A plain write waits for the lock: here until the lifetime ends the transaction.
      const started = Date.now();
      expect(await coll.findOneAndUpdate({ _id: 'a' }, { $inc: { n: 10 } }, { returnDocument: 'after' })).toEqual({ _id: 'a', n: 10 });
      expect(Date.now() - started).toBeGreaterThanOrEqual(200);
      expect((await serverError(s.commitTransaction())).code).toBe(251);
      await s.endSession();

      const t = c.startSession({ causalConsistency: false });
      t.startTransaction();
      await coll.updateOne({ _id: 'a' }, { $inc: { n: 1 } }, { session: t });
      expect(short.transactions.open.size).toBe(1);
      await c.db('admin').command({ endSessions: [t.id] });
      expect(short.transactions.open.size).toBe(0);
      expect(await coll.findOne({ _id: 'a' })).toEqual({ _id: 'a', n: 10 });
      await t.endSession();
    } finally {
      await c.close();
      await short.stop();
    }
  });

  test('TTL index: created and listed with expireAfterSeconds; the monitor deletes expired documents, except one a transaction holds', async () => {
    const db = freshDb();
    const keys = db.collection<{ _id: string; expiresAt: Date | string }>('keys');
    expect(await keys.createIndex({ expiresAt: 1 }, { name: 'expiresAt_ttl', expireAfterSeconds: 0 })).toBe('expiresAt_ttl');
    expect(await keys.listIndexes().toArray()).toEqual(expect.arrayContaining([expect.objectContaining({ name: 'expiresAt_ttl', key: { expiresAt: 1 }, expireAfterSeconds: 0 })]));
    const past = new Date(Date.now() - 1000);
    await keys.insertMany([{ _id: 'old', expiresAt: past }, { _id: 'held', expiresAt: past }, { _id: 'new', expiresAt: new Date(Date.now() + 60_000) }, { _id: 'text', expiresAt: 'not a date' }]);
    const s = session();
    try {
      s.startTransaction();
      await keys.updateOne({ _id: 'held' }, { $set: { expiresAt: new Date(past.getTime() - 1) } }, { session: s });
      expect(server.runTtlMonitor()).toBe(1);
      expect((await keys.find({}).toArray()).map((d) => d._id).sort()).toEqual(['held', 'new', 'text']);
      await s.abortTransaction();
      expect(server.runTtlMonitor()).toBe(1);
      expect((await keys.find({}).toArray()).map((d) => d._id).sort()).toEqual(['new', 'text']);
    } finally {
      await end(s);
    }
  });
});
