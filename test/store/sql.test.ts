import { describe, expect, it } from 'vitest';
import { bind, statement } from '../../src/store/sql.js';

describe('named statements', () => {
  it('numbers each name once, in order of first use, and leaves casts alone', () => {
    const compiled = statement('SELECT :b::int, :a::text[], :b FROM t WHERE x = :a_1 AND y::bytea = :a');
    expect(compiled.text).toBe('SELECT $1::int, $2::text[], $1 FROM t WHERE x = $3 AND y::bytea = $2');
    expect(compiled.names).toEqual(['b', 'a', 'a_1']);
    expect(bind(compiled, { a: 'A', b: 2, a_1: null })).toEqual([2, 'A', null]);
  });

  it('refuses to bind a statement with a value missing', () => {
    expect(() => bind(statement<'x' | 'y'>('SELECT :x, :y'), { x: 1 } as Record<'x' | 'y', unknown>)).toThrow('no value for :y');
  });
});
