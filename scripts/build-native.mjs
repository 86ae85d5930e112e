// `npm run build`'s last step: native/relay.c (the gateway's native data plane, docs/DATAPATH.md "Native data plane")
// into dist/native/relay.so with $CC or cc. Without a C compiler the library is left out and says so: the gateway's
// gateway.dataPlane `auto` then stays on the JavaScript path, `native` refuses to start.
import { execFileSync } from 'node:child_process';
import { mkdirSync } from 'node:fs';
import { dirname, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

const repo = resolve(dirname(fileURLToPath(import.meta.url)), '..');
const out = resolve(repo, 'dist/native/relay.so');
const cc = process.env.CC || 'cc';
mkdirSync(dirname(out), { recursive: true });
try {
  execFileSync(cc, ['-O2', '-Wall', '-Wextra', '-Werror', '-shared', '-fPIC', '-pthread', '-o', out, resolve(repo, 'native/relay.c')], { stdio: 'inherit' });
} catch (err) {
  if (err.code !== 'ENOENT') throw err;
  console.log(`build-native: no C compiler (${cc}): dist/native/relay.so not built; gateway.dataPlane stays on the JavaScript path`);
}
