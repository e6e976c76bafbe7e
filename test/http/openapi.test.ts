import { readFileSync } from 'node:fs';
import { Validator } from '@seriousme/openapi-schema-validator';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { parse } from 'yaml';
import { build, type TestApp } from '../helpers/build.js';

let t: TestApp;
beforeAll(async () => {
  t = await build();
});
afterAll(async () => {
  await t.close();
});

const committed = parse(readFileSync(new URL('../../openapi.yaml', import.meta.url), 'utf8'));

describe('OpenAPI', () => {
  it('serves /openapi.json generated from the route schemas, equal to the committed openapi.yaml', async () => {
    const res = await t.app.inject({ method: 'GET', url: '/openapi.json' });
    expect(res.statusCode).toBe(200);
    // When this fails after a route change: `npm run openapi` and commit openapi.yaml.
    expect(res.json()).toEqual(committed);
  });

  it('is a valid OpenAPI 3.1 document', async () => {
    const result = await new Validator().validate(committed);
    expect(result.errors ?? []).toEqual([]);
    expect(result.valid).toBe(true);
    expect(committed.openapi).toBe('3.1.0');
  });

  it('describes every endpoint, the bearer scheme and the problem bodies', () => {
    expect(Object.keys(committed.paths).sort()).toEqual([
      '/healthz',
      '/readyz',
      '/v1/audit',
      '/v1/detokenize',
      '/v1/erase',
      '/v1/keys',
      '/v1/keys/rotate',
      '/v1/keys/{version}/destroy',
      '/v1/lookup',
      '/v1/tokenize',
      '/v1/tokenize/batch',
      '/v1/tokens/{token}',
    ]);
    expect(committed.components.securitySchemes.bearer).toMatchObject({ type: 'http', scheme: 'bearer', bearerFormat: 'JWT' });
    const operations = Object.entries(committed.paths as Record<string, Record<string, { responses: Record<string, any> }>>)
      .filter(([path]) => path.startsWith('/v1/'))
      .flatMap(([, methods]) => Object.values(methods));
    expect(operations).toHaveLength(11);
    for (const { responses } of operations) {
      for (const status of ['400', '401', '403', '429', '503']) {
        expect(responses[status].content['application/json'].schema.required).toEqual(expect.arrayContaining(['code', 'status', 'detail']));
      }
    }
  });

  it('serves interactive docs at /docs', async () => {
    const res = await t.app.inject({ method: 'GET', url: '/docs/' });
    expect(res.statusCode).toBe(200);
    expect(res.headers['content-type']).toContain('text/html');
  });
});
