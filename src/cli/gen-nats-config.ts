/**
 * `npm run gen:nats-config`: writes the committed NATS server configs (nats.conf, deploy/nats/cluster.conf,
 * deploy/k8s/nats.conf) from protocols/permissions.ts, and deploy/k8s/60-node-agent.yaml (one node agent per
 * GPU node of deploy/k8s/cluster.yaml, each mounting only its own node's seeds) from
 * deploy/k8s/node-agent.template.yaml. `--check` exits 1 when a committed file differs.
 */
import { readFileSync, writeFileSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { committedConfigs } from '../runtime/nats-server-config.ts';
import { committedNodeAgents } from './k8s-node-agents-file.ts';

const REPO = resolve(dirname(fileURLToPath(import.meta.url)), '..', '..');
const check = process.argv.includes('--check');
let stale = 0;
for (const [path, text] of Object.entries({ ...committedConfigs(), ...committedNodeAgents(REPO) })) {
  const file = join(REPO, path);
  let cur = '';
  try {
    cur = readFileSync(file, 'utf8');
  } catch {
    // absent: written below
  }
  if (cur === text) continue;
  if (check) {
    process.stderr.write(`${path} differs from its generated form (run npm run gen:nats-config)\n`);
    stale++;
  } else {
    writeFileSync(file, text);
    process.stdout.write(`wrote ${path}\n`);
  }
}
process.exit(stale ? 1 : 0);
