/**
 * The gateway process runs without V8's allocation-site pretenuring (src/runtime/heap-tuning.ts): objects of a site
 * whose earlier objects outlived scavenges (a closed loop's requests in flight) are still born young once the requests
 * are short-lived, so they die young instead of landing in the old generation and holding what they point to through
 * every scavenge. Read in a fresh process that constructs a GatewayActor (not started): a site is made to pretenure
 * (its objects kept through eight scavenges), then 200,000 of its objects die at once, each holding a young array;
 * the old generation's growth over a scavenge says where they were born. V8 pretenures the site only once its code is
 * optimized in time, in most processes but not all: V8's default is seen in one of three processes at least, a
 * gateway's heap in each of three.
 */
import { execFileSync } from 'node:child_process';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { describe, expect, it } from 'vitest';
import { REPO_ROOT } from '../helpers/nats.ts';

/** KiB the old generation grew by while short-lived objects of a pretenured site were made, in a fresh process after `setup`. */
function oldGrowthKiB(setup: string, env: NodeJS.ProcessEnv = {}): number {
  const main = pathToFileURL(join(REPO_ROOT, 'actors/gateway/main.ts')).href;
  const config = pathToFileURL(join(REPO_ROOT, 'actors/gateway/config.ts')).href;
  const logger = pathToFileURL(join(REPO_ROOT, 'src/runtime/logger.ts')).href;
  const script = `
import v8 from 'node:v8';
import vm from 'node:vm';
const { GatewayActor } = await import(${JSON.stringify(main)});
const { splitConfig } = await import(${JSON.stringify(config)});
const { createLogger } = await import(${JSON.stringify(logger)});
${setup}
v8.setFlagsFromString('--expose-gc');
const gc = vm.runInNewContext('gc');
function make(i) { return { i, payload: [i, i + 1, i + 2] }; }
const old = () => v8.getHeapSpaceStatistics().find((s) => s.space_name === 'old_space').space_used_size;
const keep = [];
for (let r = 0; r < 8; r++) { for (let i = 0; i < 20000; i++) keep.push(make(i)); gc({ type: 'minor' }); }
keep.length = 0;
gc();
const o0 = old();
let last;
for (let i = 0; i < 200000; i++) last = make(i);
gc({ type: 'minor' });
process.stdout.write(String((old() - o0) / 1024 + last.i * 0));
`;
  const out = execFileSync(process.execPath, ['--import', 'tsx', '--input-type=module', '-e', script], {
    cwd: REPO_ROOT, env: { ...process.env, DYNAMOLLM_LOG_LEVEL: 'error', ...env }, stdio: ['ignore', 'pipe', 'inherit'], timeout: 60_000,
  });
  return Number(out.toString());
}

const constructGateway = `
const { cluster, gateway } = splitConfig({ model: 'llama3.1-8b', servers: [{ id: 'n0', gpus: 8 }], gateway: { port: 0 } });
new GatewayActor({ id: 'gw-heap', cluster, settings: gateway, servers: 'nats://127.0.0.1:1', log: createLogger({ level: 'error' }) });
`;

describe('the gateway heap: no allocation-site pretenuring', () => {
  it('a gateway process allocates a pretenured site\'s short-lived objects young (the old generation does not grow)', { timeout: 120_000 }, () => {
    // the same process without a gateway constructed: V8's default pretenures the site (megabytes into the old generation)
    expect(Math.max(...[0, 1, 2].map(() => oldGrowthKiB('')))).toBeGreaterThan(4096);
    expect(Math.max(...[0, 1, 2].map(() => oldGrowthKiB(constructGateway)))).toBeLessThan(1024);
  });

  it('DYNAMOLLM_GATEWAY_PRETENURING=1 keeps V8\'s default', { timeout: 120_000 }, () => {
    expect(Math.max(...[0, 1, 2].map(() => oldGrowthKiB(constructGateway, { DYNAMOLLM_GATEWAY_PRETENURING: '1' })))).toBeGreaterThan(4096);
  });
});
