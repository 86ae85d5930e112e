/** How to spawn an actor process of issue 5 (kept apart from launch.ts, whose top-level await must not be imported). */
import { fileURLToPath } from 'node:url';

export const LAUNCH_TS = fileURLToPath(new URL('./launch.ts', import.meta.url));

/** argv for spawning an actor with node: [--import, tsx, launch.ts, kind, ...args]. */
export function launchArgs(kind: string, args: string[]): string[] {
  return ['--import', 'tsx', LAUNCH_TS, kind, ...args];
}
