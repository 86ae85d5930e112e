/**
 * Which failed first connects an actor dials again at start-up: a server that timed out the authentication (a loaded
 * host) may take the next attempt; refused credentials and invalid options fail the same way every time.
 */
import { describe, expect, it } from 'vitest';
import { errors as natsErrors } from '@nats-io/transport-node';
import { firstConnect, firstConnectRetryable } from '../../src/runtime/nats-dial.ts';

describe('firstConnectRetryable', () => {
  it("dials again after the server's authentication timeout", () => {
    const timeout = natsErrors.AuthorizationError.parse("'Authentication Timeout'");
    expect(timeout).toBeInstanceOf(natsErrors.AuthorizationError);
    expect(firstConnectRetryable(timeout)).toBe(true);
  });

  it('does not dial again after refused credentials or invalid options', () => {
    expect(firstConnectRetryable(natsErrors.AuthorizationError.parse("'Authorization Violation'"))).toBe(false);
    expect(firstConnectRetryable(new natsErrors.InvalidArgumentError('bad option'))).toBe(false);
  });

  it('a refused or reset server is dialled again', () => {
    expect(firstConnectRetryable(Object.assign(new Error('connect ECONNREFUSED'), { code: 'ECONNREFUSED' }))).toBe(true);
  });
});

describe('firstConnect', () => {
  it('connects on the attempt after an authentication timeout', async () => {
    let n = 0;
    const c = await firstConnect(async () => {
      n++;
      if (n === 1) throw natsErrors.AuthorizationError.parse("'Authentication Timeout'")!;
      return 'connected';
    }, { deadlineMs: 10_000, servers: ['nats://127.0.0.1:1'] });
    expect(c).toBe('connected');
    expect(n).toBe(2);
  });

  it('gives up at once on refused credentials', async () => {
    let n = 0;
    const err = await firstConnect(async () => {
      n++;
      throw natsErrors.AuthorizationError.parse("'Authorization Violation'")!;
    }, { deadlineMs: 10_000, servers: ['nats://127.0.0.1:1'] }).then(() => undefined, (e: unknown) => e);
    expect(err).toBeInstanceOf(natsErrors.AuthorizationError);
    expect(n).toBe(1);
  });
});
