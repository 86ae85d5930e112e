/**
 * The package runs once packed: `npm pack` (its prepack builds dist/) into a temporary directory, the tarball
 * unpacked there with this checkout's node_modules beside it (as an install would put the dependencies), then its
 * bin run from another directory: --help, and a short simulation, which reads the shipped profiles from the
 * package root and runs the simulator's compiled worker.
 */
import { execFileSync, spawnSync } from 'node:child_process';
import { mkdtempSync, readdirSync, symlinkSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
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
  }, 300_000);
});
