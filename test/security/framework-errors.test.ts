import { connect, type AddressInfo } from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { bearer, build, testConfig, type TestApp } from '../helpers/build.js';
import { NUMBERS } from '../helpers/numbers.js';

// Issue 14, item 6: every answer is the vault's own; item 11: a charset other than UTF-8 is 415.
let t: TestApp;
beforeAll(async () => {
  t = await build({ rateLimits: { ...testConfig().rateLimits, unauthenticated: { max: 1_000, windowMs: 60_000 } } });
});
afterAll(async () => {
  await t.close();
});

const admin = bearer({ scope: 'admin lookup tokenize' });

function expectProblem(res: { statusCode: number; headers: Record<string, unknown>; body: string; json(): Record<string, unknown> }, status: number, code: string, echoes: string[] = []) {
  expect(res.statusCode).toBe(status);
  expect(res.headers['content-type']).toMatch(/^application\/problem\+json/);
  expect(res.headers['cache-control']).toBe('no-store');
  expect(res.json()).toMatchObject({ status, code });
  for (const echo of echoes) expect(res.body).not.toContain(echo);
}

/** Sends raw bytes to a listening vault and reads what comes back before the socket closes. */
function raw(port: number, bytes: Buffer): Promise<{ status: number; headers: Record<string, string>; body: string }> {
  return new Promise((resolve, reject) => {
    const socket = connect(port, '127.0.0.1', () => socket.end(bytes));
    let text = '';
    socket.on('data', (chunk) => (text += chunk.toString('latin1')));
    socket.on('error', reject);
    socket.on('close', () => {
      const [head = '', body = ''] = text.split('\r\n\r\n');
      const [statusLine, ...lines] = head.split('\r\n');
      resolve({ status: Number(statusLine?.split(' ')[1]), headers: Object.fromEntries(lines.map((line) => [line.slice(0, line.indexOf(':')).toLowerCase(), line.slice(line.indexOf(':') + 1).trim()])), body });
    });
  });
}

/** An app of its own with an address budget of `max`, listening on a port of its own while `use` runs. */
async function listening(max: number, use: (small: TestApp, port: number) => Promise<void>): Promise<void> {
  const small = await build({ rateLimits: { ...testConfig().rateLimits, unauthenticated: { max, windowMs: 60_000 } } });
  try {
    await small.app.listen({ host: '127.0.0.1', port: 0 });
    await use(small, (small.app.server.address() as AddressInfo).port);
  } finally {
    await small.close();
  }
}

describe('requests HTTP cannot parse', () => {
  it('are answered as problems with a request id, never echoed, and spend the address budget', async () => {
    await listening(3, async (small, port) => {
      const malformed = [
        Buffer.from(`GET /healthz HTTP/1.1\r\nhost: x\r\nx-phone: ${NUMBERS.us.e164}\u0000\r\n\r\n`, 'latin1'),
        Buffer.concat([Buffer.from('GET /v1/tokens/'), Buffer.from([0xff, 0xfe]), Buffer.from(`${NUMBERS.us.digits} HTTP/1.1\r\nhost: x\r\n\r\n`)]),
        Buffer.from(`GET /healthz HTTP/1.1\r\nhost: x\r\nbad header${NUMBERS.us.digits}: 1\r\n\r\n`, 'latin1'),
      ];
      for (const bytes of malformed) {
        const res = await raw(port, bytes);
        expect(res.status).toBe(400);
        expect(res.headers['content-type']).toBe('application/problem+json');
        expect(res.headers['cache-control']).toBe('no-store');
        expect(res.headers['x-request-id']).toMatch(/^[0-9a-f-]{36}$/);
        expect(JSON.parse(res.body)).toMatchObject({ status: 400, code: 'invalid_request', instance: `urn:phonevault:request:${res.headers['x-request-id']}` });
        expect(res.body).not.toContain(NUMBERS.us.digits);
      }
      // The fourth from this address has spent its budget, like any request without a credential would have.
      const spent = await raw(port, malformed[0]!);
      expect(spent.status).toBe(429);
      expect(spent.headers['retry-after']).toBe('60');
      expect(JSON.parse(spent.body).code).toBe('rate_limited');
      expect((await fetch(`http://127.0.0.1:${port}/nowhere`)).status).toBe(429);
      expect(small.logs.filter((line) => line.msg === 'malformed request')).toHaveLength(4);
    });
  });
});

describe('headers Node or a reader could take two ways', () => {
  it('an Expect other than 100-continue is the vault\'s own 417, logged and spending the address budget; 100-continue is served', async () => {
    await listening(2, async (small, port) => {
      const request = (expect: string) =>
        Buffer.from(`POST /v1/tokenize HTTP/1.1\r\nhost: x\r\nexpect: ${expect}\r\ncontent-type: application/json\r\ncontent-length: 2\r\nconnection: close\r\n\r\n{}`, 'latin1');
      for (const value of [NUMBERS.us.e164, '200-ok']) {
        const res = await raw(port, request(value));
        expect(res.status).toBe(417);
        expect(res.headers['content-type']).toMatch(/^application\/problem\+json/);
        expect(res.headers['cache-control']).toBe('no-store');
        expect(res.headers['x-request-id']).toMatch(/^[0-9a-f-]{36}$/);
        expect(JSON.parse(res.body.replace(/^[0-9a-f]+\r\n|\r\n0\r\n$/g, ''))).toMatchObject({ status: 417, code: 'expectation_failed' });
        expect(res.body).not.toContain(NUMBERS.us.digits);
      }
      expect((await raw(port, request('+1'))).status).toBe(429);
      expect(small.logs.filter((line) => line.msg === 'request' && line.status === 417)).toHaveLength(2);
    });
    // 100-continue is HTTP's own, and is served (here refused for want of a credential, as any call would be).
    const res = await t.app.inject({ method: 'POST', url: '/v1/tokenize', headers: { expect: '100-continue' }, payload: { phone: NUMBERS.us.e164 } });
    expect(res.statusCode).toBe(401);
  });

  it('a second Content-Type or a second charset is refused, whichever comes first', async () => {
    const payload = JSON.stringify({ phone: NUMBERS.us.e164 });
    for (const type of ['application/json; charset=utf-8; charset=latin1', 'application/json; charset=latin1; charset=utf-8', 'application/json;charset=utf-8;charset="iso-8859-1"']) {
      expectProblem(await t.app.inject({ method: 'POST', url: '/v1/tokenize', headers: { ...admin, 'content-type': type }, payload }), 415, 'unsupported_media_type', [NUMBERS.us.e164]);
    }
    const { port } = await (async () => {
      await t.app.listen({ host: '127.0.0.1', port: 0 });
      return t.app.server.address() as AddressInfo;
    })();
    const twice = await raw(
      port,
      Buffer.from(`POST /v1/tokenize HTTP/1.1\r\nhost: x\r\nauthorization: ${admin.authorization}\r\ncontent-type: application/json\r\ncontent-type: text/plain\r\ncontent-length: ${payload.length}\r\nconnection: close\r\n\r\n${payload}`, 'latin1'),
    );
    expect(twice.status).toBe(400);
    expect(twice.body).toContain('invalid_request');
    expect(twice.body).not.toContain(NUMBERS.us.digits);
  });
});

describe('framework errors', () => {
  it('answers an over-long path parameter with 414 uri_too_long, without the path', async () => {
    const path = `/v1/tokens/${NUMBERS.us.e164}${'9'.repeat(80)}`;
    const res = await t.app.inject({ method: 'GET', url: path, headers: admin });
    expectProblem(res, 414, 'uri_too_long', [NUMBERS.us.e164, NUMBERS.us.digits, '9999']);
    expect(t.logs.some((line) => line.status === 414 && line.msg === 'request' && line.route === null)).toBe(true);
  });

  it('answers a malformed URL with 400 invalid_request, without the URL', async () => {
    for (const path of ['/v1/tokens/%E0%A4%A', '/v1/tokens/%zz', `/v1/tokens/${encodeURIComponent(NUMBERS.gb.e164)}%`]) {
      const res = await t.app.inject({ method: 'GET', url: path, headers: admin });
      expectProblem(res, 400, 'invalid_request', [NUMBERS.gb.e164, NUMBERS.gb.digits, 'E0']);
    }
  });

  it('refuses NUL, controls and invalid UTF-8 in any path, query or header value (400), before any route runs', async () => {
    const stored = (await t.testDb.owner.query<{ n: string }>('SELECT count(*) AS n FROM audit_events')).rows[0]!.n;
    for (const url of ['/v1/audit?client=%00', '/v1/audit?client=%FF', '/v1/audit?client=a%0Ab', '/v1/audit?action=%C3%28', '/v1/tokens/tok_%00', '/v1/tokens/%C0%AF', '/v1/audit?client=%E2%80%A8']) {
      expectProblem(await t.app.inject({ method: 'GET', url, headers: admin }), 400, 'invalid_request');
    }
    for (const value of ['a\u0000b', 'a\u0001b', '\u00ff\u00fe', '\u00c3\u0028', 'support\u0007']) {
      const res = await t.app.inject({ method: 'POST', url: '/v1/lookup', headers: { ...admin, 'x-purpose': value }, payload: { phone: NUMBERS.us.e164 } });
      expectProblem(res, 400, 'invalid_request');
    }
    // Valid UTF-8 in a header value is fine (and then judged by what the header is for).
    const purpose = await t.app.inject({ method: 'POST', url: '/v1/lookup', headers: { ...admin, 'x-purpose': Buffer.from('support:ü', 'utf8').toString('latin1') }, payload: { phone: NUMBERS.us.e164 } });
    expectProblem(purpose, 400, 'invalid_purpose');
    expect((await t.testDb.owner.query<{ n: string }>('SELECT count(*) AS n FROM audit_events')).rows[0]!.n).toBe(stored);
  });

  it('answers a body in another charset than UTF-8 with 415, and takes UTF-8 however it is spelled', async () => {
    for (const type of ['application/json; charset=latin1', 'application/json; charset=utf-16', 'application/json;charset="iso-8859-1"']) {
      const res = await t.app.inject({ method: 'POST', url: '/v1/tokenize', headers: { ...admin, 'content-type': type }, payload: JSON.stringify({ phone: NUMBERS.us.e164 }) });
      expectProblem(res, 415, 'unsupported_media_type');
    }
    for (const type of ['application/json; charset=utf-8', 'application/json; charset=UTF-8', 'application/json;charset=utf8']) {
      const res = await t.app.inject({ method: 'POST', url: '/v1/tokenize', headers: { ...admin, 'content-type': type }, payload: JSON.stringify({ phone: NUMBERS.us.e164 }) });
      expect(res.statusCode, type).toBe(201);
    }
  });

  it('throttles framework errors by IP with the budget every unauthenticated request spends', async () => {
    const throttled = await build({ rateLimits: { ...testConfig().rateLimits, unauthenticated: { max: 2, windowMs: 60_000 } } }, t.testDb);
    try {
      const remoteAddress = '127.0.9.9';
      const answers = [];
      for (const url of [`/v1/tokens/${'x'.repeat(100)}`, '/v1/tokens/%zz', `/v1/tokens/${'x'.repeat(100)}`, '/nowhere']) {
        answers.push((await throttled.app.inject({ method: 'GET', url, remoteAddress })).statusCode);
      }
      expect(answers).toEqual([414, 400, 429, 429]);
    } finally {
      await throttled.close();
    }
  });
});
