import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import { App, Stack } from 'aws-cdk-lib';
import { Template } from 'aws-cdk-lib/assertions';
import * as ec2 from 'aws-cdk-lib/aws-ec2';
import * as lambda from 'aws-cdk-lib/aws-lambda';
import * as secretsmanager from 'aws-cdk-lib/aws-secretsmanager';
import { AtomicCounterApi, AtomicCounterApiProps, DynamoCounter } from '../../src';
import { lambdaRuntimes } from '../kit/template';

/**
 * What every function the library creates deploys with: the runtime, the
 * source-map flag and what its code asset holds.
 */

function stackWith(props: (s: Stack) => AtomicCounterApiProps, env: boolean, outdir?: string): { app: App; stack: Stack } {
  const app = new App(outdir ? { outdir } : {});
  const stack = new Stack(app, 'Test', env ? { env: { account: '123456789012', region: 'eu-west-1' } } : {});
  new AtomicCounterApi(stack, 'Api', props(stack));
  return { app, stack };
}

/** Every backend, with whatever props each needs, plus `extra` for each. */
function allBackends(extra: { runtime?: lambda.Runtime; sourceMaps?: boolean } = {}) {
  return (s: Stack): AtomicCounterApiProps => {
    const vpc = new ec2.Vpc(s, 'Vpc', { maxAzs: 2, natGateways: 1 });
    return {
      dynamo: { ...extra },
      redis: { vpc, ...extra },
      docdb: { vpc, ...extra },
      momento: { credentialsSecret: secretsmanager.Secret.fromSecretNameV2(s, 'MomentoKey', 'momento-api-key'), ...extra },
      tidb: { credentialsSecret: secretsmanager.Secret.fromSecretNameV2(s, 'TiDbSecret', 'tidb-connection'), ...extra },
    };
  };
}

function functions(t: Template): Array<{ logicalId: string; props: any }> {
  return Object.entries<any>(t.findResources('AWS::Lambda::Function')).map(([logicalId, r]) => ({ logicalId, props: r.Properties }));
}

function nodeOptions(fn: { props: any }): string | undefined {
  return fn.props.Environment?.Variables?.NODE_OPTIONS;
}

describe('runtime', () => {
  test.each([true, false])('every function the library creates (framework functions included) is on nodejs24.x by default, env-agnostic=%p', (env) => {
    const runtimes = lambdaRuntimes(Template.fromStack(stackWith(allBackends(), env).stack));
    // 5 counter functions, 3 setup functions, their Provider framework functions.
    expect(runtimes.length).toBeGreaterThanOrEqual(11);
    expect(runtimes.filter((r) => r.runtime !== 'nodejs24.x')).toEqual([]);
  });

  test('the runtime prop chooses the counter and setup functions\' runtime', () => {
    const t = Template.fromStack(stackWith(allBackends({ runtime: lambda.Runtime.NODEJS_22_X }), true).stack);
    // Ours run `index.handler`; the Provider framework's run `framework.onEvent`.
    const counterAndSetup = functions(t).filter((f) => f.props.Handler === 'index.handler');
    // 5 counter functions, 3 setup functions (Momento, DocumentDB, TiDB).
    expect(counterAndSetup).toHaveLength(8);
    for (const f of counterAndSetup) expect({ id: f.logicalId, runtime: f.props.Runtime }).toEqual({ id: f.logicalId, runtime: 'nodejs22.x' });
  });
});

describe('source maps', () => {
  test('no function sets --enable-source-maps by default', () => {
    const all = functions(Template.fromStack(stackWith(allBackends(), true).stack));
    expect(all.length).toBeGreaterThanOrEqual(11);
    expect(all.filter((f) => (nodeOptions(f) ?? '').includes('--enable-source-maps')).map((f) => f.logicalId)).toEqual([]);
  });

  test('sourceMaps: true sets it on that counter\'s functions only', () => {
    const t = Template.fromStack(stackWith((s) => {
      const props = allBackends()(s);
      return { ...props, tidb: { ...props.tidb!, sourceMaps: true } };
    }, true).stack);
    const flagged = functions(t).filter((f) => (nodeOptions(f) ?? '').includes('--enable-source-maps')).map((f) => f.logicalId);
    // The TiDB counter function and its setup function; nothing else.
    expect(flagged).toHaveLength(2);
    expect(flagged.every((id) => id.startsWith('ApiTiDbCounter'))).toBe(true);
  });
});

describe('code assets', () => {
  /** The files of each counter function's asset directory in a synthesized cloud assembly. */
  function counterAssets(sourceMaps: boolean): Map<string, { hash: string; files: string[] }> {
    const outdir = fs.mkdtempSync(path.join(os.tmpdir(), 'cdk-atomic-counter-assets-'));
    try {
      const { app, stack } = stackWith(allBackends({ sourceMaps }), true, outdir);
      app.synth();
      const out = new Map<string, { hash: string; files: string[] }>();
      for (const f of functions(Template.fromStack(stack))) {
        const key = f.props.Code?.S3Key;
        if (f.props.Handler !== 'index.handler' || typeof key !== 'string') continue;
        const hash = key.replace(/\.zip$/, '');
        // Staged as `asset.<hash>` plus the source directory's extension (`.lambda`).
        const dir = fs.readdirSync(outdir).find((d) => d.startsWith(`asset.${hash}`));
        if (!dir) throw new Error(`${f.logicalId}: asset ${hash} not staged in ${outdir}`);
        out.set(f.logicalId, { hash, files: fs.readdirSync(path.join(outdir, dir)).sort() });
      }
      return out;
    } finally {
      fs.rmSync(outdir, { recursive: true, force: true });
    }
  }

  test('a function\'s asset holds index.js and no source map unless sourceMaps is on; the asset hash tells them apart', () => {
    const without = counterAssets(false);
    const withMaps = counterAssets(true);
    // Counter and setup functions of the five backends.
    expect(without.size).toBe(8);
    for (const [id, asset] of without) {
      expect({ id, files: asset.files }).toEqual({ id, files: ['index.js'] });
      expect({ id, files: withMaps.get(id)?.files }).toEqual({ id, files: ['index.js', 'index.js.map'] });
      expect(withMaps.get(id)?.hash).not.toEqual(asset.hash);
    }
  });

  test('a standalone counter takes the same defaults', () => {
    const stack = new Stack();
    new DynamoCounter(stack, 'Counter');
    const [fn] = functions(Template.fromStack(stack));
    expect(fn.props.Runtime).toBe('nodejs24.x');
    expect(nodeOptions(fn)).toBeUndefined();
  });
});
