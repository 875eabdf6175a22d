/**
 * An HTTP proxy in front of DynamoDB Local that reads every call as
 * DynamoDB does: its operation (`X-Amz-Target`) and its JSON input. Tests
 * use it to count calls on the engine side and to check flags DynamoDB
 * Local ignores (it reads consistently whatever `ConsistentRead` says).
 *
 * It can also play a part of DynamoDB that DynamoDB Local never shows:
 * transaction conflicts. DynamoDB Local runs one call at a time, so no write
 * ever meets a transaction under way. With `emulateConflicts`, a
 * `TransactWriteItems` holds its items for `holdMs` (DynamoDB's two-phase
 * commit takes milliseconds) before the proxy forwards it, and while it
 * holds them, as DynamoDB's developer guide lists the conflicts:
 *
 * - a `PutItem`, `UpdateItem` or `DeleteItem` of a held item is refused with
 *   `TransactionConflictException` (nothing applied);
 * - a `TransactWriteItems` touching a held item is cancelled with the reason
 *   `TransactionConflict` for that item (nothing applied).
 *
 * Reads pass (`GetItem` is not refused by a transaction under way).
 *
 * And, with `throttleWrites`, DynamoDB's per-partition write limit, scaled
 * down (the scale model, `dynamodb-throttle.ts`): a write past its key's
 * rate is answered with DynamoDB's own throttling error and never reaches
 * DynamoDB Local.
 */
import * as http from 'http';
import { AddressInfo } from 'net';
import { throttledAnswer, WriteLimitOptions, WriteRateLimit, writesOf } from './dynamodb-throttle';

export interface DynamoCall {
  /** `GetItem`, `UpdateItem`, `TransactWriteItems`, … */
  readonly operation: string;
  /** The call's JSON input, as sent. */
  readonly input: any;
  /** True when the proxy answered it itself (an emulated conflict or a throttle): DynamoDB Local never saw it. */
  readonly refused: boolean;
  /** True when the proxy throttled it (the scale model). */
  readonly throttled?: boolean;
}

export interface DynamoProxy {
  /** `http://127.0.0.1:<port>`: the endpoint to give the SDK. */
  readonly url: string;
  /** Every call since the last `reset`, in arrival order. */
  readonly calls: readonly DynamoCall[];
  /** Calls since the last `reset`, of one operation or of all. */
  count(operation?: string): number;
  reset(): void;
  /** Plays DynamoDB's transaction conflicts from now on (see the file comment); `undefined` stops. */
  emulateConflicts(options: { holdMs: number } | undefined): void;
  /**
   * Enforces a per-partition-key write rate from now on (fresh, full
   * buckets); `undefined` stops. See `dynamodb-throttle.ts`.
   */
  throttleWrites(options: Omit<WriteLimitOptions, 'partitionKey'> | undefined): void;
  close(): Promise<void>;
}

const JSON_TYPE = 'application/x-amz-json-1.0';
const ERROR_PREFIX = 'com.amazonaws.dynamodb.v20120810#';

/** The item a write action touches, as `table + key`; `partitionKey` names the key attribute of a `Put`. */
function itemOf(action: any, partitionKey: string): string | undefined {
  const key = action?.Key ?? (action?.Item ? { [partitionKey]: action.Item[partitionKey] } : undefined);
  return key ? `${action.TableName}\u0000${JSON.stringify(key)}` : undefined;
}

/** Starts a proxy on 127.0.0.1 (a free port) in front of `targetUrl` (DynamoDB Local's endpoint). */
export async function startDynamoProxy(targetUrl: string, options: { partitionKey?: string } = {}): Promise<DynamoProxy> {
  const partitionKey = options.partitionKey ?? 'id';
  const target = new URL(targetUrl);
  const agent = new http.Agent({ keepAlive: true, maxSockets: 64 });
  let calls: DynamoCall[] = [];
  let conflicts: { holdMs: number } | undefined;
  let limit: WriteRateLimit | undefined;
  /** Items held by transactions under way (emulation only), with how many hold each. */
  const held = new Map<string, number>();

  const reply = (res: http.ServerResponse, status: number, body: unknown) => {
    const text = JSON.stringify(body);
    res.writeHead(status, { 'content-type': JSON_TYPE, 'content-length': Buffer.byteLength(text) });
    res.end(text);
  };

  const forward = (req: http.IncomingMessage, body: Buffer, res: http.ServerResponse): Promise<void> => new Promise((resolve) => {
    const upstream = http.request({
      host: target.hostname,
      port: Number(target.port),
      method: req.method,
      path: req.url,
      headers: req.headers,
      agent,
    }, (answer) => {
      res.writeHead(answer.statusCode ?? 500, answer.headers);
      answer.pipe(res);
      answer.on('end', resolve);
      answer.on('error', () => resolve());
    });
    upstream.on('error', () => {
      res.destroy();
      resolve();
    });
    upstream.end(body);
  });

  const server = http.createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (chunk: Buffer) => chunks.push(chunk));
    req.on('end', () => {
      void (async () => {
        const body = Buffer.concat(chunks);
        const operation = String(req.headers['x-amz-target'] ?? '').split('.').pop() ?? '';
        let input: any;
        try {
          input = JSON.parse(body.toString('utf8') || '{}');
        } catch {
          input = undefined;
        }
        if (limit) {
          const short = limit.admit(writesOf(operation, input, partitionKey));
          if (short.size > 0) {
            calls.push({ operation, input, refused: true, throttled: true });
            return reply(res, 400, throttledAnswer(operation, input, short, partitionKey));
          }
        }
        if (!conflicts) {
          calls.push({ operation, input, refused: false });
          return forward(req, body, res);
        }
        const holdMs = conflicts.holdMs;
        if (operation === 'TransactWriteItems') {
          const items = (input?.TransactItems ?? []).map((t: any) => itemOf(t.Update ?? t.Put ?? t.Delete ?? t.ConditionCheck, partitionKey));
          if (items.some((i: string | undefined) => i !== undefined && held.has(i))) {
            calls.push({ operation, input, refused: true });
            const reasons = items.map((i: string | undefined) => (i !== undefined && held.has(i)
              ? { Code: 'TransactionConflict', Message: 'Transaction is ongoing for the item' }
              : { Code: 'None' }));
            return reply(res, 400, {
              __type: `${ERROR_PREFIX}TransactionCanceledException`,
              Message: `Transaction cancelled, please refer cancellation reasons for specific reasons [${reasons.map((r: { Code: string }) => r.Code).join(', ')}]`,
              CancellationReasons: reasons,
            });
          }
          calls.push({ operation, input, refused: false });
          for (const i of items) if (i !== undefined) held.set(i, (held.get(i) ?? 0) + 1);
          try {
            await new Promise((resolve) => setTimeout(resolve, holdMs));
            await forward(req, body, res);
          } finally {
            for (const i of items) {
              if (i === undefined) continue;
              const n = (held.get(i) ?? 1) - 1;
              if (n <= 0) held.delete(i);
              else held.set(i, n);
            }
          }
          return;
        }
        if (['PutItem', 'UpdateItem', 'DeleteItem'].includes(operation)) {
          const item = itemOf(input, partitionKey);
          if (item !== undefined && held.has(item)) {
            calls.push({ operation, input, refused: true });
            return reply(res, 400, { __type: `${ERROR_PREFIX}TransactionConflictException`, message: 'Transaction is ongoing for the item' });
          }
        }
        calls.push({ operation, input, refused: false });
        return forward(req, body, res);
      })();
    });
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => resolve());
  });
  const port = (server.address() as AddressInfo).port;
  return {
    url: `http://127.0.0.1:${port}`,
    get calls() {
      return calls;
    },
    count(operation?: string) {
      return operation === undefined ? calls.length : calls.filter((c) => c.operation === operation).length;
    },
    reset() {
      calls = [];
    },
    emulateConflicts(next) {
      conflicts = next;
    },
    throttleWrites(next) {
      limit = next && new WriteRateLimit({ ...next, partitionKey });
    },
    async close() {
      server.closeAllConnections();
      await new Promise<void>((resolve) => server.close(() => resolve()));
      agent.destroy();
    },
  };
}
