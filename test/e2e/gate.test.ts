import { badRevisionCase, goodRevisionCase, preflightBlockedCase } from '../../bench/lib-gate-cases';
import { GateFleet } from '../../bench/lib-gate';
import { CLI, startCli, stopAllCli } from '../../testkit/cli';
import { sleep } from '../../testkit/net';

jest.setTimeout(120_000);

/**
 * Preflight and traffic gates from the built CLI, against real components: ZooKeeper, two control-plane replicas,
 * five agents each with its own HAProxy on its own 127.0.0.x, real HTTP backends, and paced HTTP clients through
 * every agent the whole time (bench/lib-gate.ts; the cases are shared with `npm run bench -- gate`). Policy: waves
 * 1, 50 %, 100 %; gate sample_ms 1000, min_requests 20; auto_rollback. No timing figure is asserted here.
 */
describe('preflight and traffic gates: 2 control planes, 5 agents with real HAProxy and traffic', () => {
  let f: GateFleet;

  beforeAll(async () => {
    f = await GateFleet.start({
      cli: CLI,
      start: (args) => startCli(args),
      agents: 5,
      controlPlanes: 2,
      bakeMs: 5000,
      sampleMs: 1000,
      minRequests: 20,
    });
  });

  afterAll(async () => {
    const hung = await stopAllCli();
    await f?.close();
    expect(hung).toEqual([]);
  });

  test("a revision HAProxy accepts but that answers 503: the canary's traffic gate fails (5xx regressed), the rollout rolls back at wave 1; only the canary was given it and only its clients saw failures", async () => {
    const stable = (await f.readDoc()).stable;
    const bad = await badRevisionCase(f, 'bad');
    const r = bad.rollout;
    expect(r.state).toBe('rolled_back');
    expect(r.waves).toHaveLength(1);
    expect(r.reason).toMatch(/^wave 1: traffic gate: .*5xx 100%[ ,].*rolled back to /);
    expect(bad.canary).toEqual(['agent0']);
    expect(bad.pushedTo).toEqual(['agent0']);
    expect(bad.failuresOutsideCanary).toEqual([]);
    expect(bad.failuresCanary.length).toBeGreaterThan(0);
    expect(new Set(bad.failuresCanary.map((x) => x.what))).toEqual(new Set(['status 503']));
    // The verdict and the figure that decided it, in the document and as ctl shows it.
    const g = r.waves[0]!.gate!;
    expect(g.verdict).toBe('fail');
    const web5xx = g.figures.find((x) => x.key === 'web' && x.metric === 'http_5xx')!;
    expect(web5xx).toMatchObject({ regressed: true, canary: 1, threshold: 0.05 });
    expect(web5xx.requests).toBeGreaterThanOrEqual(20);
    expect(web5xx.stable).toBeLessThan(0.05);
    expect(g.figures.filter((x) => x.regressed).every((x) => x.metric === 'http_5xx')).toBe(true);
    const w = bad.status.rollout!.waves![0]!;
    expect(w.gate!.verdict).toBe('fail');
    expect(w.gate!.figures!.find((x) => x.key === 'web' && x.metric === 'http_5xx')).toMatchObject({
      regressed: true,
      canary: 1,
      hasStable: true,
    });
    expect(bad.statusText).toMatch(/ROLLED_BACK/);
    expect(bad.statusText).toMatch(/wave 1 gate: FAIL: traffic gate: /);
    expect(bad.statusText).toMatch(/^\s+web\s+http_5xx\s+100%\s+.*! regressed$/m);
    expect(bad.status.stableRevision).toBe(stable);
    expect(bad.status.agents!.every((a) => a.releasedRevision === stable && a.runningRevision === stable)).toBe(true);
    expect(bad.status.rollout!.preflight).toMatchObject({ passed: 5 }); // HAProxy accepts it: preflight cannot stop it
  });

  test("a new service on a port taken on one agent's IP: that agent's preflight fails, the rollout halts before wave 1, nobody is given it; ctl status and plan name the agent and its message", async () => {
    const stable = (await f.readDoc()).stable;
    const b = await preflightBlockedCase(f, 2);
    const r = b.rollout;
    expect(b.blockedAgent).toBe('agent2');
    expect(r.state).toBe('halted');
    expect(r.waves).toEqual([]);
    const msg = new RegExp(`service extra: cannot listen on 127\\.0\\.0\\.3:${b.port}: .*Address already in use`);
    expect(r.reason).toMatch(
      /^preflight failed on 1 agent\(s\), more than preflight.max_failures 0; no agent runs \w+; agent2: /,
    );
    expect(r.reason).toMatch(msg);
    expect(r.preflight).toMatchObject({ passed: 4, failedCount: 1, unanswered: 0 });
    expect(r.preflight!.failed).toEqual([{ nodeId: 'agent2', error: expect.stringMatching(msg) }]);
    expect(b.pushes).toBe(0);
    // ctl status --json and text, ctl plan --json.
    expect(b.status.rollout!.preflight).toMatchObject({ passed: 4, failed: 1 });
    expect(b.status.rollout!.preflight!.failures).toEqual([{ nodeId: 'agent2', error: expect.stringMatching(msg) }]);
    expect(b.status.agents!.find((a) => a.nodeId === 'agent2')).toMatchObject({
      preflight: 'failed',
      error: expect.stringMatching(msg),
    });
    expect(b.status.agents!.filter((a) => a.preflight === 'passed').map((a) => a.nodeId)).toEqual([
      'agent0',
      'agent1',
      'agent3',
      'agent4',
    ]);
    expect(b.status.agents!.every((a) => a.releasedRevision === stable && a.runningRevision === stable)).toBe(true);
    expect(b.statusText).toMatch(/preflight: 4 passed, 1 failed, 0 unanswered/);
    expect(b.statusText).toMatch(
      new RegExp(`^  agent2: service extra: cannot listen on 127\\.0\\.0\\.3:${b.port}`, 'm'),
    );
    expect(b.plan.toRevision).toBe(r.to);
    expect(b.plan.servicesAdded).toEqual(['extra']);
    const plan = new Map((b.plan.agents ?? []).map((a) => [a.nodeId, a]));
    expect(plan.get('agent2')).toMatchObject({ preflight: 'failed', error: expect.stringMatching(msg) });
    for (const id of ['agent0', 'agent1', 'agent3', 'agent4'])
      expect(plan.get(id)).toMatchObject({ preflight: 'passed', services: ['extra'] });
    // Cleared for the next test: aborted by ctl, the service removed, nothing pending; no request failed meanwhile.
    expect(b.abort).toEqual({ code: 0, state: 'aborted' });
    expect(b.failures).toEqual([]);
    expect((await f.readDoc()).current).toMatchObject({ id: r.id, state: 'aborted' });
  });

  test("a harmless change: every judged wave's gate passes (no false positive), the rollout completes, no request fails", async () => {
    const c = await goodRevisionCase(f, 'good');
    expect(c.rollout.state).toBe('completed');
    expect(c.rollout.waves.map((w) => w.agents.length)).toEqual([1, 2, 2]);
    // Waves 1 and 2 bake and are judged; the last wave has no bake, so no gate.
    expect(c.verdicts).toEqual(['pass', 'pass']);
    for (const w of c.rollout.waves.slice(0, 2)) {
      expect(w.gate!.reason).toMatch(
        /^traffic gate passed \(\d+ request\(s\) on the new revision, 2 key\(s\) judged\)$/,
      );
      expect(w.gate!.figures.some((x) => x.regressed)).toBe(false);
      expect(w.gate!.figures.find((x) => x.key === 'web' && x.metric === 'http_5xx')!.requests).toBeGreaterThanOrEqual(
        20,
      );
    }
    expect(c.rollout.waves[2]!.gate).toBeUndefined();
    expect(c.status.rollout!.waves!.map((w) => w.gate?.verdict ?? '')).toEqual(['pass', 'pass', '']);
    expect(c.statusText).toMatch(/wave 1 gate: PASS: traffic gate passed/);
    expect(c.statusText).toMatch(/wave 2 gate: PASS: traffic gate passed/);
    expect(c.failures).toEqual([]);
    expect(new Set(f.pushesOf(c.rollout.to).map((p) => p.node))).toEqual(new Set(f.agents.map((a) => a.id)));
  });

  test('leader failover during a gated bake: the surviving replica leads and judges on from the document (gateStart and baseline kept), the traffic gate rolls the rollout back', async () => {
    const before = await f.status();
    const leader = f.cps.findIndex((c) => c.id === before.leader);
    expect(leader).toBeGreaterThanOrEqual(0);
    const survivor = 1 - leader;
    // A long bake, so only the gate (not the bake's end) can end wave 1.
    expect((await f.ctl(survivor, 'policy', '--next', '--bake-ms', '30000')).code).toBe(0);
    // The canary (node-id order: agent0) gets no requests until the leader is gone: the verdict stays pending.
    f.load.pause(0);
    const stable = (await f.readDoc()).stable;
    const t0 = Date.now();
    await f.setWeb('bad2', ['http-request return status 503']);
    const d1 = await f.waitDoc(
      (d) =>
        !!d.current &&
        d.current.to !== stable &&
        d.current.state === 'running' &&
        d.current.waves[0]?.ackedAt !== undefined &&
        d.current.waves[0].gateStart !== undefined &&
        (d.current.baseline?.counts['*']?.[0] ?? 0) > 0,
      30_000,
      "wave 1 ACKed with its gate window started and the canary's baseline in the rollout document",
    );
    const r1 = d1.current!;
    expect(r1.waves).toHaveLength(1);
    expect(r1.waves[0]!.agents).toEqual(['agent0']);
    expect(r1.waves[0]!.gate?.verdict ?? 'pending').toBe('pending');
    await sleep(1500); // two more samples: still pending without the canary's traffic
    const d2 = await f.readDoc();
    expect(d2.current).toMatchObject({ id: r1.id, state: 'running' });
    expect(d2.current!.waves[0]!.gate?.verdict ?? 'pending').toBe('pending');
    const gateStart = d2.current!.waves[0]!.gateStart!;
    const baseline = d2.current!.baseline!;
    // The window's start: the replicas' sums when wave 1 ACKed (or when first judged), for this rollout.
    expect(Object.keys(gateStart).length).toBeGreaterThan(0);

    await f.cps[leader]!.proc!.kill();
    const killedAt = Date.now();
    f.load.resume(0);
    const d3 = await f.waitDoc(
      (d) => d.current?.id === r1.id && d.current.state !== 'running',
      40_000,
      'the surviving replica to end the rollout',
    );
    const r3 = d3.current!;
    expect(r3.state).toBe('rolled_back');
    expect(r3.reason).toMatch(/^wave 1: traffic gate: .*5xx 100%[ ,].*rolled back to /);
    expect(r3.finishedAt!).toBeGreaterThan(killedAt);
    expect(r3.waves[0]!.gate).toMatchObject({ verdict: 'fail' });
    expect(r3.waves[0]!.gate!.at).toBeGreaterThan(killedAt);
    expect(r3.waves[0]!.gate!.figures.find((x) => x.key === 'web' && x.metric === 'http_5xx')).toMatchObject({
      regressed: true,
      canary: 1,
    });
    // What the dead leader wrote is what the survivor judged on.
    expect(r3.waves[0]!.gateStart).toEqual(gateStart);
    expect(r3.baseline).toBeDefined();
    expect(r3.baseline!.counts['*']![0]!).toBeGreaterThanOrEqual(baseline.counts['*']![0]!);
    expect(r3.baseline!.gauges['*']).toBeDefined();
    const s = await f.status(survivor);
    expect(s.leader).toBe(f.cps[survivor]!.id);
    expect(s.rollout).toMatchObject({ id: r1.id, state: 'rolled_back' });
    expect(f.cps[survivor]!.proc!.logs()).toMatch(/this replica leads rollouts/);
    // Every agent ends on the survivor, on the stable revision; only the canary was ever given bad2.
    await f.until(
      async () => {
        const x = await f.status(survivor);
        return (
          x.agents!.length === 5 &&
          x.agents!.every((a) => a.connected && a.replica === f.cps[survivor]!.id && a.runningRevision === stable)
        );
      },
      20_000,
      'every agent on the survivor, running the stable revision',
    );
    await f.until(
      async () => (await Promise.all(f.agents.map((a) => f.hit(a.ip)))).every((h) => h.status === 200),
      20_000,
      'every agent answering 200',
    );
    expect([...new Set(f.pushesOf(r1.to).map((p) => p.node))]).toEqual(['agent0']);
    const others = new Set([1, 2, 3, 4]);
    expect(f.load.failures(t0, Date.now(), others)).toEqual([]);
    const fig = r3.waves[0]!.gate!.figures.find((x) => x.key === '*' && x.metric === 'http_5xx')!;
    console.log(
      `failover: ${f.cps[leader]!.id} (leader) killed ${killedAt - r1.waves[0]!.ackedAt!} ms after wave 1 ACKed; ${f.cps[survivor]!.id} rolled back ${r3.finishedAt! - killedAt} ms later: ${r3.reason}\n` +
        `gateStart replicas ${Object.keys(gateStart).join(',')}; baseline requests ${baseline.counts['*']![0]} (after: ${r3.baseline!.counts['*']![0]}); 5xx canary ${fig.canary} stable ${fig.stable} before ${fig.before} over ${fig.requests} request(s)`,
    );
  });
});
