import { defineConfig } from 'vitest/config';

// Unit tests are pure and fast; integration/chaos/e2e tests start real nats-server and child processes,
// so they get generous timeouts and run with at most two workers on this 2-core machine.
// 'source': the package's own exports (package.json, e.g. `dynamollm/client`) resolve to the TypeScript sources
// in tests (tsconfig.json names the same condition); without it they resolve to the built dist/.
export default defineConfig({
  resolve: { conditions: ['source', 'module', 'node', 'development|production'] },
  ssr: { resolve: { conditions: ['source', 'module', 'node', 'development|production'], externalConditions: ['source'] } },
  test: {
    include: ['test/**/*.test.ts'],
    // dist/ (what bin/dynamollm.js runs) rebuilt when the source is newer
    globalSetup: ['test/helpers/global-setup.ts'],
    testTimeout: 60_000,
    hookTimeout: 60_000,
    pool: 'forks',
    maxWorkers: 2,
    fileParallelism: true,
    reporters: ['default'],
  },
});
