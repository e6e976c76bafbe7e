import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { formatToken, newTokenId } from '../../src/crypto/tokens.js';
import { bearer, build, type TestApp } from '../helpers/build.js';
import { NUMBERS } from '../helpers/numbers.js';

let t: TestApp;
let usToken: string;
let gbToken: string;
beforeAll(async () => {
  // On a worker thread, as the vault runs in production: large batches are parsed, sealed and opened there.
  t = await build({ offloadThreads: 1 });
  const res = await t.app.inject({
    method: 'POST',
    url: '/v1/tokenize/batch',
    headers: bearer({ scope: 'tokenize' }),
    payload: { items: [{ phone: NUMBERS.us.e164 }, { phone: NUMBERS.gb.e164 }] },
  });
  [usToken, gbToken] = res.json().results.map((r: { token: string }) => r.token);
});
afterAll(async () => {
  await t.close();
});

const detokenize = (payload: object, scope: string) =>
  t.app.inject({ method: 'POST', url: '/v1/detokenize', headers: bearer({ scope }), payload });

describe('POST /v1/detokenize', () => {
  it('gives the full E.164 number to a caller with detokenize', async () => {
    const res = await detokenize({ tokens: [usToken, gbToken] }, 'detokenize');
    expect(res.statusCode).toBe(200);
    expect(res.json()).toEqual({
      results: [
        { token: usToken, phone: NUMBERS.us.e164, country: 'US' },
        { token: gbToken, phone: NUMBERS.gb.e164, country: 'GB' },
      ],
    });
  });

  it('gives only the masked number to a caller with detokenize:masked, by default', async () => {
    const res = await detokenize({ tokens: [usToken, gbToken] }, 'detokenize:masked');
    expect(res.json().results).toEqual([
      { token: usToken, masked: '+1******0123', country: 'US' },
      { token: gbToken, masked: '+44******3456', country: 'GB' },
    ]);
    expect(res.body).not.toContain(NUMBERS.us.e164);
  });

  it('masks on request for a caller who could read the full number', async () => {
    const res = await detokenize({ tokens: [usToken], redaction: 'masked' }, 'detokenize');
    expect(res.json().results[0]).toEqual({ token: usToken, masked: '+1******0123', country: 'US' });
  });

  it('refuses plain to a masked-only caller with 403 insufficient_scope', async () => {
    const res = await detokenize({ tokens: [usToken], redaction: 'plain' }, 'detokenize:masked');
    expect(res.statusCode).toBe(403);
    expect(res.json().code).toBe('insufficient_scope');
    expect(res.headers['www-authenticate']).toContain('error="insufficient_scope"');
    expect(res.body).not.toContain(NUMBERS.us.digits);
  });

  it('refuses a caller with neither detokenize scope', async () => {
    for (const scope of ['tokenize', 'lookup erase admin', '']) {
      const res = await detokenize({ tokens: [usToken] }, scope);
      expect(res.statusCode).toBe(403);
      expect(res.json().code).toBe('insufficient_scope');
    }
  });

  it('answers not_found per item for unknown tokens, keeping order and duplicates', async () => {
    const unknown = formatToken(newTokenId());
    const res = await detokenize({ tokens: [unknown, usToken, unknown, usToken] }, 'detokenize');
    expect(res.json().results).toEqual([
      { token: unknown, error: { code: 'not_found' } },
      { token: usToken, phone: NUMBERS.us.e164, country: 'US' },
      { token: unknown, error: { code: 'not_found' } },
      { token: usToken, phone: NUMBERS.us.e164, country: 'US' },
    ]);
  });

  it('refuses strings that are not tokens with invalid_request, without echoing them', async () => {
    const res = await detokenize({ tokens: [usToken, NUMBERS.us.e164] }, 'detokenize');
    expect(res.statusCode).toBe(400);
    expect(res.json().code).toBe('invalid_request');
    expect(res.json().detail).toContain('tokens.1');
    expect(res.body).not.toContain(NUMBERS.us.digits);
  });

  it('refuses an empty list and one over BATCH_MAX', async () => {
    for (const tokens of [[], Array.from({ length: 1001 }, () => usToken)]) {
      const res = await detokenize({ tokens }, 'detokenize');
      expect(res.statusCode).toBe(400);
      expect(res.json().code).toBe('invalid_request');
    }
  });

  // A row whose envelope was altered in the database must never decrypt to anything.
  it('answers unreadable for a tampered row, and logs it without the number', async () => {
    const tampered = (
      await t.app.inject({ method: 'POST', url: '/v1/tokenize', headers: bearer({ scope: 'tokenize' }), payload: { phone: NUMBERS.fr.e164 } })
    ).json().token;
    await t.testDb.db.query(
      `UPDATE tokens SET envelope = set_byte(envelope, 20, get_byte(envelope, 20) # 1) WHERE token_id = $1`,
      [Buffer.from(tampered.slice(4), 'base64url')],
    );
    const res = await detokenize({ tokens: [tampered, usToken] }, 'detokenize');
    expect(res.statusCode).toBe(200);
    expect(res.json().results).toEqual([
      { token: tampered, error: { code: 'unreadable' } },
      { token: usToken, phone: NUMBERS.us.e164, country: 'US' },
    ]);
    expect(t.logs.some((line) => line.msg === 'token envelope failed to decrypt' && line.level === 50)).toBe(true);
    const metrics = (await t.app.inject({ method: 'GET', url: '/metrics' })).body;
    expect(metrics).toMatch(/^phonevault_decryption_failures_total [1-9]/m);
    expect(metrics).toMatch(/^phonevault_detokenize_items_total\{outcome="unreadable"\} [1-9]/m);
  });

  // Copying another row's envelope onto a token (same tenant, same key) must not reveal the other number.
  it('refuses an envelope copied from another row', async () => {
    const [victim, copy] = [usToken, gbToken].map((token) => Buffer.from(token.slice(4), 'base64url'));
    // One tenant's rows, named as such, as a distributed database needs to route the statement.
    await t.testDb.db.query(
      'UPDATE tokens t SET envelope = v.envelope FROM tokens v WHERE v.tenant_id = t.tenant_id AND v.token_id = $1 AND t.token_id = $2 AND t.tenant_id = (SELECT tenant_id FROM tokens WHERE token_id = $2)',
      [victim, copy],
    );
    const res = await detokenize({ tokens: [gbToken] }, 'detokenize');
    expect(res.json().results[0]).toEqual({ token: gbToken, error: { code: 'unreadable' } });
  });
});
