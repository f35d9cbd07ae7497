import { quantile, ReloadLedger, stopExcessGenerations } from '../../agent/haproxy/generations';

describe('ReloadLedger: reload count, durations and old generations', () => {
  let now = 0;
  const ledger = () => new ReloadLedger(() => now, 2);

  test('a reload lasts from its launch until the generation it replaced exits', () => {
    now = 1000;
    const l = ledger();
    l.launched(1000, undefined, []); // the first start: no reload
    expect(l.snapshot().reloads).toBe(0);
    now = 2000;
    l.launched(1900, 10, []);
    expect(l.snapshot()).toMatchObject({ reloads: 1, completed: 0, oldGenerations: [{ pid: 10, ageMs: 0 }] });
    const seen: number[] = [];
    l.onCompleted((ms) => seen.push(ms));
    now = 7000;
    l.exited(10);
    expect(seen).toEqual([5100]);
    expect(l.snapshot()).toMatchObject({ completed: 1, lastDurationMs: 5100, oldGenerations: [] });
  });

  test('the oldest beyond the bound are named for a stop; a stopped one no longer counts against it', () => {
    now = 0;
    const l = ledger();
    l.launched(0, 1, []);
    now = 10;
    l.launched(10, 2, [1]);
    expect(l.excess()).toEqual([]);
    now = 20;
    l.launched(20, 3, [1, 2]);
    expect(l.excess()).toEqual([1]);
    const log = { warn: jest.fn() };
    stopExcessGenerations(
      l,
      log,
      () => 7,
      () => true,
    );
    expect(l.excess()).toEqual([]);
    const s = l.snapshot();
    expect(s.oldGenerations.map((g) => [g.pid, g.reloadsSurvived, g.stopped])).toEqual([
      [1, 3, true],
      [2, 2, false],
      [3, 1, false],
    ]);
    expect(s).toMatchObject({ generationsStopped: 1, connectionsCut: 7 });
    expect(log.warn.mock.calls[0]![1]).toMatch(/stopped old haproxy 1 \(SIGTERM; 7 client connection\(s\) cut\)/);
    // A process the supervisor does not know is forgotten, not counted as stopped.
    now = 30;
    l.launched(30, 4, [2, 3]);
    stopExcessGenerations(l, log, undefined, () => false);
    expect(l.snapshot()).toMatchObject({ generationsStopped: 1 });
    expect(l.snapshot().oldGenerations.map((g) => g.pid)).toEqual([1, 3, 4]);
  });

  test('a crash restart is no reload; the bound is checked at construction', () => {
    const l = ledger();
    l.launched(0, undefined, [5]);
    expect(l.snapshot()).toMatchObject({ reloads: 0, oldGenerations: [{ pid: 5 }] });
    l.exited(5);
    expect(l.snapshot()).toMatchObject({ completed: 0, oldGenerations: [] });
    expect(() => new ReloadLedger(() => 0, 0)).toThrow(/expected an integer ≥ 1/);
  });

  test('quantile', () => {
    expect(quantile([], 0.5)).toBeUndefined();
    expect(quantile([5, 1, 3], 0.5)).toBe(3);
    expect(quantile([5, 1, 3, 4], 1)).toBe(5);
  });
});
