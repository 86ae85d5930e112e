/** dynamollm chaos's count of the gateways' refusal causes from up.log (src/cli/chaos-refusals.ts). */
import { describe, expect, it } from 'vitest';
import { refusalCauses } from '../../src/cli/chaos-refusals.ts';

const line = (o: Record<string, unknown>) => JSON.stringify({ level: 30, time: 1, pid: 7, name: 'dynamollm', actor: 'gateway', id: 'gw-0', ...o });

describe('chaos refusal causes', () => {
  it('counts the gateways\' request refused lines by status, code and cause, numbers masked; other lines ignored', () => {
    const text = [
      line({ msg: 'actor running' }),
      line({ msg: 'request refused', route: '/v1/completions', status: 503, code: 'unavailable', cause: "the request did not start within the gateway's hold limit" }),
      line({ msg: 'request refused', route: '/v1/completions', status: 503, code: 'unavailable', cause: 'the gateway lost its connection to the cluster and it did not come back in time' }),
      line({ msg: 'request refused', route: '/v1/chat/completions', status: 503, code: 'no_responders', remoteCode: 'no_responders', cause: 'no responders on dyn.v1.cluster.intake' }),
      line({ msg: 'request refused', route: '/v1/completions', status: 503, code: 'timeout', cause: 'request to dyn.v1.cluster.intake timed out after 2999 ms' }),
      line({ msg: 'request refused', route: '/v1/completions', status: 503, code: 'timeout', cause: 'request to dyn.v1.cluster.intake timed out after 812 ms' }),
      line({ msg: 'request refused', route: '/v1/completions', status: 503, code: 'unavailable', cause: "the request did not start within the gateway's hold limit" }),
      'dynamollm: stopped NATS',
      '{"msg":"request refused", "status": 429',
    ].join('\n');
    expect(refusalCauses(text)).toEqual({
      "503 unavailable: the request did not start within the gateway's hold limit": 2,
      '503 unavailable: the gateway lost its connection to the cluster and it did not come back in time': 1,
      '503 no_responders: no responders on dyn.v1.cluster.intake': 1,
      '503 timeout: request to dyn.v1.cluster.intake timed out after N ms': 2,
    });
    expect(refusalCauses('')).toEqual({});
  });
});
