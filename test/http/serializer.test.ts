import { describe, expect, it } from 'vitest';
import { z } from 'zod';
import { serializerCompiler } from '../../src/http/serializer.js';

const compile = (schema: z.ZodType) => serializerCompiler({ schema, method: 'POST', url: '/', httpStatus: '200' } as never) as (data: unknown) => string;

describe('response serializer', () => {
  // Whatever a handler returns by mistake, only declared fields leave the vault.
  it('writes only the fields the schema declares', () => {
    const serialize = compile(z.object({ token: z.string(), error: z.object({ code: z.string() }) }));
    expect(JSON.parse(serialize({ token: 't2', envelope: 'secret', error: { code: 'not_found', stack: 'at …' } }))).toEqual({ token: 't2', error: { code: 'not_found' } });
  });

  // In a union, an item with undeclared fields matches no branch: the answer fails (500) rather than leak.
  it('refuses a union item carrying undeclared fields, and writes well-formed ones', () => {
    const serialize = compile(
      z.object({ results: z.array(z.union([z.object({ token: z.string(), phone: z.string() }), z.object({ token: z.string(), error: z.object({ code: z.string() }) })])) }),
    );
    expect(() => serialize({ results: [{ token: 't1', phone: '+1', envelope: 'secret' }] })).toThrow();
    expect(JSON.parse(serialize({ results: [{ token: 't1', phone: '+1' }, { token: 't2', error: { code: 'not_found' } }] }))).toEqual({
      results: [{ token: 't1', phone: '+1' }, { token: 't2', error: { code: 'not_found' } }],
    });
  });

  it('keeps nulls and integers as declared', () => {
    const serialize = compile(z.object({ expiresAt: z.string().nullable(), erased: z.int() }));
    expect(JSON.parse(serialize({ expiresAt: null, erased: 3 }))).toEqual({ expiresAt: null, erased: 3 });
  });
});
