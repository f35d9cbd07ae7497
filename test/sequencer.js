/**
 * Runs the longest test files first. Without a timing cache (every CI run is a clean clone) jest orders files by
 * size, so the benchmark smoke runs — tiny files that take minutes — started last and ran alone at the end while the
 * other worker idled. The figures are seconds measured in a clean-clone CI run on 2 cores (refresh them from a CI
 * log when a file's time changes much: `grep -E '^(PASS|FAIL)' log`); files not listed follow, largest first.
 */
const fs = require('node:fs');
const path = require('node:path');

const SECONDS = {
  'test/e2e/rollout.test.ts': 91,
  'test/e2e/bench-smoke-gate.test.ts': 73,
  'test/e2e/bench-smoke-faults.test.ts': 61,
  'test/e2e/traffic-management.test.ts': 52,
  'test/e2e/bench-smoke-fleet.test.ts': 48,
  'test/e2e/gate.test.ts': 44,
  'test/e2e/bench-smoke-agent.test.ts': 44,
  'test/e2e/demo.test.ts': 34,
  'test/e2e/auth.test.ts': 32,
  'test/e2e/cp-restart-unknown-hosts.test.ts': 31,
  'test/integration/agent-reload.test.ts': 29,
  'test/e2e/status-page.test.ts': 26,
  'test/e2e/large-state.test.ts': 23,
  'test/e2e/incremental.test.ts': 19,
  'test/e2e/hitless-restart.test.ts': 17,
  'test/integration/discovery-zk-outage.test.ts': 16,
  'test/integration/zk-acl.test.ts': 15,
  'test/e2e/service-status.test.ts': 30,
  'test/e2e/system.test.ts': 13,
  'test/integration/discovery-zk-slow.test.ts': 10,
  'test/integration/stream-message-limit.test.ts': 9,
  'test/e2e/service-config-attacks.test.ts': 9,
};

class LongestFirst {
  sort(tests) {
    const root = path.resolve(__dirname, '..');
    const seconds = (t) => SECONDS[path.relative(root, t.path).split(path.sep).join('/')] ?? 0;
    const size = (t) => {
      try {
        return fs.statSync(t.path).size;
      } catch {
        return 0;
      }
    };
    return [...tests].sort((a, b) => seconds(b) - seconds(a) || size(b) - size(a) || (a.path < b.path ? -1 : 1));
  }

  // No timing cache to keep: the order above is the whole policy.
  cacheResults() {}

  // Without a cache, which tests failed last is not known: --onlyFailures runs them all.
  allFailedTests(tests) {
    return this.sort(tests);
  }
}

module.exports = LongestFirst;
