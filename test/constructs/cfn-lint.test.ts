import { execFileSync, spawnSync } from 'child_process';
import * as fs from 'fs';
import * as path from 'path';
import { buildExample, exampleDir, FULL_DOTENV } from './example-app';

/** The regions CI lints for (README "Operations", .ci/run). */
export const LINT_REGIONS = ['us-east-1', 'eu-west-1', 'ap-southeast-1'];

function cfnLintVersion(): string {
  try {
    return execFileSync('cfn-lint', ['--version'], { encoding: 'utf8' }).trim();
  } catch (e) {
    throw new Error(`cfn-lint is not on PATH (${(e as Error).message.split('\n')[0]}): install it with \`pip install cfn-lint\` (AWS's CloudFormation linter)`);
  }
}

describe('cfn-lint (AWS CloudFormation linter) on the example stack, every backend configured', () => {
  test(`no error in ${LINT_REGIONS.join(', ')}`, () => {
    const version = cfnLintVersion();
    const { app } = buildExample(exampleDir(FULL_DOTENV));
    const outdir = app.synth().directory;
    const templates = fs.readdirSync(outdir).filter((f) => f.endsWith('.template.json')).map((f) => path.join(outdir, f));
    expect(templates.length).toBeGreaterThan(0);
    const result = spawnSync('cfn-lint', ['--format', 'parseable', '--regions', ...LINT_REGIONS, '--', ...templates], { encoding: 'utf8' });
    const lines = result.stdout.split('\n').filter((l) => l.trim() !== '');
    // parseable: file:line:col:line:col:RULE:message; errors are E rules.
    const errors = lines.filter((l) => /:E\d{4}:/.test(l));
    expect({ version, errors }).toEqual({ version, errors: [] });
    // cfn-lint exits 0 (clean), 4 (warnings) or 8 (informational) when there is no error.
    expect([0, 4, 8, 12]).toContain(result.status);
  });
});
