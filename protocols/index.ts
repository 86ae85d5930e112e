export * from './errors.ts';
export * from './codec.ts';
export * from './subjects.ts';
export * from './messages.ts';
export * from './request-types.ts';
export * from './control.ts';
export * from './lease.ts';
export * from './service.ts';
