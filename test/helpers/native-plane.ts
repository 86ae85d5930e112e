/**
 * The gateway's native data plane for a test (actors/gateway/data-plane.ts, docs/DATAPATH.md "Native data plane"):
 * native/relay.c built with cc into a temporary directory and loaded.
 */
import { execFileSync } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { NativeDataPlane } from '../../actors/gateway/data-plane.ts';

/** native/relay.c built with cc into a temporary directory, loaded (one plane per process and library file). */
export async function buildNativePlane(): Promise<NativeDataPlane> {
  const dir = mkdtempSync(join(tmpdir(), 'dp-'));
  try {
    execFileSync('cc', ['-O2', '-Wall', '-Wextra', '-Werror', '-shared', '-fPIC', '-pthread', '-o', join(dir, 'relay.so'), 'native/relay.c']);
    const p = await NativeDataPlane.load(join(dir, 'relay.so'));
    if (!(p instanceof NativeDataPlane)) throw new Error(p.why);
    return p;
  } finally {
    // loaded (mapped) already: the file is not needed any more
    rmSync(dir, { recursive: true, force: true });
  }
}
