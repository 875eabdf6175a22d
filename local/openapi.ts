/**
 * The counter API's OpenAPI document (docs/openapi.json) and a checker that
 * holds an HTTP answer to it: status documented for the operation, body valid
 * against the response's JSON Schema, required headers present and valid.
 * The local server serves the document; the conformance kit checks every
 * answer it receives with `checkAnswer`.
 */
import * as fs from 'fs';
import * as path from 'path';
import Ajv2020, { ValidateFunction } from 'ajv/dist/2020';

export const OPENAPI_PATH = path.join(__dirname, '..', 'docs', 'openapi.json');

type Json = Record<string, any>;

let document: Json | undefined;

/** The OpenAPI document, parsed once. */
export function openApiDocument(): Json {
  document ??= JSON.parse(fs.readFileSync(OPENAPI_PATH, 'utf8')) as Json;
  return document;
}

const DOC_ID = 'https://cdk-atomic-counter.local/openapi.json';
let ajv: Ajv2020 | undefined;
const validators = new Map<string, ValidateFunction>();

/** A JSON Schema validator for a JSON pointer into the document (`#/components/schemas/Read`). */
function validatorAt(pointer: string): ValidateFunction {
  let validate = validators.get(pointer);
  if (!validate) {
    if (!ajv) {
      // The document is not itself a schema: strict mode would reject its
      // OpenAPI keywords. Schemas below `components` are JSON Schema 2020-12,
      // as OpenAPI 3.1 defines them, and are reached by pointer.
      ajv = new Ajv2020({ strict: false, allErrors: true });
      ajv.addSchema({ ...openApiDocument(), $id: DOC_ID });
    }
    const found = ajv.getSchema(`${DOC_ID}${pointer}`); // pointer starts with '#'
    if (!found) throw new Error(`openapi.json has no schema at ${pointer}`);
    validate = found;
    validators.set(pointer, validate);
  }
  return validate;
}

/** Follows `$ref`s to components (`#/components/responses/X`) inside the document. */
function deref(node: Json): Json {
  let current = node;
  for (let hops = 0; current && typeof current.$ref === 'string'; hops++) {
    if (hops > 10) throw new Error(`openapi.json: $ref loop at ${current.$ref}`);
    current = resolvePointer(current.$ref);
  }
  return current;
}

function resolvePointer(ref: string): Json {
  if (!ref.startsWith('#/')) throw new Error(`openapi.json: only local $refs are supported (${ref})`);
  let node: any = openApiDocument();
  for (const part of ref.slice(2).split('/')) node = node?.[part.replace(/~1/g, '/').replace(/~0/g, '~')];
  if (node === undefined) throw new Error(`openapi.json: $ref ${ref} points nowhere`);
  return node;
}

/** Where a `$ref`'d schema lives, as a pointer; inline schemas get a pointer to where they sit. */
function schemaPointer(responsePointer: string, response: Json, mediaType: string): string {
  const schema = response.content?.[mediaType]?.schema;
  if (!schema) throw new Error(`openapi.json: ${responsePointer} has no ${mediaType} schema`);
  if (typeof schema.$ref === 'string') return schema.$ref;
  return `${responsePointer}/content/${mediaType.replace(/\//g, '~1')}/schema`;
}

export interface AnswerToCheck {
  readonly status: number;
  readonly body: unknown;
  readonly headers?: Record<string, string | undefined>;
}

/**
 * Problems of `answer` to `method` on the counter route, against the document;
 * an empty list means the answer conforms.
 */
export function checkAnswer(method: string, answer: AnswerToCheck): string[] {
  const operation = openApiDocument().paths['/{backend}/{id}']?.[method.toLowerCase()];
  if (!operation) {
    // Every other method is undocumented: its only answer is the 404.
    return answer.status === 404 ? checkResponse('#/components/responses/NotFound', answer) : [`${method}: undocumented method answered ${answer.status}`];
  }
  const response = operation.responses[String(answer.status)];
  if (!response) return [`${method} answered ${answer.status}, which the document does not list for that operation`];
  const pointer = typeof response.$ref === 'string' ? response.$ref : `#/paths/~1{backend}~1{id}/${method.toLowerCase()}/responses/${answer.status}`;
  return checkResponse(pointer, answer);
}

function checkResponse(pointer: string, answer: AnswerToCheck): string[] {
  const response = deref(resolvePointer(pointer));
  const problems: string[] = [];
  const validate = validatorAt(schemaPointer(pointer, response, 'application/json'));
  if (!validate(answer.body)) {
    for (const e of validate.errors ?? []) problems.push(`${answer.status} body${e.instancePath} ${e.message}`);
  }
  const headers = lowerCaseKeys(answer.headers ?? {});
  for (const [name, header] of Object.entries<Json>(response.headers ?? {})) {
    const spec = deref(header);
    const value = headers[name.toLowerCase()];
    if (value === undefined) {
      if (spec.required) problems.push(`${answer.status} lacks required header ${name}`);
      continue;
    }
    const check = headerValidator(spec.schema ?? {});
    if (!check(value)) problems.push(`${answer.status} header ${name}: ${JSON.stringify(value)} ${check.errors?.[0]?.message}`);
  }
  return problems;
}

const headerValidators = new Map<string, ValidateFunction>();
function headerValidator(schema: Json): ValidateFunction {
  const key = JSON.stringify(schema);
  let validate = headerValidators.get(key);
  if (!validate) {
    validate = new Ajv2020({ strict: false }).compile(schema);
    headerValidators.set(key, validate);
  }
  return validate;
}

function lowerCaseKeys(headers: Record<string, string | undefined>): Record<string, string | undefined> {
  const out: Record<string, string | undefined> = {};
  for (const [k, v] of Object.entries(headers)) out[k.toLowerCase()] = v;
  return out;
}
