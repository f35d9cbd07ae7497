import { mkdtempSync, rmSync, utimesSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import * as path from 'node:path';
import { silentLogger } from '../../common/platform/log';
import { stateJsonText } from '../../common/protocol/state-codec';
import { confirmStateCache, judgeStateCache, readStateCache } from '../../agent/state-cache';
import { server, service, state } from '../../testkit/agent';

const HOUR = 3_600_000;
const base = { file: '/var/lib/proxymgr/desired-state.json', version: 'v7', now: 100 * 24 * HOUR, maxAgeMs: 24 * HOUR };

describe('the state cache at start', () => {
  test('a cache confirmed within the max age is served', () => {
    expect(judgeStateCache({ ...base, confirmedAt: base.now - 23 * HOUR, haproxyRunning: false })).toEqual({
      serve: true,
      stale: false,
      message: 'serving the cached desired state until the control plane answers',
    });
  });

  test('an older cache does not start a HAProxy: an error naming the file, its age, the key and the way out', () => {
    const v = judgeStateCache({ ...base, confirmedAt: base.now - 3 * 24 * HOUR, haproxyRunning: false });
    expect(v.serve).toBe(false);
    expect(v.message).toBe(
      'not starting HAProxy from the state cache /var/lib/proxymgr/desired-state.json (version v7): it was last confirmed 3d ago; agent.cache_max_age_ms is 86400000 (24h), and its servers may have moved since. No HAProxy runs: waiting for the control plane (set agent.cache_max_age_ms: 0 to serve a cache of any age)',
    );
  });

  test('an older cache with a HAProxy of this agent still running: the takeover keeps it, with a warning', () => {
    const v = judgeStateCache({ ...base, confirmedAt: base.now - 3 * 24 * HOUR, haproxyRunning: true });
    expect(v).toMatchObject({ serve: true, stale: true });
    expect(v.message).toMatch(
      /was last confirmed 3d ago; agent\.cache_max_age_ms is 86400000 .* still runs: taking it over/,
    );
  });

  test('a cache stamped in the future has an unknown age: too old; max age 0 serves any age', () => {
    const future = judgeStateCache({ ...base, confirmedAt: base.now + 2 * HOUR, haproxyRunning: false });
    expect(future.serve).toBe(false);
    expect(future.message).toMatch(/in the future: its age is unknown/);
    expect(judgeStateCache({ ...base, confirmedAt: base.now + 30_000, haproxyRunning: false }).serve).toBe(true);
    expect(judgeStateCache({ ...base, maxAgeMs: 0, confirmedAt: 0, haproxyRunning: false }).serve).toBe(true);
  });

  test('the age is read from the file, and confirming stamps it', async () => {
    const dir = mkdtempSync(path.join(tmpdir(), 'proxymgr-cache-'));
    try {
      const file = path.join(dir, 'desired-state.json');
      expect(await readStateCache(file, silentLogger)).toBeUndefined();
      await confirmStateCache(file, Date.now()); // nothing to stamp yet: fine
      const s = state([service('web', 8080, [server('a', 80)])]);
      writeFileSync(file, stateJsonText(s));
      const old = new Date(Date.now() - 5 * 24 * HOUR);
      utimesSync(file, old, old);
      const read = await readStateCache(file, silentLogger);
      expect(read?.state.version).toBe(s.version);
      expect(Math.abs(read!.confirmedAt - old.getTime())).toBeLessThan(1000);
      const now = Date.now();
      await confirmStateCache(file, now);
      expect(Math.abs((await readStateCache(file, silentLogger))!.confirmedAt - now)).toBeLessThan(1000);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
