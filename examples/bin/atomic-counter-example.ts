#!/usr/bin/env node
import * as path from 'path';
import { App, Validations } from 'aws-cdk-lib';
import { AwsSolutionsChecks } from 'cdk-nag';
import { AtomicCounterExampleStack } from '../lib/atomic-counter-example-stack';
import { ConfigError, ExampleConfig, loadExampleConfig } from '../lib/config';

assertOneAwsCdkLib();
const app = new App();

let config: ExampleConfig;
try {
  config = loadExampleConfig({ dir: path.join(__dirname, '..'), env: process.env, context: (key) => app.node.tryGetContext(key) });
} catch (e) {
  if (!(e instanceof ConfigError)) throw e;
  // One line naming the variable or file; no stack trace for a configuration mistake.
  console.error(`Configuration error: ${e.message}`);
  process.exit(1);
}

// Account-free: no env, so `cdk synth` needs no credentials and makes no
// lookups; `cdk deploy` targets the account and region of the CLI's credentials.
new AtomicCounterExampleStack(app, 'AtomicCounterExample', {
  description: 'Atomic counter API on DynamoDB, ElastiCache Redis, Momento, DocumentDB and TiDB (cdk-atomic-counter example)',
  config,
});

// The AWS Solutions checks run on every synth: an unacknowledged finding fails it.
Validations.of(app).addPlugins(new AwsSolutionsChecks(app));

/**
 * The app, the library and cdk-nag must load the same aws-cdk-lib: with two
 * copies, cdk-nag's `instanceof CfnResource` is false for the library's
 * resources and every check on them passes silently.
 */
function assertOneAwsCdkLib(): void {
  const ours = require.resolve('aws-cdk-lib');
  const library = require.resolve('aws-cdk-lib', { paths: [path.dirname(require.resolve('cdk-atomic-counter'))] });
  const nag = require.resolve('aws-cdk-lib', { paths: [path.dirname(require.resolve('cdk-nag'))] });
  if (new Set([ours, library, nag]).size !== 1) {
    console.error(`Setup error: two copies of aws-cdk-lib (${ours}, ${library}, ${nag}); remove aws-cdk-lib, constructs and cdk-nag from examples/node_modules (see examples/package.json)`);
    process.exit(1);
  }
}
