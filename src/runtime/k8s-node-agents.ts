/**
 * The node agents of deploy/k8s, one DaemonSet per GPU node (deploy/k8s/60-node-agent.yaml, written by
 * `npm run gen:nats-config` from deploy/k8s/node-agent.template.yaml and deploy/k8s/cluster.yaml's `servers`).
 * A single DaemonSet would mount one Secret on every node, i.e. every node's NATS seeds everywhere; one per node,
 * pinned to it by name, mounts only that node's Secret (dynamollm-nats-keys-node-<node>).
 */
import { DynError } from '../../protocols/errors.ts';

export const NODE_PLACEHOLDER = '__NODE__';

/** A Kubernetes node name usable in an object name, a Secret name and a label value. */
const NODE_NAME = /^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$/;

export class NodeNameError extends DynError {
  override name = 'NodeNameError';
  constructor(message: string) {
    super('invalid_request', message, { retryable: false });
  }
}

/**
 * The manifest text: every document of `template` that names the placeholder once per node (in the order
 * given), the others once, after them; template lines starting with `#!` are left out.
 */
export function nodeAgentManifests(template: string, nodes: readonly string[], header: string[]): string {
  if (nodes.length === 0) throw new NodeNameError('no GPU node in the cluster config (servers)');
  for (const n of nodes) {
    if (n.length > 63 || !NODE_NAME.test(n)) {
      throw new NodeNameError(`node id '${n}' is not a Kubernetes node name usable in a label value (lower case letters, digits, '-', '.'; at most 63)`);
    }
  }
  if (new Set(nodes).size !== nodes.length) throw new NodeNameError(`node ids repeat: ${nodes.join(', ')}`);
  const body = template
    .split('\n')
    .filter((l) => !l.startsWith('#!'))
    .join('\n');
  const docs = body.split(/^---[ \t]*$/m).map((d) => d.replace(/^\n+/, '').replace(/\s+$/, '\n'));
  const perNode = docs.filter((d) => d.includes(NODE_PLACEHOLDER));
  const once = docs.filter((d) => !d.includes(NODE_PLACEHOLDER) && d.trim() !== '');
  if (perNode.length === 0) throw new NodeNameError(`the node-agent template names no ${NODE_PLACEHOLDER}`);
  const out = [
    ...nodes.flatMap((n) => perNode.map((d) => d.split(NODE_PLACEHOLDER).join(n))),
    ...once,
  ];
  return header.map((h) => (h ? `# ${h}\n` : '#\n')).join('') + out.join('---\n');
}
