import { readFileSync } from 'node:fs';
import { Ajv2020, type ValidateFunction } from 'ajv/dist/2020.js';
import addFormats from 'ajv-formats';
import { parse } from 'yaml';

/**
 * Every answer the suites receive through `inject`, checked against the committed openapi.yaml (issue 15, item 4):
 * the status is declared for the operation, the content type is one it declares for that status, and the body
 * validates against that schema. Routes the document hides (docs, /openapi.json, /metrics) and unknown paths must
 * answer their errors as problem+json all the same.
 */
const document = parse(readFileSync(new URL('../../openapi.yaml', import.meta.url), 'utf8')) as {
  paths: Record<string, Record<string, { responses: Record<string, { content?: Record<string, { schema: unknown }> }> }>>;
  components: { schemas: Record<string, unknown> };
};

const ajv = new Ajv2020({ strict: false, allErrors: true });
addFormats.default(ajv);
ajv.addSchema({ $id: 'openapi', components: document.components }, 'openapi');

// Refs inside the document point at '#/components/…'; inside a schema compiled on its own they must name it.
const rebase = (schema: unknown): unknown =>
  JSON.parse(JSON.stringify(schema), (key, value) => (key === '$ref' && typeof value === 'string' && value.startsWith('#/') ? `openapi${value}` : value));

const compiled = new Map<string, ValidateFunction>();
function validatorFor(key: string, schema: unknown): ValidateFunction {
  let validate = compiled.get(key);
  if (!validate) compiled.set(key, (validate = ajv.compile(rebase(schema) as object)));
  return validate;
}

const routes = Object.entries(document.paths).map(([path, methods]) => ({
  pattern: new RegExp(`^${path.replace(/\{[^}]+\}/g, '[^/]+')}$`),
  methods,
}));

const HIDDEN = /^\/(docs(\/.*)?|openapi\.json|metrics)$/;
const problemKeys = ['code', 'detail', 'instance', 'status', 'title', 'type'];

export interface Answer {
  statusCode: number;
  headers: Record<string, unknown>;
  body: string;
}

/** What is wrong with an answer against the document, or null. */
export function specViolation(method: string, url: string, answer: Answer): string | null {
  const path = url.split('?')[0]!;
  const type = String(answer.headers['content-type'] ?? '').split(';')[0]!.trim();
  const route = routes.find((candidate) => candidate.pattern.test(path));
  const operation = route?.methods[method.toLowerCase()];
  if (!operation) {
    // Hidden routes answer what they like when they succeed; every error anywhere is a problem.
    if (answer.statusCode < 400 && (HIDDEN.test(path) || method === 'HEAD' || method === 'OPTIONS')) return null;
    if (answer.statusCode < 400) return `${method} ${path}: ${answer.statusCode} from a route the document does not have`;
    if (type !== 'application/problem+json') return `${method} ${path}: ${answer.statusCode} as ${type || 'no content type'}, not a problem`;
    const body = JSON.parse(answer.body) as Record<string, unknown>;
    return Object.keys(body).sort().join() === problemKeys.join() ? null : `${method} ${path}: problem with fields ${Object.keys(body).join()}`;
  }
  const declared = operation.responses[String(answer.statusCode)];
  if (!declared) return `${method} ${path}: status ${answer.statusCode} is not declared`;
  if (!declared.content) return answer.body.length === 0 ? null : `${method} ${path}: ${answer.statusCode} declares no body but has one`;
  const media = declared.content[type];
  if (!media) return `${method} ${path}: ${answer.statusCode} as ${type || 'no content type'}, declared ${Object.keys(declared.content).join(', ')}`;
  const validate = validatorFor(`${method} ${route!.pattern.source} ${answer.statusCode} ${type}`, media.schema);
  if (validate(JSON.parse(answer.body))) return null;
  return `${method} ${path}: ${answer.statusCode} body does not match: ${ajv.errorsText(validate.errors)}`;
}
