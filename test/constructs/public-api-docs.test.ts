/**
 * Every public type, prop, property and method of the library carries a doc
 * comment, and every optional prop says what its default is: they become
 * API.md and the docs of every jsii language.
 */
import * as path from 'path';
/* eslint-disable no-bitwise -- TypeScript reports symbol and modifier flags as bit sets */
import * as ts from 'typescript';

const ENTRY = path.join(__dirname, '..', '..', 'src', 'index.ts');

function undocumented(): string[] {
  const program = ts.createProgram([ENTRY], { target: ts.ScriptTarget.ES2022, module: ts.ModuleKind.CommonJS, strict: true, skipLibCheck: true });
  const checker = program.getTypeChecker();
  const entry = checker.getSymbolAtLocation(program.getSourceFile(ENTRY)!)!;
  const missing: string[] = [];
  const docs = (s: ts.Symbol) => ts.displayPartsToString(s.getDocumentationComment(checker)).trim();
  const isOwn = (d: ts.Declaration) => d.getSourceFile().fileName.includes(`${path.sep}src${path.sep}`);

  for (const exported of checker.getExportsOfModule(entry)) {
    const symbol = exported.flags & ts.SymbolFlags.Alias ? checker.getAliasedSymbol(exported) : exported;
    const decl = symbol.declarations?.[0];
    if (!decl || !(ts.isClassDeclaration(decl) || ts.isInterfaceDeclaration(decl) || ts.isEnumDeclaration(decl))) continue;
    const name = symbol.getName();
    if (!docs(symbol)) missing.push(`${name}: no doc comment`);
    const members = checker.getPropertiesOfType(checker.getDeclaredTypeOfSymbol(symbol));
    for (const member of members) {
      const memberDecl = member.declarations?.[0];
      if (!memberDecl || !isOwn(memberDecl)) continue;
      const modifiers = ts.getCombinedModifierFlags(memberDecl);
      if (modifiers & (ts.ModifierFlags.Private | ts.ModifierFlags.Protected)) continue;
      const label = `${name}.${member.getName()}`;
      // An implementation inherits its interface's doc (ICounter, CounterBase).
      const inherited = ts.isClassDeclaration(decl) && !docs(member)
        ? decl.heritageClauses?.some((h) => h.types.some((t) => {
          const base = checker.getTypeAtLocation(t.expression);
          const baseMember = base.getProperty(member.getName()) ?? checker.getTypeAtLocation(t).getProperty(member.getName());
          return baseMember && docs(baseMember);
        }))
        : false;
      if (!docs(member) && !inherited) missing.push(`${label}: no doc comment`);
      if (ts.isInterfaceDeclaration(decl) && member.flags & ts.SymbolFlags.Optional) {
        // Every struct (props, options, ExistingEndpoint, …) and interface: Python and Java users read the default here.
        const tags = member.getJsDocTags(checker).map((t) => t.name);
        if (!tags.includes('default')) missing.push(`${label}: optional prop without @default`);
      }
    }
  }
  return missing;
}

test('every public type and member is documented; optional props state their default', () => {
  expect(undocumented()).toEqual([]);
});
