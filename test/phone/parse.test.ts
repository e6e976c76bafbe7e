import { describe, expect, it } from 'vitest';
import { VaultError } from '../../src/errors.js';
import { maskPhone } from '../../src/phone/mask.js';
import { asciiDigits, parsePhone } from '../../src/phone/parse.js';
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

  it('reads the decimal digits of every script as the same number, and refuses other digit-like signs', () => {
    // Each script's zero; its nine digits follow it.
    const zeros = {
      'Arabic-Indic': 0x0660, 'Extended Arabic-Indic (Persian, Urdu)': 0x06f0, "N'Ko": 0x07c0, Devanagari: 0x0966, Bengali: 0x09e6, Gurmukhi: 0x0a66,
      Gujarati: 0x0ae6, Tamil: 0x0be6, Telugu: 0x0c66, Kannada: 0x0ce6, Malayalam: 0x0d66, Thai: 0x0e50, Lao: 0x0ed0, Tibetan: 0x0f20,
      Myanmar: 0x1040, Khmer: 0x17e0, Mongolian: 0x1810, Fullwidth: 0xff10, 'Mathematical bold': 0x1d7ce, 'Mathematical monospace': 0x1d7f6,
    };
    for (const [script, zero] of Object.entries(zeros)) {
      const digits = (ascii: string) => [...ascii].map((d) => (/\d/.test(d) ? String.fromCodePoint(zero + Number(d)) : d)).join('');
      expect(asciiDigits(digits('0123456789')), script).toBe('0123456789');
      expect(parsePhone(digits('+1 201 555 0123')).e164, script).toBe('+12015550123');
      expect(parsePhone(digits('(201) 555-0123'), 'US').e164, script).toBe('+12015550123');
      expect(parsePhone(`＋${digits('44 7400 123456')}`).e164, script).toBe('+447400123456');
    }
    // Signs that look like digits but are not decimal digits stay refused.
    for (const input of ['+1 ②⓪① 555 0123', '+1 201 555 0¹²³', '+1 201 555 Ⅰ23']) expect(codeOf(() => parsePhone(input)), input).toBe('invalid_phone');
  });

  it('holds Unicode to its promise that decimal digits come in runs of ten from zero', () => {
    const everyCodePoint = Array.from({ length: 0x110000 - 0x800 }, (_, i) => String.fromCodePoint(i < 0xd800 ? i : i + 0x800)).join('');
    const runs = [...everyCodePoint.matchAll(/\p{Nd}+/gu)].map((run) => [...run[0]].length);
    expect(runs.length).toBeGreaterThan(60);
    expect(runs.filter((length) => length % 10 !== 0)).toEqual([]);
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

  it('keeps only the last 2 when the national number is shorter than 8 digits, and 1 when it has 5 or fewer', () => {
    expect(maskPhone('+2901234567')).toBe('+290*****67');
    expect(maskPhone('+681721234')).toBe('+681****34');
    expect(maskPhone('+24762889')).toBe('+247****9');
    expect(maskPhone('+6837012')).toBe('+683***2');
  });

  it('masks every example number without revealing more than the allowed digits', () => {
    for (const { e164 } of examples) {
      const masked = maskPhone(e164);
      expect(masked.length).toBe(e164.length);
      const national = e164.length - masked.indexOf('*');
      const shown = masked.length - masked.lastIndexOf('*') - 1;
      expect(shown, e164).toBe(national <= 5 ? 1 : national < 8 ? 2 : 4);
      expect(masked).toMatch(/^\+\d{1,3}\*+\d{1,4}$/);
    }
  });
});
