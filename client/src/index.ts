import { PhonevaultError } from './errors.js';
import type { components, operations } from './schema.js';
import { createTransport, type CallOptions, type TransportOptions } from './transport.js';

export { isPhonevaultError, PhonevaultError, type ErrorCode, type ProblemCode, type TransportCode } from './errors.js';
export type { CallOptions, RetryOptions, TokenSource } from './transport.js';
export type { components, operations, paths } from './schema.js';

type Schemas = components['schemas'];
type Query<Operation extends keyof operations> = NonNullable<operations[Operation]['parameters']['query']>;

export interface ClientOptions extends TransportOptions {
  /** The vault's BATCH_MAX: tokenizeMany and detokenizeMany send at most this many items a request. Default 1000. */
  batchMax?: number;
}

export interface WriteOptions extends CallOptions {
  /**
   * Sent as `Idempotency-Key`; every retry of the call sends the same one, so that a retried write is made once.
   * A fresh UUID when absent. tokenizeMany sends `<key>.<batch number>` for each batch.
   */
  idempotencyKey?: string;
}

export type TokenizeManyResult = Schemas['TokenizedItem'] | Schemas['RejectedItem'];
export type DetokenizeResult = Schemas['PlainNumber'] | Schemas['MaskedNumber'] | Schemas['UnreadToken'];

const token = (value: string) => encodeURIComponent(value);

/**
 * A client for one vault. Every method is one operation of openapi.yaml (its types are generated from it), but
 * tokenizeMany and detokenizeMany, which take any number of items and send them in BATCH_MAX batches. Calls are
 * retried on 429 and 503 (and a 409 for a write still in flight) after the retry-after the vault names, within
 * the retry budget; reads and writes with an Idempotency-Key also after a timeout or a lost connection.
 */
export function createClient(options: ClientOptions) {
  const call = createTransport(options);
  const batchMax = options.batchMax ?? 1000;
  const keyOf = (write: WriteOptions | undefined) => write?.idempotencyKey ?? globalThis.crypto.randomUUID();

  const client = {
    /** `POST /v1/tokenize`: one number to a token; retried with one Idempotency-Key. */
    tokenize: (body: Schemas['TokenizeInput'], write?: WriteOptions) =>
      call<Schemas['Tokenized']>({ method: 'POST', path: '/v1/tokenize', body, repeatable: true, idempotencyKey: keyOf(write) }, write),

    /** `POST /v1/tokenize/batch`: up to BATCH_MAX numbers, all valid ones stored in one statement or none. */
    tokenizeBatch: (body: Schemas['TokenizeBatchInput'], write?: WriteOptions) =>
      call<Schemas['TokenizeBatchResult']>({ method: 'POST', path: '/v1/tokenize/batch', body, repeatable: true, idempotencyKey: keyOf(write) }, write),

    /** `POST /v1/detokenize`: up to BATCH_MAX tokens, answered per token in order. */
    detokenize: (body: Schemas['DetokenizeInput'], call_?: CallOptions) => call<Schemas['Detokenized']>({ method: 'POST', path: '/v1/detokenize', body, repeatable: true }, call_),

    /** `POST /v1/lookup`: a page of the live tokens of one number. */
    lookup: (body: Schemas['LookupInput'], call_?: CallOptions) => call<Schemas['TokenPage']>({ method: 'POST', path: '/v1/lookup', body, repeatable: true }, call_),

    /** `GET /v1/tokens/{token}`: a token's metadata, never its number. */
    getToken: (id: string, call_?: CallOptions) => call<Schemas['TokenMetadata']>({ method: 'GET', path: `/v1/tokens/${token(id)}`, repeatable: true }, call_),

    /** `DELETE /v1/tokens/{token}`. Not retried once it may have reached the vault: a second try would be a 404. */
    deleteToken: (id: string, call_?: CallOptions) => call<void>({ method: 'DELETE', path: `/v1/tokens/${token(id)}`, repeatable: false }, call_),

    /** `POST /v1/erase`: every token of one number in the tenant; retried with one Idempotency-Key. */
    eraseNumber: (body: Schemas['EraseInput'], write?: WriteOptions) =>
      call<Schemas['Erased']>({ method: 'POST', path: '/v1/erase', body, repeatable: true, idempotencyKey: keyOf(write) }, write),

    listKeys: (query: Query<'listKeys'> = {}, call_?: CallOptions) => call<Schemas['KeyPage']>({ method: 'GET', path: '/v1/keys', query, repeatable: true }, call_),
    rotateKey: (call_?: CallOptions) => call<Schemas['RotatedKey']>({ method: 'POST', path: '/v1/keys/rotate', repeatable: false }, call_),
    destroyKeyVersion: (version: number, call_?: CallOptions) => call<void>({ method: 'POST', path: `/v1/keys/${version}/destroy`, repeatable: false }, call_),
    listAuditEvents: (query: Query<'listAuditEvents'> = {}, call_?: CallOptions) => call<Schemas['AuditPage']>({ method: 'GET', path: '/v1/audit', query, repeatable: true }, call_),
    createApiKey: (body: Schemas['NewApiKeyInput'], call_?: CallOptions) => call<Schemas['CreatedApiKey']>({ method: 'POST', path: '/v1/api-keys', body, repeatable: false }, call_),
    listApiKeys: (query: Query<'listApiKeys'> = {}, call_?: CallOptions) => call<Schemas['ApiKeyPage']>({ method: 'GET', path: '/v1/api-keys', query, repeatable: true }, call_),
    revokeApiKey: (id: string, call_?: CallOptions) => call<void>({ method: 'DELETE', path: `/v1/api-keys/${token(id)}`, repeatable: false }, call_),
    getHealth: (call_?: CallOptions) => call<Schemas['Health']>({ method: 'GET', path: '/healthz', repeatable: true }, call_),
    getReadiness: (call_?: CallOptions) => call<Schemas['Ready']>({ method: 'GET', path: '/readyz', repeatable: true }, call_),

    /**
     * Any number of numbers, in batches of `batchMax`: one result per item, in the input order, each with its
     * `index` in `items`, a token or the item's own error. A batch that fails as a whole throws; the batches
     * before it are stored (retrying with the same `idempotencyKey` gives their tokens again and stores the rest).
     */
    async tokenizeMany(items: Schemas['PhoneInput'][], write: WriteOptions & { deterministic?: boolean; ttlSeconds?: number } = {}): Promise<TokenizeManyResult[]> {
      const base = keyOf(write);
      const results: TokenizeManyResult[] = [];
      for (let start = 0, batch = 0; start < items.length; start += batchMax, batch++) {
        const body: Schemas['TokenizeBatchInput'] = { items: items.slice(start, start + batchMax) };
        if (write.deterministic !== undefined) body.deterministic = write.deterministic;
        if (write.ttlSeconds !== undefined) body.ttlSeconds = write.ttlSeconds;
        const answer = await client.tokenizeBatch(body, { ...write, idempotencyKey: `${base}.${batch}` });
        for (const result of [...answer.results].sort((a, b) => a.index - b.index)) results.push({ ...result, index: result.index + start });
      }
      if (results.length !== items.length) throw new PhonevaultError({ code: 'unexpected_response', status: null, detail: 'the vault answered for another number of items', requestId: null, attempts: 1 });
      return results;
    },

    /** Any number of tokens, in batches of `batchMax`: one result per token, in the input order. */
    async detokenizeMany(tokens: string[], read: CallOptions & { redaction?: 'plain' | 'masked' } = {}): Promise<DetokenizeResult[]> {
      const results: DetokenizeResult[] = [];
      for (let start = 0; start < tokens.length; start += batchMax) {
        const body: Schemas['DetokenizeInput'] = { tokens: tokens.slice(start, start + batchMax) };
        if (read.redaction) body.redaction = read.redaction;
        results.push(...(await client.detokenize(body, read)).results);
      }
      return results;
    },
  };
  return client;
}

export type PhonevaultClient = ReturnType<typeof createClient>;
