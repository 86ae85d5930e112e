/**
 * The node flags a gateway process starts with: the space-separated flags of env DYNAMOLLM_GATEWAY_NODE_FLAGS (none
 * where it is unset or empty). `dynamollm up` puts them before the CLI's module of each gateway process it starts (the
 * serving one and its standbys); a replica's workers, forked by node:cluster, inherit them. For measuring one tree
 * with and without a V8 setting (scripts/gateway-ab.ts; docs/DATAPATH.md "V8's threads in the gateway").
 */
export const GATEWAY_NODE_FLAGS_ENV = 'DYNAMOLLM_GATEWAY_NODE_FLAGS';

/** The gateway's node flags given the environment's value. */
export function gatewayNodeFlags(value: string | undefined): string[] {
  return (value ?? '').split(/\s+/).filter((f) => f.length > 0);
}
