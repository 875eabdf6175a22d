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
