/**
 * The run folder of `dynamollm up` (src/runtime/private-dir.ts): made 0700, refused when another user could change it
 * or when it is a link; the derived configs (they carry the gateway's API keys) are written 0600 and through no link.
 */
import { chmodSync, mkdirSync, mkdtempSync, readFileSync, rmSync, statSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { spawnSync } from 'node:child_process';
import { afterAll, describe, expect, it } from 'vitest';
import { defaultRunDir, ensurePrivateDir, UnsafeDirError, writePrivateFile } from '../../src/runtime/private-dir.ts';

const root = mkdtempSync(join(tmpdir(), 'private-dir-'));
afterAll(() => rmSync(root, { recursive: true, force: true }));
const REPO = join(import.meta.dirname, '..', '..');

describe('a private run folder', () => {
  it('is made 0700 with its missing parents, and one of this user that nobody else can write is taken as it is', () => {
    const dir = join(root, 'a', 'b');
    expect(ensurePrivateDir(dir)).toBe(dir);
    expect(statSync(dir).mode & 0o777).toBe(0o700);
    const mine = join(root, 'readable');
    mkdirSync(mine, { mode: 0o755 });
    chmodSync(mine, 0o755);
    expect(ensurePrivateDir(mine)).toBe(mine);
  });

  it('is refused, not retryable, when others can write to it or it is a link', () => {
    const open = join(root, 'open');
    mkdirSync(open);
    chmodSync(open, 0o777);
    expect(() => ensurePrivateDir(open)).toThrow(UnsafeDirError);
    expect(() => ensurePrivateDir(open)).toThrow(/writable by others \(mode 777\)/);
    chmodSync(open, 0o1777); // a sticky /tmp-like folder is still shared
    expect(() => ensurePrivateDir(open)).toThrow(/writable by others/);
    const link = join(root, 'link');
    symlinkSync(join(root, 'a'), link);
    expect(() => ensurePrivateDir(link)).toThrow(/symbolic link/);
    const file = join(root, 'file');
    writeFileSync(file, '');
    expect(() => ensurePrivateDir(file)).toThrow(/not a folder/);
    try {
      ensurePrivateDir(open);
    } catch (e) {
      expect((e as UnsafeDirError).retryable).toBe(false);
    }
  });

  it('holds files written 0600, replacing an old file of the name and never writing through a link there', () => {
    const dir = ensurePrivateDir(join(root, 'files'));
    const f = join(dir, 'gateway-1.json');
    writeFileSync(f, 'old', { mode: 0o644 });
    writePrivateFile(f, '{"apiKeys":["k"]}');
    expect(statSync(f).mode & 0o777).toBe(0o600);
    expect(readFileSync(f, 'utf8')).toBe('{"apiKeys":["k"]}');
    const target = join(root, 'target');
    writeFileSync(target, 'untouched');
    const planted = join(dir, 'cluster-1.json');
    symlinkSync(target, planted);
    writePrivateFile(planted, 'secret');
    expect(readFileSync(target, 'utf8')).toBe('untouched');
    expect(readFileSync(planted, 'utf8')).toBe('secret');
  });

  it("is per user by default, and `up` refuses a shared one before starting anything", () => {
    const uid = process.getuid?.();
    if (uid !== undefined) expect(defaultRunDir()).toBe(join(tmpdir(), `dynamollm-${uid}`));
    const open = join(root, 'shared');
    mkdirSync(open);
    chmodSync(open, 0o777);
    const r = spawnSync(process.execPath, ['--import', 'tsx', join(REPO, 'src/cli/main.ts'), 'up', '--run-dir', open, '--port', '0'], { cwd: REPO, encoding: 'utf8', timeout: 60_000 });
    expect(r.status).not.toBe(0);
    expect(r.stderr + r.stdout).toMatch(/run folder .*shared is writable by others/);
  }, 70_000);
});
