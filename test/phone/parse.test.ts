import { describe, expect, it } from 'vitest';
import { VaultError } from '../../src/errors.js';
import { maskPhone } from '../../src/phone/mask.js';
import { parsePhone } from '../../src/phone/parse.js';
import { EXAMPLES } from '../helpers/examples.js';

const examples = EXAMPLES;

function codeOf(fn: () => unknown): string | undefined {
  try {
    fn();
  } catch (error) {
    return error instanceof VaultError ? error.code : 'not-a-vault-error';
  }
  return undefined;
}

describe('parsePhone', () => {
  it('accepts common human formats of one number and gives one E.164', () => {
    for (const input of ['+1 (201) 555-0123', '+12015550123', '201.555.0123', '(201) 555-0123', '1 201 555 0123', '+1２０１５５５０１２３']) {
      expect(parsePhone(input, 'US').e164, input).toBe('+12015550123');
    }
    expect(parsePhone('020 7946 0958', 'gb')).toEqual({ e164: '+442079460958', country: 'GB', lineType: 'fixed_line' });
  });

  it('keeps the region and line type as metadata, null region for non-geographic numbers', () => {
    expect(parsePhone('+447400123456')).toMatchObject({ country: 'GB', lineType: 'mobile' });
    expect(parsePhone('+80012345678')).toMatchObject({ country: null, lineType: 'toll_free' });
  });

  it('refuses invalid, impossible, national-without-country, extensions, text and overlong input', () => {
    for (const input of ['', '12', '+1 201 555 01', '+1 200 555 0123', '2015550123', '+1 201 555 0123 ext. 12', 'call +12015550123', 'tok_abc', '+'.padEnd(80, '1'), '+99912345678']) {
      expect(codeOf(() => parsePhone(input)), input).toBe('invalid_phone');
    }
  });

  it('refuses an unknown default country with its own code', () => {
    expect(codeOf(() => parsePhone('2015550123', 'XX'))).toBe('invalid_country');
    expect(codeOf(() => parsePhone('2015550123', 'USA'))).toBe('invalid_country');
  });

  it('never repeats the input in an error', () => {
    try {
      parsePhone('+1 200 555 0123');
    } catch (error) {
      expect((error as Error).message).not.toMatch(/200|555|0123/);
    }
  });

  // Google's own example numbers: every region and number type libphonenumber knows.
  it('accepts every example number libphonenumber publishes, in E.164 and in national form', () => {
    const rejected: string[] = [];
    for (const example of examples) {
      try {
        expect(parsePhone(example.e164).e164).toBe(example.e164);
        if (example.region === '001') continue;
        // People write some national numbers with the national prefix and some (Colombian mobiles, Israeli
        // 1-xxx services) without it: at least one of the two must give the same E.164.
        const spellings = [`${example.nationalPrefix ?? ''}${example.national}`, example.national];
        const parsed = spellings.map((national) => {
          try {
            return parsePhone(national, example.region).e164;
          } catch {
            return undefined;
          }
        });
        if (!parsed.includes(example.e164)) rejected.push(`${example.region}/${example.type} (national)`);
      } catch (error) {
        if (!(error instanceof VaultError)) throw error;
        rejected.push(`${example.region}/${example.type}`);
      }
    }
    // libphonenumber-js 1.13.16 (max metadata) calls 3 of Google's 1,144 examples invalid.
    expect(examples.length).toBe(1144);
    expect(rejected.length).toBeLessThanOrEqual(3);
  });
});

describe('maskPhone', () => {
  it('keeps + and calling code and the last 4 digits', () => {
    expect(maskPhone('+12015550123')).toBe('+1******0123');
    expect(maskPhone('+442079460958')).toBe('+44******0958');
    expect(maskPhone('+80012345678')).toBe('+800****5678');
  });

  it('keeps only the last 2 when the national number is shorter than 8 digits', () => {
    expect(maskPhone('+24762889')).toBe('+247***89');
    expect(maskPhone('+2901234567')).toBe('+290*****67');
  });

  it('masks every example number without revealing more than the allowed digits', () => {
    for (const { e164 } of examples) {
      const masked = maskPhone(e164);
      expect(masked.length).toBe(e164.length);
      const national = e164.length - masked.indexOf('*');
      expect(masked).toMatch(national < 8 ? /^\+\d{1,3}\*+\d{2}$/ : /^\+\d{1,3}\*+\d{4}$/);
    }
  });
});
