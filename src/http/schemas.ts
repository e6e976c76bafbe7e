import { z } from 'zod';
import { TOKEN_PATTERN } from '../crypto/tokens.js';
import type { ErrorCode } from '../errors.js';
import { LINE_TYPES, MAX_PHONE_INPUT } from '../phone/parse.js';
import { isSafeText } from '../text.js';
import { PROBLEMS } from './problem.js';

/** Request and response shapes; unknown fields are refused on the way in and dropped on the way out. */

/** Text from a request: bounded, and never a control character, a line separator or a lone surrogate. */
export const safeText = (max: number) => z.string().min(1).max(max).refine(isSafeText, { message: 'holds characters the vault does not accept' });

export const phoneField = safeText(MAX_PHONE_INPUT).describe('A phone number in any common format');
export const countryField = z
  .string()
  .regex(/^[A-Za-z]{2}$/)
  .describe('ISO 3166 alpha-2 region used for numbers written without their country code');
export const tokenField = z.string().regex(TOKEN_PATTERN).describe('A vault token: `tok_` and 22 base64url characters, or phone-shaped, `+28` and 13 digits');
export const formatField = z
  .enum(['opaque', 'phone'])
  .describe('`opaque` (default): `tok_…`; `phone`: a 15-digit E.164 string in the never-assigned country-code block 28x, which no phone can dial');
const TEN_YEARS = 10 * 365 * 24 * 3600;
export const ttlField = z.int().min(1).max(TEN_YEARS).describe('Seconds until the token expires');
export const lineTypeField = z.enum(LINE_TYPES);
export const timestamp = z.iso.datetime();
/** The codes an item of a batch can fail with, the rest of the batch going on. */
export const itemErrorSchema = z.object({ code: z.enum(['invalid_phone', 'invalid_country']), detail: z.string() });

export const bearerSecurity = [{ bearer: [] }];

/** The headers of a write that may be retried safely; every other header passes through as it came. */
export const idempotentHeaders = z.looseObject({
  'idempotency-key': z
    .string()
    .regex(/^[\x21-\x7e]{1,255}$/)
    .optional()
    .describe('Makes a retry of this request safe: the same key with the same request, within 24 h, gets the first answer again and writes nothing more'),
});

/** What the three idempotent writes can answer besides their own codes. */
export const IDEMPOTENT: ErrorCode[] = ['idempotency_in_flight', 'idempotency_key_reused'];

/** Marks an answer given again for an Idempotency-Key. */
export const REPLAYED_HEADER = 'idempotent-replayed';

/** What every route can answer, whoever calls it: refused text, the IP's budget, overload, a failure. */
const ANY_ROUTE: ErrorCode[] = ['invalid_request', 'unsupported_media_type', 'expectation_failed', 'uri_too_long', 'headers_too_large', 'rate_limited', 'unavailable', 'internal_error'];
/** What every authenticated route adds: the credential, its scopes, and the stated purpose. */
const AUTHENTICATED: ErrorCode[] = ['unauthorized', 'insufficient_scope', 'invalid_purpose'];
/** What a route that reads a body adds (DELETE included: Fastify parses a body sent with it). */
const WITH_BODY: ErrorCode[] = ['invalid_json', 'payload_too_large'];

const STATUS_DESCRIPTIONS: Record<number, string> = {
  400: 'The request, its JSON, a phone number, a country or the purpose is invalid',
  401: 'Missing, invalid or expired credential',
  403: 'The credential lacks the scope this call needs',
  404: 'No such resource in the caller’s tenant',
  409: 'The first request with this Idempotency-Key is still being processed; retry after retry-after seconds',
  413: 'The request body is larger than the vault takes',
  414: 'The URL is longer than the vault takes',
  415: 'The body is not application/json in UTF-8',
  417: 'An Expect header other than 100-continue',
  422: 'This Idempotency-Key was used with another request',
  431: 'The request headers are larger than the vault takes',
  429: 'A rate limit or item budget is spent; retry after retry-after seconds',
  500: 'The vault failed; nothing was returned or changed',
  503: 'Storage, the throttling store or the issuer’s keys are unreachable, or the vault is overloaded; retry after retry-after seconds',
};

const retryAfter = { 'retry-after': { type: 'integer', minimum: 1, description: 'Seconds to wait before retrying' } };

export type SchemaRegistry = ReturnType<typeof createSchemaRegistry>;

/** A WeakMap that answers from another when it has no entry of its own. */
class FallbackWeakMap<K extends object, V> extends WeakMap<K, V> {
  readonly #fallback: WeakMap<K, V>;
  constructor(fallback: WeakMap<K, V>) {
    super();
    this.#fallback = fallback;
  }
  override get(key: K): V | undefined {
    return super.get(key) ?? this.#fallback.get(key);
  }
  override has(key: K): boolean {
    return super.has(key) || this.#fallback.has(key);
  }
}

/**
 * The names of one app's schemas in its OpenAPI document (#/components/schemas/<id>). One registry per app,
 * since some schemas depend on its configuration (BATCH_MAX); what `.describe()` put in zod's global registry
 * still shows, as the type provider's own registries do it.
 */
export function createSchemaRegistry() {
  const registry = z.registry<z.GlobalMeta>();
  registry._map = new FallbackWeakMap(z.globalRegistry._map);
  return {
    registry,
    /** The schema, named: the document references it rather than repeating it; an answer's description is its response's. */
    named<T extends z.ZodType>(id: string, schema: T, description?: string): T {
      registry.add(schema, { ...z.globalRegistry.get(schema), id, ...(description ? { description } : {}) });
      return schema;
    },
    /**
     * The problem answers of one operation: each status its codes can have, as application/problem+json whose
     * `code` is an enum of exactly those codes (named `<Operation>Problem`), with retry-after on 429 and 503.
     */
    problems(operationId: string, own: ErrorCode[], options: { authenticated?: boolean; body?: boolean } = {}) {
      const codes = [...new Set([...own, ...ANY_ROUTE, ...(options.authenticated === false ? [] : AUTHENTICATED), ...(options.body ? WITH_BODY : [])])].sort();
      const schema = this.named(
        `${operationId[0]!.toUpperCase()}${operationId.slice(1)}Problem`,
        z.object({
          type: z.string().describe('urn:phonevault:problem:<code>'),
          title: z.string(),
          status: z.int(),
          code: z.enum(codes as [ErrorCode, ...ErrorCode[]]).describe('Stable; what a program should branch on'),
          detail: z.string().describe('For a human; never repeats what was sent'),
          instance: z.string().describe('urn:phonevault:request:<request id>'),
        }),
      );
      const responses: Record<number, { description: string; headers?: typeof retryAfter; content: { 'application/problem+json': { schema: typeof schema } } }> = {};
      for (const status of [...new Set(codes.map((code) => PROBLEMS[code].status))].sort()) {
        responses[status] = {
          description: STATUS_DESCRIPTIONS[status]!,
          ...(status === 409 || status === 429 || status === 503 ? { headers: retryAfter } : {}),
          content: { 'application/problem+json': { schema } },
        };
      }
      return responses;
    },
  };
}
