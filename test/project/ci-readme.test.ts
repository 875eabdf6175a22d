import { execFileSync } from 'child_process';
import * as fs from 'fs';
import * as path from 'path';

const ROOT = path.join(__dirname, '..', '..');
const CI = fs.readFileSync(path.join(ROOT, '.ci', 'run'), 'utf8');
const TASKS: Record<string, { steps?: Array<{ spawn?: string; exec?: string }> }> = JSON.parse(fs.readFileSync(path.join(ROOT, '.projen', 'tasks.json'), 'utf8')).tasks;

/** The heading .ci/run takes the example's build commands from. */
function ciHeading(): string {
  const m = /^\s*heading="([^"]+)"$/m.exec(CI);
  if (!m) throw new Error('.ci/run sets no heading="…" for .ci/readme-commands');
  return m[1];
}

/** What .ci/run executes: the README block, extracted by the same script. */
function documentedCommands(): string {
  return execFileSync(path.join(ROOT, '.ci', 'readme-commands'), [path.join(ROOT, 'examples', 'README.md'), ciHeading()], { encoding: 'utf8' });
}

/** Every projen task a task runs, itself included (following `spawn`). */
function expand(task: string, seen = new Set<string>()): Set<string> {
  if (seen.has(task)) return seen;
  if (!TASKS[task]) throw new Error(`no projen task "${task}"`);
  seen.add(task);
  for (const step of TASKS[task].steps ?? []) if (step.spawn) expand(step.spawn, seen);
  return seen;
}

describe('examples/README.md build commands = what CI runs', () => {
  test('.ci/run runs the README block literally, in a clean clone, and lints what it synthesizes', () => {
    expect(fs.readFileSync(path.join(ROOT, 'examples', 'README.md'), 'utf8')).toContain(`\n## ${ciHeading()}\n`);
    expect(CI).toContain('commands=$(.ci/readme-commands "$clone/examples/README.md" "$heading")');
    expect(CI).toMatch(/git clone [^\n]*"\$clone"/);
    expect(CI).toMatch(/bash -euo pipefail -c "\$commands"/);
    expect(CI).toContain('templates=("$clone"/examples/cdk.out/*.template.json)');
    expect(CI).toMatch(/cfn-lint --format parseable --regions "\$\{lint_regions\[@\]\}" -- "\$\{templates\[@\]\}"/);
    expect(CI).toContain('lint_regions=(us-east-1 eu-west-1 ap-southeast-1)');
  });

  test('.ci/run also synthesizes the example with each backend left out in turn (BACKENDS), and lints those templates too', () => {
    const config = fs.readFileSync(path.join(ROOT, 'examples', 'lib', 'config.ts'), 'utf8');
    const names = JSON.parse(`[${/BACKEND_NAMES = \[([^\]]+)\]/.exec(config)![1].replace(/'/g, '"')}]`);
    expect(CI).toContain(`backends=(${names.join(' ')})`);
    expect(CI).toMatch(/BACKENDS="\$keep"[^\n]*\n\s*npx cdk synth --quiet -o "cdk\.out\.without-\$out"/);
    expect(CI).toContain('templates+=("$clone"/examples/cdk.out.without-"$out"/*.template.json)');
    // The guard rules run inside every synth (a policy validation plugin of the app).
    expect(fs.readFileSync(path.join(ROOT, 'examples', 'bin', 'atomic-counter-example.ts'), 'utf8')).toMatch(/addPlugins\(.*new ControlTowerGuardRules\(\)/);
  });

  test('.ci/run runs the README\'s test command on Node.js 22 and 24, the majors package.json\'s engines and the Lambda runtime name', () => {
    const pkg = JSON.parse(fs.readFileSync(path.join(ROOT, 'package.json'), 'utf8'));
    expect(pkg.engines).toEqual({ node: '>= 22.0.0' });
    expect(CI).toContain('NODE22_BIN=$(install_node 22)');
    expect(CI).toContain('NODE24_BIN=$(install_node 24)');
    expect(CI).toContain('run_tests "$NODE22_BIN" node22');
    expect(CI).toMatch(/^run_tests .* node24$/m);
    expect(CI).toMatch(/PATH="\$bin:\$PATH" npx projen test/);
    expect(fs.readFileSync(path.join(ROOT, 'README.md'), 'utf8')).toContain('Node.js 22 or later');
  });

  test('the documented commands build the handler bundles and lib/ before synthesizing (else cdk synth fails with CannotFindAsset)', () => {
    const commands = documentedCommands();
    const tasks = [...commands.matchAll(/npx projen ([a-z:-]+)/g)].map((m) => m[1]);
    const run = new Set(tasks.flatMap((t) => [...expand(t)]));
    expect([...run]).toEqual(expect.arrayContaining(['bundle', 'compile']));
    // The bundles exist before the library is compiled, and both before the example synthesizes.
    const bundleAt = tasks.findIndex((t) => expand(t).has('bundle'));
    const compileAt = tasks.findIndex((t) => expand(t).has('compile'));
    expect(bundleAt).toBeGreaterThanOrEqual(0);
    expect(compileAt).toBeGreaterThanOrEqual(0);
    expect(commands.indexOf('cdk synth')).toBeGreaterThan(commands.indexOf(`npx projen ${tasks[Math.max(bundleAt, compileAt)]}`));
    expect(commands).toMatch(/^cd examples && npm ci/m);
  });
});
