/**
 * The repository explains itself: no file points at a document that is not
 * in it, and none names a path of somebody's machine (such a path means
 * nothing on a user's machine, and in the published `lib/*.d.ts` it leaks).
 */
import { execFileSync } from 'child_process';
import * as fs from 'fs';
import * as path from 'path';

const ROOT = path.join(__dirname, '..', '..');

/** Every file git tracks, plus untracked files not ignored (what the next commit may add). */
function repositoryFiles(): string[] {
  const out = execFileSync('git', ['ls-files', '--cached', '--others', '--exclude-standard', '-z'], { cwd: ROOT, encoding: 'utf8' });
  return out.split('\0').filter((f) => f && fs.existsSync(path.join(ROOT, f)) && !f.endsWith('package-lock.json'));
}

const FORBIDDEN: Array<[string, RegExp]> = [
  ['a design document outside the repository', /\bDESIGN\.md\b|\.\.\/shared\//],
  ['an absolute path of a machine', /(?<![\w.:/-])\/(?:work|root|home|Users|tmp\/bash_jobs)\/[\w.-]/],
  ['a Windows user path', /[A-Z]:\\\\?Users\\\\?/],
];

test('no file cites a document outside the repository or a path of a machine', () => {
  const self = path.relative(ROOT, __filename);
  const problems: string[] = [];
  for (const file of repositoryFiles()) {
    if (file === self) continue;
    const text = fs.readFileSync(path.join(ROOT, file));
    if (text.includes(0)) continue; // binary
    text.toString('utf8').split('\n').forEach((line, i) => {
      for (const [what, pattern] of FORBIDDEN) {
        if (pattern.test(line)) problems.push(`${file}:${i + 1}: ${what}: ${line.trim().slice(0, 120)}`);
      }
    });
  }
  expect(problems).toEqual([]);
});

test('the check itself finds what it forbids', () => {
  const hits = (line: string) => FORBIDDEN.filter(([, p]) => p.test(line)).map(([what]) => what);
  expect(hits('see DESIGN.md §3')).toEqual(['a design document outside the repository']);
  expect(hits('cat ../shared/ENGINES.md')).toEqual(['a design document outside the repository']);
  expect(hits('PREFIX=/root/.cache/x')).toEqual(['an absolute path of a machine']);
  expect(hits('open /work/main/src/index.ts')).toEqual(['an absolute path of a machine']);
  expect(hits('C:\\Users\\me\\repo')).toEqual(['a Windows user path']);
  expect(hits('https://example.com/work/x and ./local/x and docs/architecture.md')).toEqual([]);
});
