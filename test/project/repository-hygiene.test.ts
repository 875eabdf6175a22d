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

// The names are assembled so this file does not itself hold what it forbids.
const BRIEF = ['DESIGN', 'md'].join('\\.');
const SHARED = ['\\.\\.', 'shared', ''].join('/');
const FORBIDDEN: Array<[string, RegExp]> = [
  ['a design document outside the repository', new RegExp(`\\b${BRIEF}\\b|\\b(?:ENGINES|STYLE)\\.md\\b|${SHARED}`)],
  ['an absolute path of a machine', /(?<![\w.:/-])\/(?:work|root|home|Users|tmp\/bash_jobs)\/[\w.-]/],
  ['a Windows user path', /[A-Z]:\\\\?Users\\\\?/],
];

test('no file cites a document outside the repository or a path of a machine', () => {
  const problems: string[] = [];
  for (const file of repositoryFiles()) {
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
  const slash = '/';
  expect(hits(`see ${'DESIGN'}.md §3`)).toEqual(['a design document outside the repository']);
  expect(hits(`cat ..${slash}shared${slash}notes`)).toEqual(['a design document outside the repository']);
  expect(hits(`as ${'ENGINES'}.md says`)).toEqual(['a design document outside the repository']);
  expect(hits(`PREFIX=${slash}root${slash}.cache${slash}x`)).toEqual(['an absolute path of a machine']);
  expect(hits(`open ${slash}work${slash}main${slash}src`)).toEqual(['an absolute path of a machine']);
  expect(hits(['C:', 'Users', 'me'].join('\\'))).toEqual(['a Windows user path']);
  expect(hits(`https://example.com${slash}work${slash}x and ./local/x and docs/architecture.md`)).toEqual([]);
});
