/**
 * Props handling shared by every construct: one validation that reports
 * every problem at once, and the merge helper for defaults.
 */
import { Token } from 'aws-cdk-lib';
import { IConstruct } from 'constructs';

/**
 * Collects every problem with a construct's props, then throws ONE error
 * that lists them all, prefixed by the construct's path
 * (`Stack/Api/RedisCounter: …`), so a user fixes every combination in one
 * round instead of one synth per mistake.
 */
export class PropsValidation {
  private readonly problems: string[] = [];

  constructor(private readonly scope: IConstruct) {}

  /** Records `problem` when there is one (e.g. from `importedSecretNameProblem`). */
  public problem(problem: string | undefined): this {
    if (problem !== undefined) this.problems.push(problem);
    return this;
  }

  /** Records `problem` unless `ok`. */
  public check(ok: boolean, problem: string): this {
    if (!ok) this.problems.push(problem);
    return this;
  }

  /**
   * `existing` (e.g. `existingEndpoint`) and the props that apply only to a
   * resource the construct creates exclude each other; the props that
   * describe the existing resource need it.
   */
  public existingOrCreated<P extends object>(props: P, existing: keyof P & string, spec: {
    /** Props that apply only to a created resource. */
    readonly createdOnly?: readonly (keyof P & string)[];
    /** Props that describe the existing resource (meaningless without it). */
    readonly existingOnly?: readonly (keyof P & string)[];
    /** Props required together with `existing`. */
    readonly requiredWithExisting?: readonly (keyof P & string)[];
    /** What is created without `existing`, for the messages. */
    readonly created: string;
  }): this {
    const given = (key: keyof P & string) => props[key] !== undefined;
    if (given(existing)) {
      const clash = (spec.createdOnly ?? []).filter(given);
      if (clash.length) this.problems.push(`${list(clash)} ${clash.length > 1 ? 'apply' : 'applies'} to ${spec.created} the construct creates; do not combine with \`${existing}\``);
      for (const key of spec.requiredWithExisting ?? []) {
        if (!given(key)) this.problems.push(`\`${existing}\` needs \`${key}\``);
      }
    } else {
      const orphans = [...(spec.requiredWithExisting ?? []), ...(spec.existingOnly ?? [])].filter(given);
      if (orphans.length) this.problems.push(`${list(orphans)} ${orphans.length > 1 ? 'describe' : 'describes'} an existing resource: give \`${existing}\` too, or leave ${orphans.length > 1 ? 'them' : 'it'} out to create ${spec.created}`);
    }
    return this;
  }

  /** `value` (unless a token or undefined) is an integer from `min` to `max`. */
  public integer(name: string, value: number | undefined, min: number, max = Number.MAX_SAFE_INTEGER): this {
    if (value === undefined || Token.isUnresolved(value)) return this;
    const range = max === Number.MAX_SAFE_INTEGER ? `≥ ${min}` : `from ${min} to ${max}`;
    return this.check(Number.isSafeInteger(value) && value >= min && value <= max, `\`${name}\` must be an integer ${range} (got ${value})`);
  }

  /** `value` (unless a token or undefined) is a finite number ≥ `min`. */
  public number(name: string, value: number | undefined, min: number): this {
    if (value === undefined || Token.isUnresolved(value)) return this;
    return this.check(Number.isFinite(value) && value >= min, `\`${name}\` must be a number ≥ ${min} (got ${value})`);
  }

  /** Throws one error listing every problem recorded; does nothing without any. */
  public throwIfInvalid(): void {
    if (this.problems.length === 0) return;
    const where = this.scope.node.path;
    if (this.problems.length === 1) throw new Error(`${where}: ${this.problems[0]}`);
    throw new Error(`${where}: ${this.problems.length} problems with its props:\n${this.problems.map((p) => `  - ${p}`).join('\n')}`);
  }
}

function list(keys: readonly string[]): string {
  return keys.map((k) => `\`${k}\``).join(', ');
}

/** Drops keys whose value is undefined, so spreading props keeps defaults. */
export function stripUndefined<T extends object>(value: T): T {
  return Object.fromEntries(Object.entries(value).filter(([, v]) => v !== undefined)) as T;
}
