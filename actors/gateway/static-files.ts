/** The dashboard's files the gateway serves (`/`, its script and style sheet): src/telemetry/dashboard. */
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { REPO_ROOT } from '../../src/runtime/code-path.ts';

const STATIC_DIR = join(REPO_ROOT, 'src', 'telemetry', 'dashboard');
/** each served path's file. */
export const STATIC: Record<string, string> = { '/': 'index.html', '/index.html': 'index.html', '/dashboard.js': 'dashboard.js', '/dashboard.css': 'dashboard.css' };
const MIME: Record<string, string> = { html: 'text/html; charset=utf-8', js: 'text/javascript; charset=utf-8', css: 'text/css; charset=utf-8' };

/** The file's bytes and content type; undefined when it cannot be read. */
export async function staticFile(file: string): Promise<{ body: Buffer; type: string } | undefined> {
  try {
    return { body: await readFile(join(STATIC_DIR, file)), type: MIME[file.split('.').pop()!] ?? 'application/octet-stream' };
  } catch {
    return undefined;
  }
}
