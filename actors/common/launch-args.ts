/** How to spawn an actor process of issue 5 (kept apart from launch.ts, whose top-level await must not be imported). */
import { codeFile, nodeArgs } from '../../src/runtime/code-path.ts';

/** launch.ts in the form this process runs (source or dist/). */
export const LAUNCH_TS = codeFile('actors/common/launch.ts');

/** argv for spawning an actor with node: [launch.js, kind, ...args] compiled, [--import, tsx, launch.ts, ...] from source. */
export function launchArgs(kind: string, args: string[]): string[] {
  return [...nodeArgs('actors/common/launch.ts'), kind, ...args];
}
