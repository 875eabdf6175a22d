import { App, SecretValue, Stack } from 'aws-cdk-lib';
import { Template } from 'aws-cdk-lib/assertions';
import * as ec2 from 'aws-cdk-lib/aws-ec2';
import * as secretsmanager from 'aws-cdk-lib/aws-secretsmanager';
import { buildExample, exampleDir, FAKE_CREDENTIALS, FULL_DOTENV } from './example-app';
import { AtomicCounterApi, DocDbCounter, DynamoCounter, MomentoCounter, RedisCounter, TiDbCounter } from '../../src';
import { functionEnvironments, secretsInEnvironments } from '../kit/template';

/** Secret values the stacks below put into Secrets Manager: none may reach an environment. */
const PLANTED = ['planted-tidb-password-77f1', 'planted-momento-key-1c2d', ...Object.values(FAKE_CREDENTIALS)];

function newStack(): Stack {
  return new Stack(new App(), 'Test', { env: { account: '123456789012', region: 'eu-west-1' } });
}

/** Every stack this project builds: each backend on its own with stack-created secrets, the API with all five, and the example in each configuration. */
const STACKS: Array<[string, () => Stack]> = [
  ['each backend, secrets created in the stack', () => {
    const stack = newStack();
    const vpc = new ec2.Vpc(stack, 'Vpc', { maxAzs: 2, natGateways: 1 });
    new DynamoCounter(stack, 'Dynamo');
    new RedisCounter(stack, 'Redis', { vpc, waitForReplicas: 1 });
    new RedisCounter(stack, 'RedisExisting', {
      vpc, existingEndpoint: { hostname: 'redis.internal' }, credentialsSecret: new secretsmanager.Secret(stack, 'RedisAuth', { secretObjectValue: { authToken: SecretValue.unsafePlainText(PLANTED[0]) } }),
    });
    new DocDbCounter(stack, 'DocDb', { vpc });
    new MomentoCounter(stack, 'Momento', { credentialsSecret: new secretsmanager.Secret(stack, 'MomentoKey', { secretStringValue: SecretValue.unsafePlainText(PLANTED[1]) }) });
    new TiDbCounter(stack, 'TiDb', {
      credentialsSecret: new secretsmanager.Secret(stack, 'TiDbConn', {
        secretObjectValue: { host: SecretValue.unsafePlainText('h'), user: SecretValue.unsafePlainText('u'), password: SecretValue.unsafePlainText(PLANTED[0]) },
      }),
      tlsCaCertificate: '-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----',
    });
    return stack;
  }],
  ['the API with all five backends from props', () => {
    const stack = newStack();
    const vpc = new ec2.Vpc(stack, 'Vpc', { maxAzs: 2, natGateways: 1 });
    new AtomicCounterApi(stack, 'Api', {
      dynamo: {},
      redis: { vpc },
      docdb: { vpc },
      momento: { credentialsSecret: secretsmanager.Secret.fromSecretNameV2(stack, 'K', 'momento-api-key') },
      tidb: { credentialsSecret: secretsmanager.Secret.fromSecretNameV2(stack, 'T', 'tidb-connection') },
    });
    return stack;
  }],
  ['the example, every backend configured by secret name', () => buildExample(exampleDir(FULL_DOTENV)).stack],
  ['the example, credentials copied from the files (opt-in)', () => buildExample(exampleDir(''), { allowPlaintextSecretsFromFiles: true }).stack],
  ['the example, AWS-only backends', () => buildExample(exampleDir('', { momento: undefined, tidb: undefined })).stack],
];

describe('no environment variable of any function holds a secret or a secret reference', () => {
  test.each(STACKS)('%s', (_name, build) => {
    const template = Template.fromStack(build());
    const functions = Object.keys(functionEnvironments(template));
    expect(functions.length).toBeGreaterThan(0);
    expect(secretsInEnvironments(template, PLANTED)).toEqual([]);
  });

  test('the scan finds each kind of leak', () => {
    const stack = newStack();
    const secret = new secretsmanager.Secret(stack, 'S');
    const fn = new DynamoCounter(stack, 'Dynamo').counterFunction;
    fn.addEnvironment('TIDB_PASSWORD_REF', secret.secretValueFromJson('password').unsafeUnwrap());
    fn.addEnvironment('DB_PASSWORD', 'hunter2');
    fn.addEnvironment('SOMETHING', PLANTED[0]);
    const findings = secretsInEnvironments(Template.fromStack(stack), PLANTED).join('\n');
    expect(findings).toMatch(/TIDB_PASSWORD_REF: a dynamic reference to a secret/);
    expect(findings).toMatch(/DB_PASSWORD: a credential-like name that is not an ARN/);
    expect(findings).toMatch(/SOMETHING: a known credential value/);
  });
});
