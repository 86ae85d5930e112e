/**
 * Stand-alone launcher of the actors of issue 5 (used by the node agent to start instance managers and by
 * tests): `node --import tsx actors/common/launch.ts <cluster|pool|instance|node> --id ID --config FILE ...`.
 * `dynamollm actor <kind>` (src/cli/actor-registry.ts) runs the same modules' `run(argv)`.
 */
import { fileURLToPath } from 'node:url';

const MODULES: Record<string, string> = {
  cluster: '../cluster-manager/main.ts',
  pool: '../pool-manager/main.ts',
  instance: '../instance-manager/main.ts',
  node: '../node-agent/main.ts',
};

if (process.argv[1] && fileURLToPath(import.meta.url) === process.argv[1]) {
  const [kind, ...rest] = process.argv.slice(2);
  const mod = kind ? MODULES[kind] : undefined;
  if (!mod) {
    process.stderr.write(`usage: launch.ts <${Object.keys(MODULES).join('|')}> --id ID --config FILE ...\n`);
    process.exit(2);
  }
  const m = (await import(mod)) as { run(argv: string[]): Promise<number | void> };
  const code = await m.run(rest).catch((err: Error) => {
    process.stderr.write(`${kind}: ${err.message}\n`);
    return 1;
  });
  if (typeof code === 'number' && code !== 0) process.exit(code);
}
