#!/usr/bin/env node
import * as path from 'path';
import { App, Validations } from 'aws-cdk-lib';
import { AwsSolutionsChecks } from 'cdk-nag';
import { AtomicCounterExampleStack } from '../lib/atomic-counter-example-stack';
import { ConfigError, ExampleConfig, loadExampleConfig } from '../lib/config';
import { ControlTowerGuardRules } from '../lib/guard-rules';

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
// The stack name (STACK_NAME or -c stackName=…) is also the deployment's
// identity: a second copy in the same account needs no code change.
new AtomicCounterExampleStack(app, config.stackName, {
  description: 'Atomic counter API: one counter per datastore behind one REST API (cdk-atomic-counter example)',
  config,
});

// The AWS Solutions checks and AWS Control Tower's proactive guard rules run
// on every synth: an unacknowledged finding of either fails it (accepted
// ones: lib/nag-acknowledgements.ts, lib/guard-rules.ts).
Validations.of(app).addPlugins(new AwsSolutionsChecks(app), new ControlTowerGuardRules());

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
