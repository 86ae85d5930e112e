/**
 * YAML parsing, with the `yaml` package loaded on the first YAML document only: a process that reads JSON (every
 * actor `up` starts: its config files are JSON) does not pay for its two dozen modules at start-up
 * (src/runtime/startup.ts). The same package and entry (`yaml/dist/index.js`, its `node` export) as a static import.
 */
import { createRequire } from 'node:module';
import type * as Yaml from 'yaml';

const require = createRequire(import.meta.url);
let yaml: typeof Yaml | undefined;

/** `yaml`'s parse (YAML 1.2, a superset of JSON). */
export function parseYaml(text: string): unknown {
  yaml ??= require('yaml') as typeof Yaml;
  return yaml.parse(text);
}
