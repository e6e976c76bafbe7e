import { describe, expect, it } from 'vitest';
import { DEFAULT_PURPOSES, parsePurpose } from '../../src/audit/purpose.js';
import { VaultError } from '../../src/errors.js';

const allowed = new Set<string>(DEFAULT_PURPOSES);
const refusedCode = (header: string | string[]) => {
  try {
    parsePurpose(header, allowed);
    return 'accepted';
  } catch (error) {
    return (error as VaultError).code;
  }
};

describe('x-purpose', () => {
  it('takes a configured purpose, alone or with a short reference', () => {
    expect(parsePurpose(undefined, allowed)).toBeNull();
    expect(parsePurpose('support', allowed)).toBe('support');
    expect(parsePurpose('support:INC-4711', allowed)).toBe('support:INC-4711');
    expect(parsePurpose('data-subject-request:DSR#123456', allowed)).toBe('data-subject-request:DSR#123456');
    expect(parsePurpose('audit', new Set(['audit']))).toBe('audit');
  });

  it('refuses anything that could carry a number: digits in any grouping or script, spelled out, free text', () => {
    for (const header of [
      'ref 20 15', 'ref 55 50', 'support:2015550123', 'support:201-555-0123', 'support:20155501', 'support:1234567',
      'support:two zero one five five five zero one two three', 'support:twozeroonefivefive', 'support: 4711', 'support:+1201',
      'support ticket 4711', '+12015550123', 'support:٢٠١٥٥٥٠١٢٣', 'support:２０１５５５０', 'support:a:b', 'support:',
      'Support', 'supp0rt', 'other', '', ' support', 'support\u0000', ['support', 'billing'],
    ]) {
      expect(refusedCode(header), JSON.stringify(header)).toBe('invalid_purpose');
    }
  });
});
