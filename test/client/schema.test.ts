import { execFile } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { describe, expect, it } from 'vitest';

// Issue 15, item 5: the client's types are openapi.yaml's, and it needs nothing at run time but fetch.
const root = join(import.meta.dirname, '../..');

describe('@phonevault/client package', () => {
  it('has types generated from the committed openapi.yaml, as `npm run generate -w client` writes them', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'pv-schema-'));
    try {
      const out = join(dir, 'schema.ts');
      const manifest = JSON.parse(readFileSync(join(root, 'client/package.json'), 'utf8')) as { scripts: { generate: string } };
      // The package's own generate command, its output sent elsewhere.
      const args = manifest.scripts.generate.replace(/^openapi-typescript /, '').replace('--output src/schema.ts', `--output ${out}`).split(' ');
      await promisify(execFile)(join(root, 'client/node_modules/.bin/openapi-typescript'), args, { cwd: join(root, 'client') });
      expect(readFileSync(out, 'utf8'), 'client/src/schema.ts is stale: run `npm run generate -w client`').toBe(readFileSync(join(root, 'client/src/schema.ts'), 'utf8'));
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it('has no runtime dependency and runs on Node 20', () => {
    const manifest = JSON.parse(readFileSync(join(root, 'client/package.json'), 'utf8')) as Record<string, unknown>;
    expect(manifest.name).toBe('@phonevault/client');
    expect(manifest.dependencies).toBeUndefined();
    expect(manifest.peerDependencies).toBeUndefined();
    expect((manifest.engines as { node: string }).node).toMatch(/^>=20/);
    for (const file of ['index.ts', 'transport.ts', 'errors.ts']) {
      const imports = [...readFileSync(join(root, 'client/src', file), 'utf8').matchAll(/from '([^']+)'/g)].map((match) => match[1]!);
      expect(imports.filter((name) => !name.startsWith('./')), file).toEqual([]);
    }
  });
});
