/** dynamollm's version, as the NATS Service API reports it (test/unit/service-api.test.ts: equals package.json's). */
export const DYNAMOLLM_VERSION = '0.1.0';
