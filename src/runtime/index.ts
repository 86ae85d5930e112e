/** The actor runtime: public API. */
export * from './clock.ts';
export * from './logger.ts';
export * from './errors.ts';
export * from './mailbox.ts';
export * from './bus.ts';
export * from './lifecycle.ts';
export * from './heartbeat.ts';
export * from './liveness.ts';
export * from './lease.ts';
export * from './actor.ts';
export * from './supervisor.ts';
export * from './nats-launcher.ts';
export * from './actor-factory.ts';
