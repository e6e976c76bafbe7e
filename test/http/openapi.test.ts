import { spawnSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { Validator } from '@seriousme/openapi-schema-validator';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { parse } from 'yaml';
import { build, type TestApp } from '../helpers/build.js';
import { specViolation } from '../helpers/spec.js';

interface Operation {
  operationId: string;
  security?: unknown[];
  requestBody?: { content: Record<string, { schema: { $ref?: string } }> };
  responses: Record<string, { headers?: Record<string, { schema: { type: string } }>; content?: Record<string, { schema: { $ref?: string } }> }>;
}

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

  it('describes every endpoint with a camelCase operationId, named schemas and problem+json errors', () => {
    expect(Object.keys(committed.paths).sort()).toEqual([
      '/healthz',
      '/readyz',
      '/v1/api-keys',
      '/v1/api-keys/{id}',
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
    expect(committed.servers.length).toBeGreaterThan(0);
    expect(committed.info.license.identifier).toBe('Apache-2.0');
    expect(committed.components.securitySchemes.bearer).toMatchObject({ type: 'http', scheme: 'bearer', bearerFormat: 'JWT or pvk_ API key' });
    const operations = Object.entries(committed.paths as Record<string, Record<string, Operation>>).flatMap(([path, methods]) =>
      Object.entries(methods).map(([method, operation]) => ({ path, method, ...operation })),
    );
    const ids = operations.map((operation) => operation.operationId);
    expect(new Set(ids).size).toBe(operations.length);
    for (const id of ids) expect(id).toMatch(/^[a-z]+(?:[A-Z][a-z]+)*$/);
    const text = JSON.stringify(committed);
    // No body is repeated inline: every request, answer and problem body is a reference to a component.
    for (const operation of operations) {
      for (const media of Object.values(operation.requestBody?.content ?? {})) expect(media.schema.$ref, operation.operationId).toMatch(/^#\/components\/schemas\//);
      for (const [status, response] of Object.entries(operation.responses)) {
        for (const [type, media] of Object.entries(response.content ?? {})) {
          expect(media.schema.$ref, `${operation.operationId} ${status}`).toMatch(/^#\/components\/schemas\//);
          if (Number(status) >= 400 && type !== 'application/json') expect(type).toBe('application/problem+json');
        }
        if (status === '429' || status === '503') expect(response.headers?.['retry-after']?.schema.type, `${operation.operationId} ${status}`).toBe('integer');
      }
      const statuses = Object.keys(operation.responses);
      for (const status of ['400', '414', '415', '429', '500', '503']) expect(statuses, operation.operationId).toContain(status);
      if (operation.path.startsWith('/v1/')) {
        expect(operation.security).toEqual([{ bearer: [] }]);
        for (const status of ['401', '403']) expect(statuses, operation.operationId).toContain(status);
      } else expect(operation.security).toEqual([]);
      if (operation.requestBody || operation.method === 'delete' || (operation.method === 'post' && operation.path.startsWith('/v1/'))) {
        for (const status of ['413']) expect(statuses, operation.operationId).toContain(status);
      }
    }
    expect(text).not.toContain('Default Response');
    // Each operation's problem names exactly the codes it can answer.
    const codes = (id: string) => committed.components.schemas[`${id[0]!.toUpperCase()}${id.slice(1)}Problem`].properties.code.enum as string[];
    expect(codes('tokenize')).toEqual(expect.arrayContaining(['invalid_phone', 'invalid_country', 'invalid_json', 'unauthorized', 'rate_limited']));
    expect(codes('getToken')).toContain('not_found');
    expect(codes('getToken')).not.toContain('invalid_phone');
    expect(codes('getHealth')).not.toContain('unauthorized');
    for (const field of ['createdAt', 'expiresAt']) expect(JSON.stringify(committed.components.schemas.TokenMetadata.properties[field])).toContain('"format":"date-time"');
  });

  it('has redocly lint report nothing with the recommended rules', () => {
    const lint = spawnSync(process.execPath, [new URL('../../node_modules/@redocly/cli/bin/cli.js', import.meta.url).pathname, 'lint', '--format=json', 'openapi.yaml'], {
      cwd: new URL('../..', import.meta.url).pathname,
      encoding: 'utf8',
    });
    const report = JSON.parse(lint.stdout.slice(lint.stdout.indexOf('{'))) as { totals: { errors: number; warnings: number }; problems: unknown[] };
    expect(report.problems).toEqual([]);
    expect(report.totals).toMatchObject({ errors: 0, warnings: 0 });
  });

  it('checks every answer the suites get against the document: status, content type and body', () => {
    const answer = (statusCode: number, type: string, body: unknown) => ({ statusCode, headers: { 'content-type': type }, body: JSON.stringify(body) });
    const problem = (code: string, status: number) => ({ type: `urn:phonevault:problem:${code}`, title: 't', status, code, detail: 'd', instance: 'urn:phonevault:request:1' });
    expect(specViolation('POST', '/v1/tokenize', answer(400, 'application/problem+json', problem('invalid_phone', 400)))).toBeNull();
    expect(specViolation('POST', '/v1/tokenize', answer(400, 'application/problem+json', problem('not_found', 400)))).toMatch(/allowed values/);
    expect(specViolation('POST', '/v1/tokenize', answer(400, 'application/json', problem('invalid_phone', 400)))).toMatch(/not a problem|declared/);
    expect(specViolation('POST', '/v1/tokenize', answer(404, 'application/problem+json', problem('not_found', 404)))).toMatch(/not declared/);
    expect(specViolation('POST', '/v1/tokenize', answer(201, 'application/json', { token: 'x' }))).toMatch(/does not match/);
    expect(specViolation('GET', '/v1/tokens/pv_abc', answer(200, 'application/json', { token: 'x', country: null, lineType: 'mobile', deterministic: false, createdAt: 'yesterday', expiresAt: null }))).toMatch(/date-time/);
    expect(specViolation('GET', '/nowhere', answer(404, 'application/problem+json', problem('not_found', 404)))).toBeNull();
    expect(specViolation('GET', '/nowhere', answer(404, 'text/plain', 'no'))).toMatch(/not a problem/);
  });

  it('serves interactive docs at /docs', async () => {
    const res = await t.app.inject({ method: 'GET', url: '/docs/' });
    expect(res.statusCode).toBe(200);
    expect(res.headers['content-type']).toContain('text/html');
  });
});
