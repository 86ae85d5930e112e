import { chmodSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { findExecutable, tiedToParent } from '../../src/runtime/parent-death.ts';

const dir = mkdtempSync(join(tmpdir(), 'dyn-tie-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));
const exe = (name: string, body = '#!/bin/sh\nexit 0\n') => {
  writeFileSync(join(dir, name), body);
  chmodSync(join(dir, name), 0o755);
  return join(dir, name);
};

describe('tiedToParent', () => {
  it.runIf(process.platform === 'linux')('runs the program through setpriv --pdeathsig, the program resolved on PATH', () => {
    const prog = exe('my-engine');
    const t = tiedToParent('my-engine', ['serve', 'x'], { path: `${dir}:${process.env.PATH ?? ''}`, signal: 'SIGTERM' });
    expect(t.tied).toBe(true);
    expect(t.command).toMatch(/\/setpriv$/);
    expect(t.args).toEqual(['--pdeathsig', 'SIGTERM', '--', prog, 'serve', 'x']);
  });

  it('leaves the command as it is off Linux, without setpriv, with a setpriv that lacks --pdeathsig, or for a missing program', () => {
    exe('prog2');
    expect(tiedToParent('prog2', ['a'], { platform: 'darwin', path: `${dir}:${process.env.PATH ?? ''}` })).toEqual({ command: 'prog2', args: ['a'], tied: false });
    // a PATH with the program but no setpriv
    expect(tiedToParent('prog2', ['a'], { platform: 'linux', path: dir })).toEqual({ command: 'prog2', args: ['a'], tied: false });
    // the program does not exist: its spawn must fail with ENOENT as it would untied (the caller's message names it)
    expect(tiedToParent('no-such-program-here', [], { platform: 'linux', path: process.env.PATH ?? '' }).tied).toBe(false);
    // a setpriv older than util-linux 2.33 rejects --pdeathsig: probed, not used
    const old = mkdtempSync(join(dir, 'old-'));
    writeFileSync(join(old, 'setpriv'), '#!/bin/sh\necho "setpriv: unrecognized option --pdeathsig" >&2\nexit 1\n');
    chmodSync(join(old, 'setpriv'), 0o755);
    expect(tiedToParent('prog2', ['a'], { platform: 'linux', path: `${old}:${dir}` }).tied).toBe(false);
  });

  it('findExecutable: a path with a slash is taken as it is; a name is looked up on PATH; not executable is not found', () => {
    const p = exe('prog3');
    expect(findExecutable(p)).toBe(p);
    expect(findExecutable('prog3', `/nonexistent:${dir}`)).toBe(p);
    writeFileSync(join(dir, 'plain'), 'x');
    expect(findExecutable('plain', dir)).toBeUndefined();
    expect(findExecutable('prog3', 'relative/dir')).toBeUndefined();
  });
});
