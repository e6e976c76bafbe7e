import { readFileSync } from 'node:fs';

export interface Example {
  region: string;
  type: string;
  e164: string;
  national: string;
  nationalPrefix: string | null;
}

/** Google's libphonenumber example number of every region and number type (test/fixtures, Apache-2.0). */
export const EXAMPLES = (JSON.parse(readFileSync(new URL('../fixtures/libphonenumber-examples.json', import.meta.url), 'utf8')) as { numbers: Example[] }).numbers;

/** The three examples libphonenumber-js 1.13.16 with max metadata calls invalid. */
export const KNOWN_INVALID = new Set(['+22985751234', '+22981123456', '+2631312345']);
