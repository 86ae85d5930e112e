/**
 * The package runs once packed: `npm pack` (its prepack builds dist/) into a temporary directory, the tarball
 * unpacked there with this checkout's node_modules beside it (as an install would put the dependencies), then its
 * bin run from another directory: --help, and a short simulation, which reads the shipped profiles from the
 * package root and runs the simulator's compiled worker; and the gateway's compiled data plane at its default
 * (gateway.dataPlane auto) loads the native library the package carries.
 */
import { execFileSync, spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, readdirSync, symlinkSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { pathToFileURL } from 'node:url';
import { describe, expect, it } from 'vitest';

describe('npm pack', () => {
  it('packs a package whose bin runs', () => {
    const dir = mkdtempSync(join(tmpdir(), 'dyn-pack-'));
    execFileSync('npm', ['pack', '--pack-destination', dir, '--silent'], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] });
    const tgz = readdirSync(dir).find((f) => f.endsWith('.tgz'))!;
    execFileSync('tar', ['xzf', join(dir, tgz), '-C', dir]);
    const root = join(dir, 'package');
    symlinkSync(resolve('node_modules'), join(root, 'node_modules'));
    const bin = join(root, 'bin', 'dynamollm.js');
    const help = spawnSync(process.execPath, [bin, '--help'], { cwd: dir, encoding: 'utf8' });
    expect(help.status, help.stderr).toBe(0);
    expect(help.stdout).toMatch(/Usage: dynamollm/);
    const sim = spawnSync(process.execPath, [bin, 'simulate', '--trace', 'synth:conversation:0.002:1', '--policy', 'dynamollm', '--model', 'llama2-70b', '--gpu', 'h100', '--servers', '1'], { cwd: dir, encoding: 'utf8', timeout: 120_000 });
    expect(sim.status, sim.stderr).toBe(0);
    expect(sim.stdout + sim.stderr).toMatch(/simulated \d+ requests/);
    // the gateway's native data plane: prepack's build put its library in the package (where a C compiler is present),
    // and the package's compiled gateway, at its default gateway.dataPlane (auto), finds and loads it from the package
    const withCc = spawnSync('cc', ['--version']).status === 0;
    expect(existsSync(join(root, 'dist', 'native', 'relay.so'))).toBe(withCc);
    const env = Object.fromEntries(Object.entries(process.env).filter(([k]) => k !== 'DYN_DATAPLANE_LIB'));
    const at = (p: string) => JSON.stringify(pathToFileURL(join(root, 'dist', 'actors', 'gateway', p)).href);
    const probe = `const { gatewaySchema } = await import(${at('config.js')}); const { loadDataPlane } = await import(${at('data-plane.js')});
      const plane = await loadDataPlane(gatewaySchema.parse({}).dataPlane); console.log(plane ? 'native' : 'js'); process.exit(0);`;
    const loaded = spawnSync(process.execPath, ['--input-type=module', '-e', probe], { cwd: dir, encoding: 'utf8', env });
    expect(loaded.status, loaded.stderr).toBe(0);
    expect(loaded.stdout.trim()).toBe(withCc ? 'native' : 'js');
  }, 300_000);
});
