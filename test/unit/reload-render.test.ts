import { reloadsText } from '../../ctl/render-agents';
import { checkedReloadStats } from '../../controlplane/grpc/agent-input';
import { ReloadStats } from '../../common/gen/proxymgr/v1/reloads';

const stats = (n: number): ReloadStats => ({
  reloads: 9,
  completed: 6,
  lastDurationMs: 1500,
  p50DurationMs: 800,
  maxDurationMs: 42_000,
  recent: 6,
  oldGenerations: Array.from({ length: n }, (_, i) => ({
    pid: 100 + i,
    ageMs: 12_000,
    reloadsSurvived: n - i,
    stopped: i === 0,
  })),
  maxOldGenerations: 2,
  generationsStopped: 1,
  connectionsCut: 3,
});

describe('reload figures in ctl agent NODE and at the control plane', () => {
  test('ctl shows count, durations, the bound and each old generation', () => {
    const text = reloadsText(stats(3));
    expect(text).toContain('Reloads: 9 (6 completed; last 1.5 s, p50 800 ms, max 42 s over the last 6)');
    expect(text).toContain(
      'Old generations: 3 alive (at most 2); 1 stopped to keep the bound, 3 client connection(s) cut',
    );
    expect(text).toMatch(/100\s+12 s\s+3\s+stopped \(SIGTERM\), exiting/);
    expect(text).toMatch(/101\s+12 s\s+2\s+finishing connections/);
  });

  test('an agent that sends thousands of old generations is clipped to 64', () => {
    const checked = checkedReloadStats(stats(5000));
    expect(checked.oldGenerations).toHaveLength(64);
    expect(checked.reloads).toBe(9);
  });
});
