// ESLint 9 flat config: typescript-eslint strict (type-checked), floating promises, import cycles, the layer
// order, purity of src/model and src/policy, and a file-length bound. `npm run lint`; runs in .ci/run and in
// `npm test` (test/run.sh).
import js from '@eslint/js';
import tseslint from 'typescript-eslint';
import { importX, createNodeResolver } from 'eslint-plugin-import-x';

/**
 * The layers, top to bottom; each imports only from the layers beneath it (and its own).
 *   cli -> actors -> src/{runtime,engine,gpu,sim,telemetry} -> src/{model,policy} (pure) -> protocols
 * Production code never imports test code.
 */
const CLI = ['./src/cli'];
const ACTORS = ['./actors'];
const RUNTIME = ['./src/runtime', './src/engine', './src/gpu', './src/sim', './src/telemetry'];
const PURE = ['./src/model', './src/policy'];
const PROTOCOLS = ['./protocols'];
// the consumers' client library (dynamollm/client): protocols only, beside the layers (the CLI uses it)
const CLIENT = ['./src/client'];
const TEST = ['./test'];
const zone = (target, from, layer) => ({ target, from, message: `the layer order is cli > actors > src/{runtime,engine,gpu,sim,telemetry} > src/{model,policy} > protocols: ${layer} must not import from here (eslint.config.js)` });
const LAYER_ZONES = [
  zone(ACTORS, [...CLI, ...TEST], 'actors'),
  zone(RUNTIME, [...CLI, ...ACTORS, ...CLIENT, ...TEST], 'src/{runtime,engine,gpu,sim,telemetry}'),
  zone(PURE, [...CLI, ...ACTORS, ...RUNTIME, ...CLIENT, ...TEST], 'src/{model,policy}'),
  zone(PROTOCOLS, [...CLI, ...ACTORS, ...RUNTIME, ...PURE, ...CLIENT, ...TEST], 'protocols'),
  zone(CLIENT, [...CLI, ...ACTORS, ...RUNTIME, ...PURE, ...TEST], 'src/client'),
  zone(CLI, TEST, 'src/cli'),
];

/** Files allowed past MAX_LINES, each with its reason. */
const LONG_FILES = {};
const MAX_LINES = 600;

/**
 * Time in actors/ and in src/{model,policy}: read and scheduled through the injected Clock (src/runtime/clock.ts),
 * which each actor gets from its main (ActorOptions.clock), so a test drives the code on a ManualClock and the
 * simulator on its virtual clock. Date.now(), performance.now(), `new Date()` and the global timers are errors there.
 */
const CLOCK_MESSAGE = 'read time and arm timers through the injected Clock (src/runtime/clock.ts: clock.now(), clock.setTimeout/setInterval/sleep), so a test can drive this code on a ManualClock';
const CLOCK_PROPERTIES = ['Date.now', 'performance.now', ...['setTimeout', 'setInterval', 'clearTimeout', 'clearInterval'].map((t) => `globalThis.${t}`)];
const CLOCK_GLOBALS = ['setTimeout', 'setInterval', 'clearTimeout', 'clearInterval'];
/**
 * Files that may keep one of CLOCK_PROPERTIES, each with its reason. performance.now() is kept only where it times
 * intervals on the monotonic high-resolution timer (a time-scaled engine's token gaps are sub-millisecond; the
 * injected clock is in whole wall milliseconds): it is never compared with a time of the clock or a deadline.
 */
const CLOCK_EXCEPTIONS = {
  // the gaps between a leg's tokens (TBT) in timeTokens; the first token's time is the clock's
  'actors/gateway/legs.ts': ['performance.now'],
  // the client-facing TTFT/TBT histograms (StreamTimer's t0, taken at the request's arrival)
  'actors/gateway/server.ts': ['performance.now'],
  'actors/gateway/stream-timer.ts': ['performance.now'],
  // the native data plane's event times (its thread's CLOCK_MONOTONIC) brought onto performance.now() for the TBT gaps
  'actors/gateway/data-plane.ts': ['performance.now'],
  // the gaps between an instance's tokens (TBT); the first token's time is the clock's
  'actors/instance-manager/engine-stream.ts': ['performance.now'],
  // the HiGHS solve's own duration (solveMs, a figure reported with the plan): CPU time spent, not time in the model
  'src/policy/milp.ts': ['performance.now'],
};
/** The time rules, less the properties `allowed`, plus `globals` (a folder's own restricted globals). */
const clockRules = (allowed = [], globals = []) => ({
  'no-restricted-properties': ['error', ...CLOCK_PROPERTIES.filter((p) => !allowed.includes(p)).map((p) => {
    const [object, property] = p.split('.');
    return { object, property, message: CLOCK_MESSAGE };
  })],
  'no-restricted-globals': ['error', ...globals, ...CLOCK_GLOBALS.map((name) => ({ name, message: CLOCK_MESSAGE }))],
  'no-restricted-syntax': ['error',
    { selector: "NewExpression[callee.name='Date'][arguments.length=0]", message: CLOCK_MESSAGE },
    { selector: "CallExpression[callee.name='Date']", message: CLOCK_MESSAGE },
    { selector: "ImportDeclaration[source.value=/^(node:)?timers/]", message: CLOCK_MESSAGE },
  ],
});
const PURE_GLOBALS = [{ name: 'process', message: 'src/model and src/policy are pure: pass settings in as arguments' }];
const PURE_FILES = ['src/model/**/*.ts', 'src/policy/**/*.ts'];

export default tseslint.config(
  { ignores: ['node_modules/', 'dist/', 'test/artifacts/', 'bench-results/', 'src/telemetry/dashboard/', '**/*.js', '**/*.mjs', '**/*.cjs'] },
  js.configs.recommended,
  ...tseslint.configs.strictTypeChecked,
  {
    languageOptions: {
      parserOptions: { projectService: true, tsconfigRootDir: import.meta.dirname },
    },
    plugins: { 'import-x': importX },
    settings: {
      'import-x/resolver-next': [createNodeResolver()],
      'import-x/extensions': ['.ts', '.js', '.mjs'],
      'import-x/parsers': { '@typescript-eslint/parser': ['.ts'] },
    },
    rules: {
      '@typescript-eslint/no-floating-promises': 'error',
      '@typescript-eslint/no-misused-promises': 'error',
      'import-x/no-cycle': 'error',
      'import-x/no-restricted-paths': ['error', { zones: LAYER_ZONES }],
      'max-lines': ['error', { max: MAX_LINES, skipBlankLines: false, skipComments: false }],
      // numbers and booleans read naturally in messages; objects, nullish values and unions with them do not
      '@typescript-eslint/restrict-template-expressions': ['error', { allowNumber: true, allowBoolean: true }],
      // `() => res.end()` is the idiom for a callback whose result is ignored, and `return send(res, ...)` ends a
      // request handler where it answers (the rule's option for void functions does not cover async handlers)
      '@typescript-eslint/no-confusing-void-expression': 'off',
      // An `async` method without `await` implements a Promise-returning interface (GpuControl, a serve()
      // handler, a CLI command): `async` turns its throws into rejections, which its callers handle. Dropping
      // `async` to satisfy this rule would make those throws synchronous.
      '@typescript-eslint/require-await': 'off',
      // unused arguments and destructured rest siblings named with a leading underscore are deliberate
      '@typescript-eslint/no-unused-vars': ['error', { argsIgnorePattern: '^_', varsIgnorePattern: '^_', ignoreRestSiblings: true }],
      // The code marks index reads with `!` (`xs[i]!`) as if noUncheckedIndexedAccess were on; it is off (turning
      // it on reports 350 sites, 126 of them in src/sim's simulation class). With it off, these
      // three rules read those marks and the guards after index reads as wrong or unnecessary. Turn them back on
      // together with noUncheckedIndexedAccess in tsconfig.json.
      '@typescript-eslint/no-non-null-assertion': 'off',
      '@typescript-eslint/no-unnecessary-type-assertion': 'off',
      '@typescript-eslint/no-unnecessary-condition': 'off',
    },
  },
  ...Object.entries(LONG_FILES).map(([file, max]) => ({ files: [file], rules: { 'max-lines': ['error', { max }] } })),
  {
    // src/model and src/policy are pure: no files, threads, processes or environment
    files: PURE_FILES,
    rules: {
      'no-restricted-imports': ['error', { patterns: [{ group: ['node:*', 'fs', 'fs/*', 'path', 'os', 'child_process', 'worker_threads', 'net', 'http', 'https'], message: 'src/model and src/policy are pure: I/O belongs to src/{runtime,engine,gpu,sim,telemetry} or src/cli' }] }],
      ...clockRules([], PURE_GLOBALS),
    },
  },
  // actors interpret effects on the injected clock (docs: actors/README.md)
  { files: ['actors/**/*.ts'], rules: clockRules() },
  ...Object.entries(CLOCK_EXCEPTIONS).map(([file, allowed]) => ({
    files: [file],
    rules: clockRules(allowed, PURE_FILES.some((g) => file.startsWith(g.split('/**')[0])) ? PURE_GLOBALS : []),
  })),
  {
    // Tests: the rules above apply, except these. Tests read wire JSON, parsed YAML and caught errors as
    // untyped values and assert on their fields (the assertion is the type check); they reset environment
    // variables by name; and they send the OpenAI fields clients still send (max_tokens), deprecated or not.
    files: ['test/**/*.ts'],
    rules: {
      '@typescript-eslint/no-unsafe-assignment': 'off',
      '@typescript-eslint/no-unsafe-member-access': 'off',
      '@typescript-eslint/no-unsafe-argument': 'off',
      '@typescript-eslint/no-unsafe-return': 'off',
      '@typescript-eslint/no-unsafe-call': 'off',
      '@typescript-eslint/no-explicit-any': 'off',
      '@typescript-eslint/no-dynamic-delete': 'off',
      '@typescript-eslint/no-deprecated': 'off',
    },
  },
);
