import { defineConfig } from 'vitest/config';

// npm run test:deploy (test/deploy/run.sh prepares the engine and images): the stack under Docker, one file at a time.
export default defineConfig({
  test: {
    include: ['test/deploy/**/*.test.ts'],
    testTimeout: 300_000,
    hookTimeout: 900_000,
    fileParallelism: false,
  },
});
