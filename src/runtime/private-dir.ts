/**
 * A folder only this user can change, for files that carry secrets (the derived actor configs hold the gateway's API
 * keys and metrics token) or that other processes read back as trusted input. Created with mode 0700; an existing one
 * must be a real directory (not a link), owned by this user, and writable by nobody else, or it is refused: a folder
 * another local user made or can write to lets that user read the files, swap them before the children read them, or
 * plant a link where one will be written.
 */
import { lstatSync, mkdirSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

/** A folder that cannot be trusted with private files. Not retryable: the folder must change first. */
export class UnsafeDirError extends Error {
  override name = 'UnsafeDirError';
  readonly retryable = false;
}

/** The default run folder: one per user under the temporary folder ($TMPDIR/dynamollm-<uid>). */
export function defaultRunDir(): string {
  const uid = process.getuid?.();
  return join(tmpdir(), uid === undefined ? 'dynamollm' : `dynamollm-${uid}`);
}

/** Make `dir` (0700) if it is missing, then check it as the header says; returns `dir`. */
export function ensurePrivateDir(dir: string): string {
  try {
    mkdirSync(dir, { recursive: true, mode: 0o700 });
  } catch (e) {
    // EEXIST as a file, or a parent not writable: the check below names it
    if ((e as NodeJS.ErrnoException).code !== 'EEXIST') throw new UnsafeDirError(`run folder ${dir}: cannot create it: ${(e as Error).message}`);
  }
  const st = lstatSync(dir);
  if (st.isSymbolicLink()) throw new UnsafeDirError(`run folder ${dir} is a symbolic link; give a real folder (--run-dir)`);
  if (!st.isDirectory()) throw new UnsafeDirError(`run folder ${dir} is not a folder`);
  const uid = process.getuid?.();
  if (uid !== undefined && st.uid !== uid) throw new UnsafeDirError(`run folder ${dir} belongs to uid ${st.uid}, not to this user (uid ${uid}); give a folder of your own (--run-dir)`);
  if (uid !== undefined && (st.mode & 0o022) !== 0) throw new UnsafeDirError(`run folder ${dir} is writable by others (mode ${(st.mode & 0o777).toString(8)}); chmod go-w it or give another (--run-dir)`);
  return dir;
}

/** Write a private file (mode 0600) afresh: an old file of that name is removed first, so its mode cannot carry over. */
export function writePrivateFile(file: string, text: string): void {
  rmSync(file, { force: true });
  writeFileSync(file, text, { mode: 0o600, flag: 'wx' });
}
