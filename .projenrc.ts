import * as fs from 'fs';
import * as path from 'path';
import { awscdk, javascript } from 'projen';
import { UpdateSnapshot } from 'projen/lib/javascript';

/**
 * The Node.js major our Lambda functions deploy with. Bundles target it and
 * CI runs the tests on it (see .ci/run). Lambda no longer lets anyone create
 * Node.js 20 functions (blocked since 2026-08-31).
 */
const LAMBDA_NODE_MAJOR = 24;

/**
 * The oldest Node.js major the library, its tools and its tests support:
 * `engines` says it, and CI runs the README's test command on it as well as
 * on LAMBDA_NODE_MAJOR (.ci/run). Node.js 20 reached end of life on
 * 2026-04-30 (the AWS SDK warns at every start on it).
 */
const MIN_NODE_MAJOR = 22;

const project = new awscdk.AwsCdkConstructLibrary({
  name: 'cdk-atomic-counter',
  description: 'One atomic counter API on five datastores (DynamoDB, ElastiCache Redis, Momento, DocumentDB, TiDB): correct under concurrency, secure by default, runnable locally.',
  author: 'cdk-atomic-counter maintainers',
  authorAddress: 'maintainers@example.com',
  repositoryUrl: 'https://github.com/example/cdk-atomic-counter.git',
  keywords: ['cdk', 'atomic-counter', 'dynamodb', 'redis', 'elasticache', 'momento', 'documentdb', 'tidb', 'api-gateway'],
  defaultReleaseBranch: 'main',
  packageManager: javascript.NodePackageManager.NPM,
  projenrcTs: true,
  // 2.259.0 is the first aws-cdk-lib whose own framework functions
  // (custom-resource providers, log retention) all run on nodejs24.x; older
  // versions put them on nodejs20.x, which Lambda no longer creates.
  cdkVersion: '2.259.0',
  jsiiVersion: '~6.0.0',
  workflowNodeVersion: `${LAMBDA_NODE_MAJOR}.x`,
  minNodeVersion: `${MIN_NODE_MAJOR}.0.0`,
  // The development tsconfig at the top level (tests, local tools, projenrc).
  tsconfigDevFile: 'tsconfig.dev.json',
  tsconfigDev: {
    compilerOptions: {},
    include: ['local/**/*.ts', '.projenrc.ts'],
    exclude: ['node_modules', 'examples', 'cdk.out', 'assets', 'lib', 'dist'],
  },
  // Handler-side code is bundled by esbuild (below), not compiled by jsii: it
  // is not part of the public API and never imports aws-cdk-lib.
  excludeTypescript: ['src/**/runtime/**'],
  // Lambda handlers are declared explicitly below (one bundle per entry).
  lambdaAutoDiscover: false,
  sampleCode: false,

  // jsii targets: configured so the library publishes to every CDK language.
  // CI only builds and packages the JavaScript target: the Python, Java and
  // .NET toolchains cannot be downloaded on our machines.
  publishToPypi: { distName: 'cdk-atomic-counter', module: 'cdk_atomic_counter' },
  publishToMaven: {
    javaPackage: 'io.github.cdkatomiccounter',
    mavenGroupId: 'io.github.cdkatomiccounter',
    mavenArtifactId: 'cdk-atomic-counter',
  },
  publishToNuget: { dotNetNamespace: 'CdkAtomicCounter', packageId: 'CdkAtomicCounter' },
  publishToGo: { moduleName: 'github.com/example/cdk-atomic-counter-go' },

  // Everything the handlers use is bundled into assets/ at build time, so the
  // clients are devDependencies: users of the library install none of them.
  devDeps: [
    '@aws-sdk/client-dynamodb@^3',
    '@aws-sdk/client-secrets-manager@^3',
    'ioredis@^5',
    '@gomomento/sdk@1.118.1',
    // @gomomento/sdk 1.118.1 depends on exactly these versions (and
    // @gomomento/generated-types declares them as exact peers). The local
    // Momento server (local/) serves the same generated services, so it must
    // load the very same grpc-js and google-protobuf the SDK talks with.
    '@gomomento/generated-types@0.133.3',
    '@grpc/grpc-js@1.13.5',
    'google-protobuf@3.21.2',
    'mongodb@^6',
    // A MongoDB-wire test server (no mongod can be installed here) is built on
    // MongoDB's own BSON codec and the mingo query/update language.
    'bson@^6',
    'mingo@^6',
    'mysql2@^3',
    '@types/aws-lambda',
    // DynamoDB Local (AWS's emulator) ships inside this package; the test
    // harness starts its jar with java. Other wrappers download it at run time.
    'amplify-dynamodb-simulator@^2.9',
    // The OpenAPI document (docs/openapi.json): answers are checked against
    // its JSON Schema 2020-12 components with ajv 8 (ajv's own 2020 build),
    // and the document itself against the OpenAPI 3.1 schema.
    'ajv@^8',
    '@seriousme/openapi-schema-validator@^2',
    // cdk-nag 3.x is a policy-validation plugin (needs aws-cdk-lib >= 2.257).
    'cdk-nag@^3',
    // AWS Control Tower's proactive guard rules and the cfn-guard binary, as a
    // policy-validation plugin: the example runs them at every synth and
    // test/constructs/cfn-guard.test.ts on every example variant (issue 19,
    // item 8). 0.0.x: pinned, a new rule set is a reviewed upgrade.
    '@cdklabs/cdk-validator-cfnguard@0.0.62',
    // The Node.js types of the OLDEST supported major (engines), not the
    // newest: code the tests and local tools run on Node 22 must not use an
    // API only Node 24 has. (projen derives the same from minNodeVersion;
    // stated here so that the reason travels with the pin.)
    `@types/node@^${MIN_NODE_MAJOR}`,
  ],
  jestOptions: {
    updateSnapshot: UpdateSnapshot.NEVER,
    jestConfig: {
      testTimeout: 120_000,
      // Integration tests mostly wait on engines: two workers keep both cores busy.
      maxWorkers: 2,
      collectCoverage: false,
      testPathIgnorePatterns: ['/node_modules/', '/examples/'],
      // Closes the bundled-handler containers each test file loaded.
      setupFilesAfterEnv: ['<rootDir>/test/kit/setup.ts'],
    },
  },
  eslintOptions: {
    dirs: ['src', 'local'],
    devdirs: ['test', 'local'],
    // The development tsconfig covers src, test and local (tsconfig.json, the
    // jsii one, covers only the published sources).
    tsconfigPath: './tsconfig.dev.json',
  },
  // Until the first release the API may still change.
  stability: 'experimental',
  // '/node_modules' (no trailing slash) also matches a symbolic link, as a
  // git worktree sharing the main checkout's dependencies has one.
  gitignore: ['/node_modules', '/.jsii.tabl.json', '/reports/', '/examples/cdk.out/', '/examples/node_modules/', '/examples/.env', '/examples/*_info.json', 'policy-validation-report.json'],
});

// The published package holds lib/, assets/ (the bundled handlers) and docs;
// the example app, local tools and reports stay in the repository.
for (const pattern of ['/examples/', '/local/', '/reports/', '/.ci/', 'policy-validation-report.json']) {
  project.addPackageIgnore(pattern);
}

// The project service would pick tsconfig.json (jsii's, which excludes tests,
// local tools and handler code) as the nearest config: parse every file with
// the development tsconfig instead.
const eslintrc = project.tryFindObjectFile('.eslintrc.json');
eslintrc?.addDeletionOverride('parserOptions.projectService');
eslintrc?.addOverride('parserOptions.project', './tsconfig.dev.json');
// Handler code imports the datastore clients, which esbuild bundles into
// assets/: they are devDependencies on purpose (library users never install them).
project.eslint?.addOverride({
  files: ['src/**/runtime/**/*.ts'],
  rules: { 'import/no-extraneous-dependencies': ['error', { devDependencies: true, optionalDependencies: false, peerDependencies: true }] },
});

/**
 * One esbuild bundle per Lambda entry: `assets/<path without src/>/index.js`.
 * The entries are the `*.lambda.ts` files of the backends' runtime folders, as
 * found on disk; each backend's contract file (`src/backends/<b>/<b>-env.ts`)
 * names its bundles in a `<B>_BUNDLES` constant, and
 * `test/project/bundle-entries.test.ts` checks the two agree.
 */
const LAMBDA_ENTRIES = fs.readdirSync('src/backends', { withFileTypes: true })
  .filter((backend) => backend.isDirectory())
  .flatMap((backend) => {
    const runtime = path.posix.join('src/backends', backend.name, 'runtime');
    return fs.existsSync(runtime) ? fs.readdirSync(runtime).filter((f) => f.endsWith('.lambda.ts')).map((f) => path.posix.join(runtime, f)) : [];
  })
  .sort();
for (const entry of LAMBDA_ENTRIES) {
  project.bundler.addBundle(entry, {
    platform: 'node',
    target: `node${LAMBDA_NODE_MAJOR}`,
    // The AWS SDK v3 is part of the Lambda Node.js runtime.
    externals: ['@aws-sdk/*'],
    // Not minified: `npx projen bench --cold` shows no faster module load
    // for minified bundles, a slower init on Redis, and a zipped package
    // only 10–30 % smaller (docs/cold-start.md).
    // An external map (index.js.map) beside each bundle; it ships with a
    // function only when the construct's `sourceMaps` prop asks for it.
    sourcemap: true,
    watchTask: false,
  });
}

// A fresh clone's tests run the bundled handlers: build the bundles first
// (esbuild, a few seconds) so `npx projen test` works right after `npm ci`.
project.testTask.prependSpawn(project.bundler.bundleTask);

// `build` packages the JavaScript target only: the Python, Java, .NET and Go
// toolchains cannot be downloaded on our machines. Where they exist,
// `npx projen package-all` packages every language.
project.packageTask.reset();
project.packageTask.spawn(project.tasks.tryFind('package:js')!);

const tsNode = 'ts-node --transpile-only --project tsconfig.dev.json';
project.addTask('bench', {
  description: 'Bundled handler vs bare client loop on a local engine: `npx projen bench --backend dynamo`',
  steps: [{ spawn: 'bundle' }, { exec: `${tsNode} local/bench.ts`, receiveArgs: true }],
});
project.addTask('local', {
  description: 'Serve the counter API on 127.0.0.1 with the bundled handlers and local engines',
  steps: [{ spawn: 'bundle' }, { exec: `${tsNode} local/server.ts`, receiveArgs: true }],
});
project.addTask('compare', {
  description: 'Run the same workload on every available backend and write a comparison report',
  steps: [{ spawn: 'bundle' }, { exec: `${tsNode} local/compare.ts`, receiveArgs: true }],
});

project.synth();
