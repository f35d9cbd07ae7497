import { errorMessage } from '../../common/platform/errors';
import type { DesiredState } from '../../common/protocol/types';
import { inMaint, RuntimeServer, RuntimeState } from '../haproxy/servers-state';
import type { RuntimeAction } from '../runtime-plan';
import type { ApplyContext } from './context';

/**
 * `show servers state` as of the last change this agent made (updates plan against it instead of reading and parsing
 * every backend's servers on every host event; drift checks read it afresh), and the operator overrides seen in each
 * fresh read.
 */
export class LiveState {
  private cache: Map<string, ReadonlyMap<string, RuntimeServer>> | undefined;

  constructor(private readonly ctx: ApplyContext) {}

  /** The servers HAProxy had after the last change, or undefined once unknown (a failure, a restart). */
  get cached(): RuntimeState | undefined {
    return this.cache;
  }

  /** Forgets what HAProxy runs: the next apply reads it in full. */
  forget(): void {
    this.cache = undefined;
  }

  /** Reads every backend's servers into the cache. */
  async read(): Promise<RuntimeState> {
    // The previous read stays readable while this one is in flight (serverCounts feeds /metrics and the traffic
    // gates: cleared here, a scrape during every drift check read 0 servers); a failed read drops it.
    let actual: RuntimeState;
    try {
      actual = await this.ctx.runtime.serversState();
    } catch (err) {
      this.cache = undefined;
      throw err;
    }
    this.cache = new Map(actual);
    return actual;
  }

  /** Re-reads the backends the actions touched into the cache (or drops the cache when that fails). */
  async refresh(actions: readonly RuntimeAction[]): Promise<void> {
    const cache = this.cache;
    if (!cache) return;
    try {
      for (const backend of new Set(actions.map((a) => a.backend))) {
        cache.set(backend, (await this.ctx.runtime.serversState(backend)).get(backend) ?? new Map());
      }
    } catch (err) {
      this.cache = undefined;
      this.ctx.log.warn(
        { err: errorMessage(err) },
        'cannot re-read show servers state; the next apply reads it in full',
      );
    }
  }

  /** A server deleted at runtime leaves the cache. */
  deleted(backend: string, server: string): void {
    const live = this.cache?.get(backend);
    if (!live) return;
    const rest = new Map(live);
    rest.delete(server);
    this.cache!.set(backend, rest);
  }

  /** Operator overrides from a fresh `show servers state`; see OverrideTracker. */
  observe(actual: RuntimeState, desired: DesiredState): void {
    for (const e of this.ctx.overrides.observe(actual, desired)) {
      this.ctx.log.info({ server: e.server }, `server ${e.server} ${e.what}`);
      this.ctx.actions.record('drift', 'override', `${e.server} ${e.what}`, 'operator override');
    }
  }

  /**
   * Per service: servers HAProxy has (maint excluded) and how many of them are DOWN, from the last read; servers in
   * `leaving` (draining on their way out) are not counted.
   */
  serverCounts(leaving: ReadonlySet<string>): Map<string, { total: number; down: number }> {
    const out = new Map<string, { total: number; down: number }>();
    for (const [backend, servers] of this.cache ?? []) {
      let total = 0;
      let down = 0;
      for (const s of servers.values()) {
        if (inMaint(s) || leaving.has(`${backend}/${s.name}`)) continue;
        total++;
        if (s.operState === 0) down++;
      }
      out.set(backend, { total, down });
    }
    return out;
  }
}
