import { startDynamoProxy } from '../../local/engines/dynamodb-proxy';
import { DYNAMO_ENV } from '../../src/backends/dynamo/dynamo-env';
import { describeConformance } from '../kit/conformance';
import { describeFaultContract } from '../kit/fault-contract';

describeConformance('dynamo', {
  exactlyOnce: {
    // DynamoDB Local runs one call at a time, so no write ever meets a
    // transaction under way: the mixed keyed/unkeyed test goes through a
    // proxy that plays DynamoDB's transaction conflicts (local/engines/dynamodb-proxy.ts).
    contendedRoute: async (engineUrl) => {
      const proxy = await startDynamoProxy(engineUrl);
      proxy.emulateConflicts({ holdMs: 10 });
      return {
        env: { [DYNAMO_ENV.ENDPOINT]: proxy.url },
        refused: () => proxy.calls.filter((c) => c.refused).length,
        close: () => proxy.close(),
      };
    },
  },
});
describeFaultContract('dynamo');
