import {
  CreateTableCommand,
  DeleteTableCommand,
  DynamoDBClient,
  paginateScan,
  UpdateItemCommand,
  UpdateTimeToLiveCommand,
  waitUntilTableExists,
} from '@aws-sdk/client-dynamodb';
import { BackendFixture, urlPort } from './fixture';
import { DYNAMO_ATTRIBUTES, DYNAMO_BUNDLES, DYNAMO_ENV, DYNAMO_KEYS } from '../../src/backends/dynamo/dynamo-env';
import { counterIdOf } from '../../src/backends/dynamo/runtime/dynamo-sharded-change';
import { acquireDynamoDbLocal, LOCAL_AWS_ENV } from '../engines/dynamodb-local';
import { startDynamoProxy } from '../engines/dynamodb-proxy';
import { Engine } from '../engines/engine';

function client(url: string): DynamoDBClient {
  return new DynamoDBClient({
    endpoint: url,
    region: LOCAL_AWS_ENV.AWS_REGION,
    credentials: { accessKeyId: LOCAL_AWS_ENV.AWS_ACCESS_KEY_ID, secretAccessKey: LOCAL_AWS_ENV.AWS_SECRET_ACCESS_KEY },
  });
}

/**
 * DynamoDB on DynamoDB Local: one table per namespace, shaped like the
 * construct's (partition key `id`, TTL on `expiresAt`). Key records of
 * `Idempotency-Key`s live in the same table under ids no counter can have.
 */
export const dynamoFixture: BackendFixture = {
  backend: 'dynamo',
  entry: DYNAMO_BUNDLES.counter,
  acquire: acquireDynamoDbLocal,
  async prepare(engine: Engine, namespace: string) {
    const ddb = client(engine.url);
    try {
      await ddb.send(new CreateTableCommand({
        TableName: namespace,
        AttributeDefinitions: [{ AttributeName: DYNAMO_ATTRIBUTES.ID, AttributeType: 'S' }],
        KeySchema: [{ AttributeName: DYNAMO_ATTRIBUTES.ID, KeyType: 'HASH' }],
        BillingMode: 'PAY_PER_REQUEST',
      })).catch((err) => {
        if (err?.name !== 'ResourceInUseException') throw err; // prepare is idempotent
      });
      await waitUntilTableExists({ client: ddb, maxWaitTime: 30 }, { TableName: namespace });
      // As the construct does. DynamoDB Local accepts the setting; the store
      // checks expiry itself and never relies on TTL deletion.
      await ddb.send(new UpdateTimeToLiveCommand({
        TableName: namespace,
        TimeToLiveSpecification: { AttributeName: DYNAMO_ATTRIBUTES.EXPIRES_AT, Enabled: true },
      })).catch((err) => {
        // Preparing the same namespace twice: TTL is already on.
        if (!(err?.name === 'ValidationException' && /already enabled/i.test(err?.message ?? ''))) throw err;
      });
    } finally {
      ddb.destroy();
    }
    return {
      ...LOCAL_AWS_ENV,
      [DYNAMO_ENV.TABLE_NAME]: namespace,
      [DYNAMO_ENV.ENDPOINT]: engine.url,
      // The per-call timeout (2 s on Lambda) is sized for DynamoDB's
      // milliseconds. DynamoDB Local is one JVM serialising every call on a
      // machine shared with the test process and its containers: on a loaded
      // machine (load average 13 on 2 cores) 31 of the 2,000 requests of the
      // 32-caller mixed-steps test took longer than 2 s and answered 503,
      // which the exact-count assertions cannot tell from a lost update.
      // Tests of the timeout itself set their own.
      [DYNAMO_ENV.REQUEST_TIMEOUT_MS]: process.env[DYNAMO_ENV.REQUEST_TIMEOUT_MS] ?? '10000',
    };
  },
  /** Removes the namespace's table: its counters and key records with it. */
  async dispose(engine: Engine, namespace: string) {
    const ddb = client(engine.url);
    try {
      await ddb.send(new DeleteTableCommand({ TableName: namespace })).catch((err) => {
        if (err?.name !== 'ResourceNotFoundException') throw err;
      });
    } finally {
      ddb.destroy();
    }
  },
  /**
   * Counter ids only: key records (ids starting with a control character)
   * are not counters, and a sharded counter's slot items count as its id.
   */
  async keys(engine: Engine, namespace: string) {
    const ddb = client(engine.url);
    try {
      const found = new Set<string>();
      for await (const page of paginateScan({ client: ddb }, { TableName: namespace, ProjectionExpression: '#id', ExpressionAttributeNames: { '#id': DYNAMO_ATTRIBUTES.ID } })) {
        for (const item of page.Items ?? []) {
          const id = item[DYNAMO_ATTRIBUTES.ID].S!;
          if (!id.startsWith(DYNAMO_KEYS.RECORD_PREFIX)) found.add(counterIdOf(id));
        }
      }
      return [...found];
    } finally {
      ddb.destroy();
    }
  },
  async bareClient(engine, env) {
    const ddb = client(engine.url);
    return {
      async increment(id: string) {
        const out = await ddb.send(new UpdateItemCommand({
          TableName: env[DYNAMO_ENV.TABLE_NAME],
          Key: { [DYNAMO_ATTRIBUTES.ID]: { S: id } },
          UpdateExpression: 'ADD #c :one',
          ExpressionAttributeNames: { '#c': DYNAMO_ATTRIBUTES.COUNTER },
          ExpressionAttributeValues: { ':one': { N: '1' } },
          ReturnValues: 'UPDATED_NEW',
        }));
        return Number(out.Attributes?.[DYNAMO_ATTRIBUTES.COUNTER]?.N);
      },
      async close() {
        ddb.destroy();
      },
    };
  },
  serverPort: (engine) => urlPort(engine.url, 8000),
  /** Calls (one HTTP request each: `GetItem`, `TransactWriteItems`, …) at a proxy in front of DynamoDB Local. */
  async callCounter(engine, env) {
    const proxy = await startDynamoProxy(env[DYNAMO_ENV.ENDPOINT] ?? engine.url);
    return {
      env: { ...env, [DYNAMO_ENV.ENDPOINT]: proxy.url },
      count: () => proxy.count(),
      reset: () => proxy.reset(),
      close: () => proxy.close(),
    };
  },
};
