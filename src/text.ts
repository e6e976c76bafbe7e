// C0 and C1 controls, DEL, the Unicode line and paragraph separators, and a surrogate half without its pair.
const UNSAFE = /[\u0000-\u001f\u007f-\u009f\u2028\u2029]|[\ud800-\udbff](?![\udc00-\udfff])|(?<![\ud800-\udbff])[\udc00-\udfff]/;

/**
 * Text that can be stored, logged and compared as it is: no control characters, no line separators, no lone
 * surrogates (which Postgres and JSON would refuse or mangle). Every string taken from a request or a credential
 * passes this before it is used.
 */
export function isSafeText(text: string): boolean {
  return !UNSAFE.test(text);
}
