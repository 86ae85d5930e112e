#!/usr/bin/env bash
# `npm test`: lint (eslint.config.js; skipped when DYNAMOLLM_LINT_DONE=1, as .ci/run sets after its own lint step),
# then the pure unit tests in parallel, then the tests that start real nats-servers, actor processes,
# engines and browsers one file at a time (they measure latency; on a 2-core machine two of them at once
# would measure each other). Prints one closing line "tests: N passed, N failed, N skipped".
set -u
cd "$(dirname "$0")/.."
mkdir -p test/artifacts
rm -f test/artifacts/vitest-unit.json test/artifacts/vitest-heavy.json
filter=("$@")
l=0
if [ "${DYNAMOLLM_LINT_DONE:-0}" != 1 ]; then
  npx eslint .
  l=$?
  [ $l -eq 0 ] || echo "lint failed (npm run lint)" >&2
fi
npx vitest run test/unit "${filter[@]}" --reporter=default --reporter=json --outputFile.json=test/artifacts/vitest-unit.json
u=$?
npx vitest run test/integration test/chaos test/e2e "${filter[@]}" --no-file-parallelism --reporter=default --reporter=json --outputFile.json=test/artifacts/vitest-heavy.json
h=$?
node -e '
  const fs = require("fs");
  let p = 0, f = 0, s = 0, t = 0;
  for (const file of ["test/artifacts/vitest-unit.json", "test/artifacts/vitest-heavy.json"]) {
    if (!fs.existsSync(file)) continue;
    const r = JSON.parse(fs.readFileSync(file, "utf8"));
    p += r.numPassedTests; f += r.numFailedTests; s += r.numPendingTests + (r.numTodoTests || 0); t += r.numTotalTests;
  }
  console.log(`tests: ${p} passed, ${f} failed, ${s} skipped`);
  if (t === 0) { console.error("no test ran"); process.exit(1); }
'
s=$?
[ $l -eq 0 ] && [ $u -eq 0 ] && [ $h -eq 0 ] && [ $s -eq 0 ]
