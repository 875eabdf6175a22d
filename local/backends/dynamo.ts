import { CreateTableCommand, DynamoDBClient, paginateScan, UpdateItemCommand, waitUntilTableExists } from '@aws-sdk/client-dynamodb';
import { BackendFixture, urlPort } from './fixture';
import { DYNAMO_ATTRIBUTES, DYNAMO_BUNDLES, DYNAMO_ENV } from '../../src/backends/dynamo/dynamo-env';
import { acquireDynamoDbLocal, LOCAL_AWS_ENV } from '../engines/dynamodb-local';
import { Engine } from '../engines/engine';

function client(url: string): DynamoDBClient {
  return new DynamoDBClient({
    endpoint: url,
    region: LOCAL_AWS_ENV.AWS_REGION,
    credentials: { accessKeyId: LOCAL_AWS_ENV.AWS_ACCESS_KEY_ID, secretAccessKey: LOCAL_AWS_ENV.AWS_SECRET_ACCESS_KEY },
  });
}

/** DynamoDB on DynamoDB Local: one table per namespace, shaped like the construct's. */
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
    } finally {
      ddb.destroy();
    }
    return { ...LOCAL_AWS_ENV, [DYNAMO_ENV.TABLE_NAME]: namespace, [DYNAMO_ENV.ENDPOINT]: engine.url };
  },
  async keys(engine: Engine, namespace: string) {
    const ddb = client(engine.url);
    try {
      const found: string[] = [];
      for await (const page of paginateScan({ client: ddb }, { TableName: namespace, ProjectionExpression: '#id', ExpressionAttributeNames: { '#id': DYNAMO_ATTRIBUTES.ID } })) {
        for (const item of page.Items ?? []) found.push(item[DYNAMO_ATTRIBUTES.ID].S!);
      }
      return found;
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
};
