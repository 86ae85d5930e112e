#!/usr/bin/env bash
# `npm test`: the pure unit tests in parallel, then the tests that start real nats-servers, actor processes,
# engines and browsers one file at a time (they measure latency; on a 2-core machine two of them at once
# would measure each other). Prints one closing line "tests: N passed, N failed, N skipped".
set -u
cd "$(dirname "$0")/.."
mkdir -p test/artifacts
rm -f test/artifacts/vitest-unit.json test/artifacts/vitest-heavy.json
filter=("$@")
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
[ $u -eq 0 ] && [ $h -eq 0 ] && [ $s -eq 0 ]
