#!/usr/bin/env node
// The `dynamollm` command: runs the compiled CLI (dist/, from `npm run build`), never TypeScript at run time.
// From a source checkout without a build, `npm run dynamollm -- <args>` runs the same CLI through tsx.
import { existsSync } from 'node:fs';
import { fileURLToPath } from 'node:url';

const main = new URL('../dist/src/cli/main.js', import.meta.url);
if (!existsSync(fileURLToPath(main))) {
  process.stderr.write(`dynamollm: ${fileURLToPath(main)} is missing: run \`npm run build\` first\n`);
  process.exit(1);
}
await import(main.href);
