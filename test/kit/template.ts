import { Template } from 'aws-cdk-lib/assertions';

/**
 * Every Lambda runtime a template can deploy with, `Fn::FindInMap` lookups
 * resolved to all the values their mapping holds (a region-agnostic stack
 * maps runtimes per region).
 */
export function lambdaRuntimes(template: Template): Array<{ logicalId: string; runtime: string }> {
  const json = template.toJSON();
  const mappings: Record<string, Record<string, Record<string, string>>> = json.Mappings ?? {};
  const out: Array<{ logicalId: string; runtime: string }> = [];
  for (const [logicalId, resource] of Object.entries<any>(json.Resources ?? {})) {
    if (resource.Type !== 'AWS::Lambda::Function') continue;
    const runtime = resource.Properties?.Runtime;
    if (typeof runtime === 'string') {
      out.push({ logicalId, runtime });
    } else if (runtime?.['Fn::FindInMap']) {
      const [mapName, , key] = runtime['Fn::FindInMap'];
      const rows = mappings[mapName];
      if (!rows) throw new Error(`${logicalId}: runtime mapping ${mapName} not found`);
      for (const row of Object.values(rows)) out.push({ logicalId, runtime: row[key] });
    } else {
      throw new Error(`${logicalId}: cannot resolve runtime ${JSON.stringify(runtime)}`);
    }
  }
  return out;
}

/** Node.js major of a runtime name (`nodejs22.x` → 22), or undefined for other languages. */
export function nodeMajor(runtime: string): number | undefined {
  const m = /^nodejs(\d+)\.x$/.exec(runtime);
  return m ? Number(m[1]) : undefined;
}

/** Every Lambda function of a template: logical id → description and `Environment.Variables` (`{}` without one). */
export function functionEnvironments(template: Template): Record<string, { description: string; variables: Record<string, unknown> }> {
  const out: Record<string, { description: string; variables: Record<string, unknown> }> = {};
  for (const [logicalId, resource] of Object.entries<any>(template.findResources('AWS::Lambda::Function'))) {
    out[logicalId] = { description: resource.Properties?.Description ?? '', variables: resource.Properties?.Environment?.Variables ?? {} };
  }
  return out;
}

/**
 * The environment of the one function whose description matches, to compare
 * with `toEqual` (exactly: an extra variable fails).
 */
export function environmentOf(template: Template, description: RegExp): Record<string, unknown> {
  const matches = Object.values(functionEnvironments(template)).filter((f) => description.test(f.description));
  if (matches.length !== 1) throw new Error(`${matches.length} functions have a description matching ${description}`);
  return matches[0].variables;
}

/** Variable names that would hold a credential (an ARN pointing at one is fine). */
const SECRET_LIKE_NAME = /pass(word|wd)?|pwd|token|api_?key|secret|credential|private|auth/i;

/**
 * Every environment variable of every function that holds a secret or a
 * secret reference: a `{{resolve:secretsmanager:…}}` / `{{resolve:ssm-secure:…}}`
 * dynamic reference, a `SecretString`, a PEM private key, one of `knownValues`,
 * or a credential-like name (password, token, API key, secret, …) whose
 * variable is not an `…_ARN`. One line per finding.
 */
export function secretsInEnvironments(template: Template, knownValues: string[] = []): string[] {
  const findings: string[] = [];
  for (const [logicalId, { variables }] of Object.entries(functionEnvironments(template))) {
    for (const [name, value] of Object.entries(variables)) {
      const text = JSON.stringify(value);
      const where = `${logicalId}.${name}`;
      if (/resolve:(secretsmanager|ssm-secure)/.test(text)) findings.push(`${where}: a dynamic reference to a secret`);
      if (/SecretString/.test(text)) findings.push(`${where}: a SecretString`);
      if (/PRIVATE KEY/.test(text)) findings.push(`${where}: a private key`);
      for (const known of knownValues) if (text.includes(known)) findings.push(`${where}: a known credential value`);
      if (SECRET_LIKE_NAME.test(name) && !/_ARN$/.test(name)) findings.push(`${where}: a credential-like name that is not an ARN`);
    }
  }
  return findings;
}

/** The message of what `build` throws, or `(nothing thrown)`. */
export function thrown(build: () => unknown): string {
  try {
    build();
  } catch (e) {
    return (e as Error).message;
  }
  return '(nothing thrown)';
}
