import { parseShowStat, ServiceStatsTracker } from '../../agent/haproxy/stats';

const HEADER =
  '# pxname,svname,qcur,qmax,scur,smax,slim,stot,bin,bout,dreq,dresp,ereq,econ,eresp,wretr,wredis,status,weight,act,bck,chkfail,chkdown,lastchg,downtime,qlimit,pid,iid,sid,throttle,lbtot,tracked,type,rate,rate_lim,rate_max,check_status,check_code,check_duration,hrsp_1xx,hrsp_2xx,hrsp_3xx,hrsp_4xx,hrsp_5xx,hrsp_other,hanafail,req_rate,req_rate_max,req_tot';
/** One proxy's rows in 2.6's column order (only the columns the parser reads are filled). */
function rows(
  px: string,
  f: { req: number; x5: number; stot: number },
  b: { econ: number; eresp: number; wretr: number; wredis: number; qcur: number },
  servers: string[],
): string {
  const row = (sv: string, v: Record<number, string | number>) =>
    Array.from({ length: 49 }, (_, i) => (i === 0 ? px : i === 1 ? sv : (v[i] ?? ''))).join(',');
  return [
    row('FRONTEND', { 7: f.stot, 43: f.x5, 48: f.req, 17: 'OPEN' }),
    ...servers.map((status, i) => row(`s${i}`, { 17: status })),
    row('BACKEND', { 2: b.qcur, 13: b.econ, 14: b.eresp, 15: b.wretr, 16: b.wredis, 17: 'UP' }),
  ].join('\n');
}

describe('show stat per service', () => {
  test('counters from the frontend and backend rows, DOWN servers counted (maint is not DOWN)', () => {
    const s = parseShowStat(
      [
        HEADER,
        rows('web', { req: 100, x5: 7, stot: 90 }, { econ: 2, eresp: 3, wretr: 4, wredis: 1, qcur: 5 }, [
          'UP',
          'DOWN',
          'MAINT',
          'DOWN 1/2',
        ]),
        '',
      ].join('\n'),
    );
    expect(s.get('web')).toEqual({
      counters: { requests: 100, responses5xx: 7, sessions: 90, connectionErrors: 2, responseErrors: 3, retries: 5 },
      gauges: { serversDown: 2, serversTotal: 4, queue: 5, rtimeMs: 0 },
    });
  });

  test("the backend's average response time (rtime over its last 1,024 requests), where HAProxy has the column", () => {
    const header = `${HEADER},rtime`;
    const backend = rows('web', { req: 10, x5: 0, stot: 10 }, { econ: 0, eresp: 0, wretr: 0, wredis: 0, qcur: 0 }, [
      'UP',
    ])
      .split('\n')
      .map((line) => `${line},${line.split(',')[1] === 'BACKEND' ? 230 : 7}`)
      .join('\n');
    expect(parseShowStat([header, backend, ''].join('\n')).get('web')!.gauges.rtimeMs).toBe(230);
  });

  test('the tracker carries counts across a new HAProxy process (and a counter going backwards); gauges are current', async () => {
    let text = '';
    const tracker = new ServiceStatsTracker({ command: async () => text });
    const at = (req: number, x5: number, qcur = 0) =>
      [HEADER, rows('web', { req, x5, stot: req }, { econ: 0, eresp: 0, wretr: 0, wredis: 0, qcur }, ['UP']), ''].join(
        '\n',
      );
    text = at(10, 1);
    await tracker.sample(100);
    text = at(15, 2, 3);
    await tracker.sample(100);
    expect(tracker.current().get('web')!.counters.requests).toBe(15);
    text = at(4, 0); // reloaded: pid 101 starts at zero
    await tracker.sample(101);
    expect(tracker.current().get('web')!.counters).toMatchObject({ requests: 19, responses5xx: 2 });
    expect(tracker.current().get('web')!.gauges.queue).toBe(0);
    text = at(1, 0); // backwards under the same pid (a restart the pid did not show)
    await tracker.sample(101);
    expect(tracker.current().get('web')!.counters.requests).toBe(20);
    await tracker.sample(undefined); // no HAProxy: nothing changes
    expect(tracker.current().get('web')!.counters.requests).toBe(20);
  });

  test("a HAProxy taken over from a previous agent counts from zero: its earlier traffic was that agent's to report", async () => {
    let text = '';
    const at = (req: number, x5: number) =>
      [
        HEADER,
        rows('web', { req, x5, stot: req }, { econ: 0, eresp: 0, wretr: 0, wredis: 0, qcur: 0 }, ['UP']),
        '',
      ].join('\n');
    const adopted = new ServiceStatsTracker({ command: async () => text }, (pid) => pid === 7);
    text = at(100_000, 900); // hours of traffic (and 5xx) before this agent
    await adopted.sample(7);
    expect(adopted.current().get('web')!.counters).toMatchObject({ requests: 0, responses5xx: 0 });
    text = at(100_010, 901);
    await adopted.sample(7);
    expect(adopted.current().get('web')!.counters).toMatchObject({ requests: 10, responses5xx: 1 });
    text = at(5, 0); // the next reload: pid 8 starts at zero, the count goes on
    await adopted.sample(8);
    expect(adopted.current().get('web')!.counters).toMatchObject({ requests: 15, responses5xx: 1 });
    // A HAProxy this agent started counts everything it counted.
    const own = new ServiceStatsTracker({ command: async () => text }, () => false);
    text = at(3, 1);
    await own.sample(9);
    expect(own.current().get('web')!.counters).toMatchObject({ requests: 3, responses5xx: 1 });
  });

  test('a service the new process does not run keeps its count for when it returns; a reply that is not show stat is refused', async () => {
    let text = '';
    const tracker = new ServiceStatsTracker({ command: async () => text });
    const web = (req: number) =>
      rows('web', { req, x5: 0, stot: req }, { econ: 0, eresp: 0, wretr: 0, wredis: 0, qcur: 0 }, ['UP']);
    const api = (req: number) =>
      rows('api', { req, x5: 0, stot: req }, { econ: 0, eresp: 0, wretr: 0, wredis: 0, qcur: 0 }, ['UP']);
    text = [HEADER, web(5), api(30), ''].join('\n');
    await tracker.sample(1);
    text = [HEADER, web(1), ''].join('\n'); // reloaded without api
    await tracker.sample(2);
    expect(tracker.current().has('api')).toBe(false);
    text = [HEADER, web(2), api(3), ''].join('\n'); // reloaded with api again, counting from zero
    await tracker.sample(3);
    expect(tracker.current().get('api')!.counters.requests).toBe(33); // never below the 30 it had
    expect(tracker.current().get('web')!.counters.requests).toBe(8);
    text = 'Unknown command.\n';
    await expect(tracker.sample(3)).rejects.toThrow(/show stat: no "pxname" column/);
    expect(tracker.current().get('web')!.counters.requests).toBe(8);
  });
});

describe('what the tracker holds stays bounded', () => {
  test('services HAProxy no longer runs are forgotten after the forget age: a churn of names does not grow it', async () => {
    let now = 1_000_000;
    let text = '';
    const tracker = new ServiceStatsTracker({ command: async () => text }, () => false, {
      now: () => now,
      forgetAfterMs: 60_000,
    });
    const svc = (name: string, req: number) =>
      rows(name, { req, x5: 0, stot: req }, { econ: 0, eresp: 0, wretr: 0, wredis: 0, qcur: 0 }, ['UP']);
    let most = 0;
    // 2,000 reloads 10 s apart, each running `web` and one service never seen before.
    for (let i = 0; i < 2000; i++) {
      text = [HEADER, svc('web', i), svc(`churn${i}`, 5), ''].join('\n');
      await tracker.sample(100 + i);
      now += 10_000;
      most = Math.max(most, tracker.tracked);
    }
    expect(most).toBeLessThanOrEqual(9); // web + the churn of the last 60 s (and the sample in progress)
    // The service that stayed keeps its count across every reload.
    expect(tracker.current().get('web')!.counters.requests).toBe((1999 * 2000) / 2);
  });

  test('a service back within the forget age keeps its count; one back after it counts from zero', async () => {
    let now = 0;
    let text = '';
    const tracker = new ServiceStatsTracker({ command: async () => text }, () => false, {
      now: () => now,
      forgetAfterMs: 60_000,
    });
    const svc = (name: string, req: number) =>
      rows(name, { req, x5: 0, stot: req }, { econ: 0, eresp: 0, wretr: 0, wredis: 0, qcur: 0 }, ['UP']);
    text = [HEADER, svc('web', 1), svc('api', 30), ''].join('\n');
    await tracker.sample(1);
    text = [HEADER, svc('web', 1), ''].join('\n');
    now = 30_000;
    await tracker.sample(2);
    text = [HEADER, svc('web', 1), svc('api', 2), ''].join('\n');
    now = 50_000;
    await tracker.sample(3);
    expect(tracker.current().get('api')!.counters.requests).toBe(32);
    text = [HEADER, svc('web', 1), ''].join('\n');
    await tracker.sample(4);
    now = 200_000;
    await tracker.sample(4);
    expect(tracker.tracked).toBe(1);
    text = [HEADER, svc('web', 1), svc('api', 4), ''].join('\n');
    await tracker.sample(5);
    expect(tracker.current().get('api')!.counters.requests).toBe(4);
  });
});
