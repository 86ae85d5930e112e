import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { ServiceResponder } from '../../src/runtime/service.ts';
import { DYNAMOLLM_VERSION } from '../../src/runtime/version.ts';
import { endpointName, serviceInfoResponse, serviceName, servicePingResponse, serviceStatsResponse, serviceSubjects } from '../../protocols/index.ts';

describe('NATS Service API responder', () => {
  it('reports the package version', () => {
    expect(DYNAMOLLM_VERSION).toBe((JSON.parse(readFileSync('package.json', 'utf8')) as { version: string }).version);
  });

  it('spells the control subjects of ADR-32', () => {
    expect(serviceSubjects.controlAll('PING', 'dynamollm-pool', 'pm-0')).toEqual(['$SRV.PING', '$SRV.PING.dynamollm-pool', '$SRV.PING.dynamollm-pool.pm-0']);
    expect(() => serviceSubjects.control('INFO', 'a.b')).toThrow();
    expect(serviceName('instance')).toBe('dynamollm-instance');
  });

  it('names endpoints uniquely and counts requests, errors and nanoseconds', () => {
    const r = new ServiceResponder({ name: 'dynamollm-pool', id: 'pm-0', version: DYNAMOLLM_VERSION, description: 'x' });
    const a = r.addEndpoint('dyn.v1.pool.p0.dispatch', 'q');
    const b = r.addEndpoint('dyn.v1.pool.p0.dispatch');
    expect([a.name, b.name]).toEqual(['pool-p0-dispatch', 'pool-p0-dispatch-2']);
    a.record(1000);
    a.record(3000, 'boom');
    const s = serviceStatsResponse.parse(r.stats());
    expect(s.endpoints[0]).toMatchObject({ num_requests: 2, num_errors: 1, last_error: 'boom', processing_time: 4000, average_processing_time: 2000, queue_group: 'q' });
    expect(s.endpoints[1]).toMatchObject({ num_requests: 0, average_processing_time: 0, last_error: '' });
    servicePingResponse.parse(r.ping());
    expect(serviceInfoResponse.parse(r.info()).endpoints).toHaveLength(2);
    r.removeEndpoint(b);
    expect(r.info().endpoints.map((e) => e.name)).toEqual(['pool-p0-dispatch']);
    expect(endpointName('$weird subject')).toBe('weird-subject');
  });
});
