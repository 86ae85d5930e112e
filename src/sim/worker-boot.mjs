// Plain-JS boot for simulator workers: registers tsx in the worker, then loads the TypeScript entry.
import { workerData } from 'node:worker_threads';
import { register } from 'tsx/esm/api';

register();
await import(workerData.entry);
