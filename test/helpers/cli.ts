import { main } from '../../src/cli.js';

/** Runs the phonevault command line in-process, capturing what it prints. */
export async function runCli(argv: string[], env: Record<string, string | undefined>) {
  const out: string[] = [];
  const err: string[] = [];
  const code = await main(argv, env, (text) => out.push(text), (text) => err.push(text));
  return { code, out: out.join('\n'), err: err.join('\n') };
}
