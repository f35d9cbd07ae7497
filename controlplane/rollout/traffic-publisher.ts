import { Clock, Timer } from '../../common/platform/clock';
import { ServiceCounters } from '../../common/gen/proxymgr/v1/counters';
import { isActive, RolloutDoc } from './engine';
import { ReplicaTraffic } from './gate';
import { gateWindow } from './gate-input';
import { MAX_GATED_SERVICES, TrafficLedger } from './traffic';

/**
 * One replica's part in the traffic gates: sums what its agents count (TrafficLedger) for the current rollout, and
 * publishes the sums (through `publish`: a ZooKeeper node) every gate.sample_ms while a gated rollout is active,
 * only when they changed. The leader reads every replica's sums (gate.ts).
 */
export class TrafficPublisher {
  private readonly ledger: TrafficLedger;
  private timer: Timer | undefined;
  private every: number | undefined;
  private last = '';
  private closed = false;

  constructor(
    baselineMs: number,
    private readonly clock: Clock,
    private readonly now: () => number,
    private readonly publish: (traffic: ReplicaTraffic) => void,
  ) {
    this.ledger = new TrafficLedger(baselineMs);
  }

  /** A counter report of one agent (see TrafficLedger.sample). */
  sample(
    nodeId: string,
    revision: string,
    counters: readonly ServiceCounters[],
    at: number,
    countable: boolean,
    voice?: string,
  ): void {
    this.ledger.sample(nodeId, revision, counters, at, countable, voice);
  }

  forget(nodeId: string): void {
    this.ledger.forget(nodeId);
  }

  /**
   * Follows the current rollout `r` (undefined, or not gated: nothing is summed or published); `changed` are the
   * services it changes (undefined while its revisions are not loaded), of which up to MAX_GATED_SERVICES are summed
   * one by one.
   */
  follow(r: RolloutDoc | undefined, changed: ReadonlySet<string> | undefined): void {
    if (this.closed) return;
    if (!isActive(r) || !r.policy.gate?.enabled) {
      this.ledger.follow(undefined);
      this.stopTimer();
      return;
    }
    const gate = r.policy.gate;
    const keys = new Set(changed ? [...changed].sort().slice(0, MAX_GATED_SERVICES) : []);
    const window = gateWindow(r.waves[r.waves.length - 1]);
    this.ledger.follow({
      id: r.id,
      from: r.from,
      to: r.to,
      keys,
      baselineMs: gate.baselineMs,
      minRequests: gate.minRequests,
      ...(window !== undefined ? { window } : {}),
    });
    if (this.timer === undefined || this.every !== gate.sampleMs) {
      this.stopTimer();
      this.every = gate.sampleMs;
      this.arm(gate.sampleMs);
    }
  }

  close(): void {
    this.closed = true;
    this.stopTimer();
  }

  private stopTimer(): void {
    this.clock.clearTimeout(this.timer);
    this.timer = undefined;
    this.every = undefined;
  }

  private arm(every: number): void {
    this.timer = this.clock.setTimeout(() => {
      if (this.closed || this.timer === undefined) return;
      const report = this.ledger.report(this.now());
      if (report) {
        const text = JSON.stringify({ ...report, at: 0 });
        if (text !== this.last) {
          this.last = text;
          this.publish(report);
        }
      }
      this.arm(every);
    }, every);
  }
}
