import { PhonevaultError, type ErrorCode } from './errors.js';

/** A bearer credential (a JWT or an API key), or a function that gives a current one for every attempt. */
export type TokenSource = string | (() => string | Promise<string>);

export interface RetryOptions {
  /** Attempts in all, the first included. Default 4. */
  maxAttempts?: number;
  /** The longest the client waits, over all attempts and pauses, before it gives up. Default 30 s. */
  budgetMs?: number;
  /** The first pause when the vault names none; doubled each attempt, with jitter. Default 200 ms. */
  baseDelayMs?: number;
}

export interface TransportOptions {
  baseUrl: string;
  token: TokenSource;
  /** Per attempt, until the whole answer is read. Default 10 s. */
  timeoutMs?: number;
  retry?: RetryOptions;
  /** Sent as `x-purpose` unless a call gives its own (one of the vault's AUDIT_PURPOSES). */
  purpose?: string;
  /** For tests and instrumentation; the global fetch by default. */
  fetch?: typeof fetch;
}

export interface CallOptions {
  signal?: AbortSignal;
  /** `x-purpose` for this call. */
  purpose?: string;
}

export interface Request {
  method: 'GET' | 'POST' | 'DELETE';
  path: string;
  query?: Record<string, string | number | undefined>;
  body?: unknown;
  /**
   * Whether a call that may have reached the vault can be sent again: reads can, writes carrying an
   * Idempotency-Key can (the vault answers a repeat with the first answer). Others are retried only on answers
   * that say nothing was done (429, 503).
   */
  repeatable: boolean;
  idempotencyKey?: string;
}

// Answers that say the vault did nothing and will do it later: safe to send again, whatever the call.
const NOT_DONE = new Set([429, 503]);
// A proxy's answers: the call may or may not have reached the vault.
const MAYBE_DONE = new Set([502, 504]);

function sleep(ms: number, signal: AbortSignal | undefined): Promise<void> {
  return new Promise((resolve, reject) => {
    if (signal?.aborted) return reject(signal.reason);
    const timer = setTimeout(() => {
      signal?.removeEventListener('abort', onAbort);
      resolve();
    }, ms);
    const onAbort = () => {
      clearTimeout(timer);
      reject(signal!.reason);
    };
    signal?.addEventListener('abort', onAbort, { once: true });
  });
}

function retryAfterOf(header: string | null): number | null {
  if (header === null || !/^\d{1,6}$/.test(header.trim())) return null;
  return Number(header.trim());
}

async function problemOf(response: Response): Promise<{ code: ErrorCode; detail: string }> {
  try {
    const body = (await response.json()) as { code?: unknown; detail?: unknown };
    if (typeof body.code === 'string') return { code: body.code as ErrorCode, detail: typeof body.detail === 'string' ? body.detail : response.statusText };
  } catch {
    // Not the vault's problem+json: a proxy's page, say.
  }
  return { code: 'unexpected_response', detail: `HTTP ${response.status}` };
}

/** Sends requests to the vault: one credential per attempt, a timeout per attempt, bounded retries. */
export function createTransport(options: TransportOptions) {
  const base = options.baseUrl.replace(/\/+$/, '');
  const send = options.fetch ?? fetch;
  const timeoutMs = options.timeoutMs ?? 10_000;
  const maxAttempts = Math.max(1, options.retry?.maxAttempts ?? 4);
  const budgetMs = options.retry?.budgetMs ?? 30_000;
  const baseDelayMs = options.retry?.baseDelayMs ?? 200;
  const backoff = (attempt: number) => baseDelayMs * 2 ** (attempt - 1) * (0.5 + Math.random() / 2);

  return async function call<T>(request: Request, call: CallOptions = {}): Promise<T> {
    const started = Date.now();
    const url = new URL(base + request.path);
    for (const [name, value] of Object.entries(request.query ?? {})) if (value !== undefined) url.searchParams.set(name, String(value));
    for (let attempt = 1; ; attempt++) {
      const token = typeof options.token === 'string' ? options.token : await options.token();
      const headers: Record<string, string> = { authorization: `Bearer ${token}`, accept: 'application/json, application/problem+json' };
      if (request.body !== undefined) headers['content-type'] = 'application/json';
      if (request.idempotencyKey) headers['idempotency-key'] = request.idempotencyKey;
      const purpose = call.purpose ?? options.purpose;
      if (purpose) headers['x-purpose'] = purpose;
      const timeout = AbortSignal.timeout(timeoutMs);
      const signal = call.signal ? AbortSignal.any([call.signal, timeout]) : timeout;

      let failure: PhonevaultError;
      let wait: number;
      try {
        const response = await send(url, { method: request.method, headers, body: request.body === undefined ? null : JSON.stringify(request.body), signal });
        const requestId = response.headers.get('x-request-id');
        if (response.ok) return (response.status === 204 ? undefined : await response.json()) as T;
        const { code, detail } = await problemOf(response);
        const retryAfterS = retryAfterOf(response.headers.get('retry-after'));
        failure = new PhonevaultError({ code, status: response.status, detail, requestId, retryAfterS, attempts: attempt });
        const again = NOT_DONE.has(response.status) || (response.status === 409 && code === 'idempotency_in_flight') || (request.repeatable && MAYBE_DONE.has(response.status));
        if (!again) throw failure;
        wait = retryAfterS !== null ? retryAfterS * 1000 : backoff(attempt);
      } catch (error) {
        if (call.signal?.aborted) throw call.signal.reason;
        if (error instanceof PhonevaultError) throw error;
        const code = timeout.aborted ? 'timeout' : 'network_error';
        failure = new PhonevaultError({ code, status: null, detail: code === 'timeout' ? `no answer within ${timeoutMs} ms` : 'the vault could not be reached', requestId: null, attempts: attempt, cause: error });
        if (!request.repeatable) throw failure;
        wait = backoff(attempt);
      }
      if (attempt >= maxAttempts || Date.now() - started + wait > budgetMs) throw failure;
      await sleep(wait, call.signal);
    }
  };
}

export type Transport = ReturnType<typeof createTransport>;
