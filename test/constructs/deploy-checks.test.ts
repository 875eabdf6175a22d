import { App, Stack } from 'aws-cdk-lib';
import { Annotations, Match } from 'aws-cdk-lib/assertions';
import * as ec2 from 'aws-cdk-lib/aws-ec2';
import * as secretsmanager from 'aws-cdk-lib/aws-secretsmanager';
import { buildExample, config, exampleDir } from './example-app';
import { DocDbCounter, MomentoCounter, TiDbCounter } from '../../src';
import { DOCDB_REGIONS, environmentSize, LAMBDA_ENVIRONMENT_LIMIT_BYTES, NON_DOCDB_REGIONS, secretNameProblem } from '../../src/deploy-checks';
import { thrown } from '../kit/template';

function stackIn(region?: string): Stack {
  return new Stack(new App(), 'Test', region ? { env: { account: '123456789012', region } } : {});
}


describe('DocumentDB region, known at synth', () => {
  const docdbIn = (region?: string) => {
    const stack = stackIn(region);
    new DocDbCounter(stack, 'Counter', { vpc: new ec2.Vpc(stack, 'Vpc', { maxAzs: 2, natGateways: 1 }) });
    return stack;
  };

  test.each(['us-west-1', 'me-south-1', 'eu-central-2'])('%s does not offer DocumentDB: synth fails with one line', (region) => {
    const message = thrown(() => docdbIn(region));
    expect(message).toMatch(new RegExp(`^Test/Counter: Amazon DocumentDB is not offered in ${region} `));
    expect(message).not.toContain('\n');
  });

  test.each(['us-east-1', 'eu-west-1', 'ap-southeast-1'])('%s offers it: no error, no warning', (region) => {
    const stack = docdbIn(region);
    expect(Annotations.fromStack(stack).findWarning('*', Match.stringLikeRegexp('DocumentDB availability'))).toEqual([]);
  });

  test('an environment-agnostic stack is not checked (the region is decided at deploy time)', () => {
    expect(() => docdbIn(undefined)).not.toThrow();
  });

  test('a region the list does not know: a warning, not an error', () => {
    const stack = docdbIn('xx-newregion-1');
    const warnings = Annotations.fromStack(stack).findWarning('*', Match.anyValue()).map((w) => String(w.entry.data));
    expect(warnings.filter((w) => /DocumentDB availability in xx-newregion-1 is unknown/.test(w))).toHaveLength(1);
  });

  test('an existing cluster (existingEndpoint) is not checked: it exists', () => {
    const stack = stackIn('us-west-1');
    const vpc = new ec2.Vpc(stack, 'Vpc', { maxAzs: 2, natGateways: 1 });
    const credentialsSecret = secretsmanager.Secret.fromSecretCompleteArn(stack, 'S', 'arn:aws:secretsmanager:us-west-1:123456789012:secret:docdb-AbCdEf');
    expect(() => new DocDbCounter(stack, 'Counter', { vpc, existingEndpoint: { hostname: 'db.example.internal' }, credentialsSecret })).not.toThrow();
  });

  test('the two lists are disjoint and hold the three CI regions', () => {
    expect(DOCDB_REGIONS.filter((r) => NON_DOCDB_REGIONS.includes(r))).toEqual([]);
    expect(DOCDB_REGIONS).toEqual(expect.arrayContaining(['us-east-1', 'eu-west-1', 'ap-southeast-1']));
  });
});

describe('a secret name that Secrets Manager would take for a full ARN', () => {
  test.each(['db-abc123', 'atomic-counter/tidb-AbCdEf', 'x-a/b_c='])('"%s" is rejected', (name) => {
    expect(secretNameProblem('test', name)).toMatch(/^test: the secret name ".*" ends in "-" plus six characters/);
  });

  test.each(['atomic-counter/momento', 'tidb', 'my-secret-name', 'a-abcde', 'abcdefg'])('"%s" is accepted', (name) => {
    expect(secretNameProblem('test', name)).toBeUndefined();
  });

  test.each([
    ['MomentoCounter', (s: Stack, secret: secretsmanager.ISecret) => new MomentoCounter(s, 'C', { credentialsSecret: secret }), /^Test\/C: `credentialsSecret`: the secret name "momento-key-Ab12Cd" ends in "-" plus six characters/],
    ['TiDbCounter', (s: Stack, secret: secretsmanager.ISecret) => new TiDbCounter(s, 'C', { credentialsSecret: secret }), /^Test\/C: `credentialsSecret`: the secret name "momento-key-Ab12Cd" ends in "-" plus six characters/],
  ])('%s rejects such a name at synth; a complete ARN with its suffix is fine', (_name, build, message) => {
    const stack = stackIn('eu-west-1');
    expect(thrown(() => build(stack, secretsmanager.Secret.fromSecretNameV2(stack, 'ByName', 'momento-key-Ab12Cd')))).toMatch(message);
    const other = stackIn('eu-west-1');
    const complete = secretsmanager.Secret.fromSecretCompleteArn(other, 'ByArn', 'arn:aws:secretsmanager:eu-west-1:123456789012:secret:momento-key-Ab12Cd');
    expect(() => build(other, complete)).not.toThrow();
  });

  test.each(['MOMENTO_SECRET_NAME', 'TIDB_SECRET_NAME'])('the example stops synth with one line for %s of that shape', (variable) => {
    let error: unknown;
    try {
      buildExample(exampleDir(`${variable}=atomic-counter/creds-Ab12Cd`));
    } catch (e) {
      error = e;
    }
    expect(error).toBeInstanceOf(config.ConfigError);
    expect((error as Error).message).toMatch(new RegExp(`^${variable}: "atomic-counter/creds-Ab12Cd" ends in "-" plus six characters`));
  });
});

describe('Lambda\'s 4 KB environment limit, checked at synth for every function', () => {
  /** A PEM certificate of about `bytes` bytes (public data, made up). */
  const pem = (bytes: number, seed: string) => `-----BEGIN CERTIFICATE-----\n${seed.repeat(Math.ceil(bytes / seed.length)).slice(0, bytes)}\n-----END CERTIFICATE-----\n`;

  test('one TiDB CA certificate fits; a bundle of two (about 2 KB each) fails with one error naming both functions and the variable', () => {
    const secretArn = 'arn:aws:secretsmanager:eu-west-1:123456789012:secret:tidb-AbCdEf';
    const build = (ca: string) => {
      const stack = stackIn('eu-west-1');
      new TiDbCounter(stack, 'TiDb', { credentialsSecret: secretsmanager.Secret.fromSecretCompleteArn(stack, 'S', secretArn), tlsCaCertificate: ca });
    };
    expect(() => build(pem(1900, 'MIIFazCCA1OgAwIBAgIR'))).not.toThrow();
    const message = thrown(() => build(pem(1900, 'MIIFazCCA1OgAwIBAgIR') + pem(1900, 'MIIEFzCCAv+gAwIBAgIQ')));
    // Both functions carry the certificate: one error lists both, before anything is created.
    expect(message).toMatch(/^Test\/TiDb: 2 problems with its props:\n/);
    expect(message).toMatch(/\n {2}- the setup function: its environment variables take about \d+ bytes, over Lambda's limit of 4096 \(the largest is TIDB_TLS_CA/);
    expect(message).toMatch(/\n {2}- the counter function: its environment variables take about \d+ bytes, over Lambda's limit of 4096 \(the largest is TIDB_TLS_CA/);
  });

  test('tokens (ARNs, endpoints) are counted generously', () => {
    const stack = stackIn('eu-west-1');
    const secret = new secretsmanager.Secret(stack, 'S');
    expect(environmentSize({ A: secret.secretArn })).toBeGreaterThanOrEqual(256);
    expect(environmentSize({ KEY: 'value' })).toBe(8);
    expect(LAMBDA_ENVIRONMENT_LIMIT_BYTES).toBe(4096);
  });
});
