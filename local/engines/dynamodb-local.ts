import { spawn, spawnSync } from 'child_process';
import * as fs from 'fs';
import * as path from 'path';
import { DynamoDBClient, ListTablesCommand } from '@aws-sdk/client-dynamodb';
import { captureOutput, Engine, EngineUnavailableError, freePort, stopChild, waitUntil } from './engine';

const DEFAULT_URL = 'http://127.0.0.1:8000';

/** Credentials DynamoDB Local accepts (it checks nothing). */
export const LOCAL_AWS_ENV = { AWS_REGION: 'us-east-1', AWS_ACCESS_KEY_ID: 'local', AWS_SECRET_ACCESS_KEY: 'local' };

async function answersDynamo(url: string): Promise<boolean> {
  const client = new DynamoDBClient({
    endpoint: url,
    region: 'us-east-1',
    credentials: { accessKeyId: 'local', secretAccessKey: 'local' },
    maxAttempts: 1,
    requestHandler: { connectionTimeout: 500, requestTimeout: 2000, throwOnRequestTimeout: true },
  });
  try {
    await client.send(new ListTablesCommand({ Limit: 1 }));
    return true;
  } catch {
    return false;
  } finally {
    client.destroy();
  }
}

/** The DynamoDB Local distribution shipped inside the npm package `amplify-dynamodb-simulator`. */
function emulatorDir(): string {
  let pkg: string;
  try {
    pkg = path.dirname(require.resolve('amplify-dynamodb-simulator/package.json'));
  } catch {
    throw new EngineUnavailableError('DynamoDB Local: the npm package amplify-dynamodb-simulator is missing (run npm ci)');
  }
  const dir = path.join(pkg, 'emulator');
  if (!fs.existsSync(path.join(dir, 'DynamoDBLocal.jar'))) {
    throw new EngineUnavailableError(`DynamoDB Local: ${dir}/DynamoDBLocal.jar not found (reinstall amplify-dynamodb-simulator)`);
  }
  return dir;
}

/** Starts a fresh in-memory DynamoDB Local on a free port (always our own process). */
export async function startDynamoDbLocal(): Promise<Engine & { pid?: number }> {
  const dir = emulatorDir();
  const java = spawnSync('java', ['-version'], { stdio: 'ignore' });
  if (java.error || java.status !== 0) {
    throw new EngineUnavailableError('DynamoDB Local needs Java 17+ on PATH: apt-get install openjdk-17-jre-headless');
  }
  const port = await freePort();
  const child = spawn('java', [
    `-Djava.library.path=${path.join(dir, 'DynamoDBLocal_lib')}`,
    '-jar', path.join(dir, 'DynamoDBLocal.jar'),
    '-inMemory', '-port', String(port),
  ], { cwd: dir, stdio: ['ignore', 'pipe', 'pipe'] });
  const output = captureOutput(child);
  const url = `http://127.0.0.1:${port}`;
  try {
    // A JVM start: seconds on a quiet machine, past a minute on a busy one
    // (load average 15 on 2 cores); the wait is a bound, not a figure.
    await waitUntil('DynamoDB Local', () => answersDynamo(url), 180_000, child);
  } catch (err) {
    await stopChild(child);
    throw new Error(`${(err as Error).message}\n${output()}`);
  }
  return { name: 'DynamoDB Local', origin: 'started', url, pid: child.pid, stop: () => stopChild(child) };
}

/** `DYNAMODB_URL` → DynamoDB Local on 127.0.0.1:8000 → a DynamoDB Local we start. */
export async function acquireDynamoDbLocal(): Promise<Engine> {
  const fromEnv = process.env.DYNAMODB_URL;
  if (fromEnv) return { name: 'DynamoDB', origin: 'env', url: fromEnv, stop: async () => undefined };
  if (await answersDynamo(DEFAULT_URL)) {
    return { name: 'DynamoDB Local', origin: 'default-port', url: DEFAULT_URL, stop: async () => undefined };
  }
  return startDynamoDbLocal();
}
