/**
 * Every TypeScript snippet of the README and docs/ compiles against the
 * library's sources, in the same context jsii-rosetta gives it on Construct
 * Hub (rosetta/default.ts-fixture); every Python snippet parses and uses
 * only names and keyword arguments the library has. A renamed prop or class
 * fails here before a reader copies a snippet that no longer works.
 */
import { execFileSync } from 'child_process';
import * as fs from 'fs';
import * as path from 'path';
import * as ts from 'typescript';

const ROOT = path.join(__dirname, '..', '..');
const FIXTURE = path.join(ROOT, 'rosetta', 'default.ts-fixture');
const DOCUMENTS = ['README.md', 'examples/README.md', ...fs.readdirSync(path.join(ROOT, 'docs')).filter((f) => f.endsWith('.md')).map((f) => `docs/${f}`)];

interface Snippet {
  readonly file: string;
  /** The fence's info string after the language (`nofixture`, `fixture=name`), as jsii-rosetta reads it. */
  readonly parameters: string;
  /** Line of the first code line in the markdown file (1-based). */
  readonly line: number;
  readonly code: string;
}

function snippets(languages: string[]): Snippet[] {
  const out: Snippet[] = [];
  for (const file of DOCUMENTS) {
    const lines = fs.readFileSync(path.join(ROOT, file), 'utf8').split('\n');
    for (let i = 0; i < lines.length; i++) {
      const open = /^```(\w+)(.*)$/.exec(lines[i]);
      if (!open || !languages.includes(open[1])) continue;
      const start = i + 1;
      let end = start;
      while (end < lines.length && !lines[end].startsWith('```')) end++;
      out.push({ file, line: start + 1, parameters: open[2].trim(), code: lines.slice(start, end).join('\n') });
      i = end;
    }
  }
  return out;
}

const tsSnippets = snippets(['ts', 'typescript']);
const pySnippets = snippets(['python', 'py']);

test('the documentation has snippets to check (README and docs/)', () => {
  expect(tsSnippets.length).toBeGreaterThanOrEqual(5);
  expect(pySnippets.length).toBeGreaterThanOrEqual(1);
});

test('every TypeScript snippet compiles as jsii-rosetta compiles it (inside the rosetta fixture unless marked nofixture)', () => {
  // Inside the repository, so the snippets resolve aws-cdk-lib and constructs
  // from its node_modules as a user's app resolves them from its own.
  const cache = path.join(ROOT, 'node_modules', '.cache');
  fs.mkdirSync(cache, { recursive: true });
  const dir = fs.mkdtempSync(path.join(cache, 'doc-snippets-'));
  const fixture = fs.readFileSync(FIXTURE, 'utf8');
  const files = new Map<string, Snippet>();
  tsSnippets.forEach((snippet, i) => {
    // As jsii-rosetta does: the default fixture wraps every snippet unless
    // its fence says `nofixture` (a complete program with its own imports).
    const standalone = /(^|\s)nofixture(\s|$)/.test(snippet.parameters);
    const source = standalone ? snippet.code : fixture.replace('/// here', snippet.code);
    // Each snippet is a module of its own, so top-level names never clash.
    const name = path.join(dir, `snippet-${i}.ts`);
    fs.writeFileSync(name, `${source}\nexport {};\n`);
    files.set(name, snippet);
  });
  const program = ts.createProgram([...files.keys()], {
    target: ts.ScriptTarget.ES2022,
    module: ts.ModuleKind.CommonJS,
    moduleResolution: ts.ModuleResolutionKind.Node10,
    strict: true,
    noEmit: true,
    skipLibCheck: true,
    noUnusedLocals: false,
    baseUrl: ROOT,
    paths: { 'cdk-atomic-counter': ['src/index.ts'] },
    typeRoots: [path.join(ROOT, 'node_modules', '@types')],
    types: ['node'],
  });
  const problems = ts.getPreEmitDiagnostics(program)
    .filter((d) => d.file && files.has(path.normalize(d.file.fileName)))
    .map((d) => {
      const snippet = files.get(path.normalize(d.file!.fileName))!;
      const { line } = d.file!.getLineAndCharacterOfPosition(d.start ?? 0);
      return `${snippet.file} (snippet at line ${snippet.line}, its line ${line + 1}): ${ts.flattenDiagnosticMessageText(d.messageText, '\n')}`;
    });
  fs.rmSync(dir, { recursive: true, force: true });
  expect(problems).toEqual([]);
});

/** What Python sees of the library: exported classes and, per class or struct, its props in snake_case. */
function pythonSurface(): Map<string, Set<string> | undefined> {
  const program = ts.createProgram([path.join(ROOT, 'src', 'index.ts')], { target: ts.ScriptTarget.ES2022, skipLibCheck: true, noEmit: true });
  const checker = program.getTypeChecker();
  const index = program.getSourceFile(path.join(ROOT, 'src', 'index.ts'))!;
  const exports = checker.getExportsOfModule(checker.getSymbolAtLocation(index)!);
  const snake = (s: string) => s.replace(/[A-Z]/g, (c) => `_${c.toLowerCase()}`);
  const propsOf = (name: string): Set<string> | undefined => {
    const symbol = exports.find((e) => e.name === name);
    if (!symbol) return undefined;
    // eslint-disable-next-line no-bitwise -- TypeScript's symbol flags are a bit set
    const resolved = symbol.flags & ts.SymbolFlags.Alias ? checker.getAliasedSymbol(symbol) : symbol;
    const type = checker.getDeclaredTypeOfSymbol(resolved);
    return new Set(checker.getPropertiesOfType(type).map((p) => snake(p.name)));
  };
  const surface = new Map<string, Set<string> | undefined>();
  for (const e of exports) {
    // A construct's keyword arguments are the props of `<Name>Props`; a
    // struct's are its own fields.
    surface.set(e.name, e.name.endsWith('Props') ? propsOf(e.name) : propsOf(`${e.name}Props`));
  }
  return surface;
}

test('every Python snippet parses, imports only exported names and passes only existing props', () => {
  const surface = pythonSurface();
  const problems: string[] = [];
  for (const snippet of pySnippets) {
    // Python's own parser: syntax, and each call of a library name with its keyword arguments.
    const script = [
      'import ast, json, sys',
      'tree = ast.parse(sys.stdin.read())',
      'imported = [a.name for n in ast.walk(tree) if isinstance(n, ast.ImportFrom) and n.module == "cdk_atomic_counter" for a in n.names]',
      'calls = [[n.func.id, [k.arg for k in n.keywords if k.arg]] for n in ast.walk(tree) if isinstance(n, ast.Call) and isinstance(n.func, ast.Name)]',
      'print(json.dumps({"imported": imported, "calls": calls}))',
    ].join('\n');
    let parsed: { imported: string[]; calls: [string, string[]][] };
    try {
      parsed = JSON.parse(execFileSync('python3', ['-c', script], { input: snippet.code, encoding: 'utf8', stdio: ['pipe', 'pipe', 'pipe'] }));
    } catch (err) {
      problems.push(`${snippet.file}:${snippet.line}: does not parse as Python: ${(err as { stderr?: string }).stderr?.trim().split('\n').pop()}`);
      continue;
    }
    for (const name of parsed.imported) {
      if (!surface.has(name)) problems.push(`${snippet.file}:${snippet.line}: cdk_atomic_counter has no ${name}`);
    }
    for (const [name, keywords] of parsed.calls) {
      if (!parsed.imported.includes(name)) continue;
      const props = surface.get(name);
      for (const k of keywords) {
        if (!props?.has(k)) problems.push(`${snippet.file}:${snippet.line}: ${name}(…) has no keyword argument ${k}`);
      }
    }
  }
  expect(problems).toEqual([]);
});
