import { existsSync, promises as fsp } from 'node:fs';
import * as path from 'node:path';
import { CoalescedFile } from '../../common/platform/coalesced-file';
import { errorMessage, ProxyMgrError, StateProblem } from '../../common/platform/errors';
import type { DesiredState } from '../../common/protocol/types';
import { FIRST_LISTEN_FD, listenerAddress, listenOrder, renderHaproxyConfig } from '../haproxy/render';
import { saveServerState } from '../haproxy/server-state-file';
import type { FileWriter, HaproxyIdentity } from '../ports';
import type { ApplyContext } from './context';

/**
 * The files of the state dir that HAProxy runs from: haproxy.cfg (written at once before every start or reload,
 * coalesced after runtime changes), its `haproxy -c` candidate and the server-state file; and the committed config —
 * the one HAProxy runs, paired with the fds the supervisor holds, which a crash restart starts from.
 */
export class ConfigFiles {
  readonly serverStateFile: string;
  private readonly file: CoalescedFile;
  /**
   * The config HAProxy runs, paired with the fds the supervisor holds: set by a successful launch, refreshed by
   * runtime changes (same listeners), taken from the file by a takeover. Undefined: the file is all there is.
   */
  private committed: (() => string) | undefined;
  /** The `# listener` lines of the committed config (its shape). */
  private committedListeners: string | undefined;
  /** An adopted HAProxy runs a config file that could not be paired with sockets: no crash restart until a launch. */
  private unpaired = false;

  constructor(
    private readonly ctx: ApplyContext,
    private readonly writeFile: FileWriter,
    private readonly identity: HaproxyIdentity,
    /** Awaited before each write of haproxy.cfg (the agent process writes its state cache first). */
    beforeConfigWrite: (() => Promise<void>) | undefined,
  ) {
    const { haproxy, agent } = ctx.config;
    this.serverStateFile = path.join(agent.stateDir, 'server-state');
    this.file = new CoalescedFile(
      haproxy.configPath,
      async (file, content) => {
        await beforeConfigWrite?.().catch(() => undefined); // (its own failure is reported by its owner)
        return writeFile(file, content);
      },
      agent.writeDelayMs,
      ctx.clock,
      (file, err) => {
        ctx.counters.errors++;
        ctx.log.error(
          { file, err: errorMessage(err) },
          'cannot write haproxy.cfg after a runtime change; HAProxy runs the change, the write is retried',
        );
      },
    );
  }

  /** haproxy.cfg for `state`: with the servers still draining, and their drains for the next agent (Drains.trailer). */
  configText(state: DesiredState): string {
    return this.render(this.ctx.drains.withDraining(state)) + this.ctx.drains.trailer();
  }

  render(state: DesiredState): string {
    const { haproxy, agent } = this.ctx.config;
    return renderHaproxyConfig(state, {
      socketPath: haproxy.socketPath,
      ...(haproxy.socketLevel ? { socketLevel: haproxy.socketLevel } : {}),
      serverStateFile: this.serverStateFile,
      hardStopAfterMs: agent.hardStopAfterMs,
      ...this.identity,
    });
  }

  /**
   * haproxy.cfg for a state that runs through the runtime API: written within `agent.write_delay_ms`, once for any
   * number of changes in between (rendering 2,000 services and fsyncing the file cost more than the change itself).
   * A write that failed is reported with every apply until one succeeds (it is retried meanwhile).
   */
  schedule(state: DesiredState, problems?: StateProblem[]): void {
    this.file.schedule(this.commitRuntime(state));
    if (problems && this.file.failure !== undefined) {
      problems.push({
        where: 'haproxy.cfg',
        message: `cannot write ${this.file.file}: ${this.file.failure}; HAProxy runs the change, a crash restart before the write succeeds would start from the previous file (drift repair then catches up)`,
      });
    }
  }

  /** Writes what is pending of haproxy.cfg now (tests, stop, hand-over); resolves once written or failed. */
  flush(): Promise<void> {
    return this.file.flush();
  }

  /** Drops what is pending (HAProxy stops: the next start writes the config first). */
  cancel(): void {
    this.file.cancel();
  }

  /**
   * Starts or reloads HAProxy on `text` and `fds`, which become the committed pair only once it runs. A launch that
   * fails puts the committed config back at once: HAProxy still runs it on the committed fds, and a crash restart
   * (or the next agent's takeover) must read the config those fds belong to — a new file beside old fds fails on
   * `fd@k` or, with as many listeners in another order, cross-wires ports to the wrong sections.
   */
  async launch(text: string, fds: readonly number[]): Promise<number> {
    let pid: number;
    try {
      pid = await this.ctx.supervisor.startOrReload(fds, () => this.writeNow(text));
    } catch (err) {
      await this.restoreCommitted().catch((e: unknown) =>
        this.ctx.log.error({ err: errorMessage(e) }, 'cannot put the running config back after a failed launch'),
      );
      throw err;
    }
    this.committed = () => text;
    this.committedListeners = listenersOf(text);
    this.unpaired = false;
    return pid;
  }

  /**
   * What an adopted HAProxy runs (see takeOver): `committed` when the file it runs is known to pair with the fds the
   * supervisor got, undefined when not; `unpaired` when it has listeners nothing is known to pair with.
   */
  adopted(committed: (() => string) | undefined, listeners: string | undefined, unpaired: boolean): void {
    this.committed = committed;
    this.committedListeners = committed ? listeners : undefined;
    this.unpaired = unpaired;
  }

  /** Writes the config HAProxy runs on the supervisor's fds (before a crash restart, after a failed launch). */
  async restoreCommitted(): Promise<void> {
    if (this.committed) return this.writeNow(this.committed());
    // Nothing launched yet, or an adopted HAProxy whose file could not be paired with sockets: a restart would start
    // a file whose `fd@k` are not the sockets it gets. It waits for the next apply, which launches a known pair.
    if (this.unpaired)
      throw new ProxyMgrError('HAPROXY_START_FAILED', 'no committed config and fds to restart HAProxy with');
    await this.file.flush();
  }

  /** Whether a committed config pairs with the supervisor's fds (a crash restart can run it). */
  get hasCommitted(): boolean {
    return this.committed !== undefined;
  }

  /** The file writer; a failure (ENOSPC, EROFS, …) is counted and becomes IO_FAILED naming the file. */
  async write(file: string, content: string): Promise<void> {
    await this.toIoError(file, this.writeFile(file, content));
  }

  /** Writes `text` to `<haproxy.cfg>.candidate` for `check`, and removes it once `check` has run. */
  async withCandidate(text: string, check: (file: string) => Promise<void>): Promise<void> {
    const candidate = `${this.ctx.config.haproxy.configPath}.candidate`;
    await this.write(candidate, text);
    try {
      await check(candidate);
    } finally {
      await fsp.rm(candidate, { force: true }).catch(() => undefined);
    }
  }

  /**
   * Health and admin states survive a reload through the server-state file; with none running, an empty one
   * (format version line only) spares HAProxy's "can't open" warning at first start.
   */
  async saveServerState(): Promise<void> {
    if (!this.ctx.supervisor.running) {
      if (!existsSync(this.serverStateFile)) await this.write(this.serverStateFile, '1\n');
      return;
    }
    const r = await saveServerState(
      this.serverStateFile,
      () => this.ctx.runtime.command('show servers state'),
      this.writeFile,
    );
    if (r.saved) return;
    // The new HAProxy's first states come from the config (or, not removed, an older save): not an operator's.
    this.ctx.overrides.restarted();
    this.ctx.log.warn(
      { err: r.error, file: this.serverStateFile, removed: r.removed },
      r.removed
        ? 'cannot save server state before reload: the older file is removed, HAProxy starts from the config'
        : 'cannot save server state before reload, nor remove the older file: HAProxy loads it; no override is read from it',
    );
  }

  /**
   * The config text of `state` for a runtime change: it becomes the committed config (the servers of now) only when
   * its listeners are the ones the committed fds were launched with; otherwise the committed config stays as it is
   * (the file may then hold a shape that never ran: a crash restart writes the committed one back first).
   */
  private commitRuntime(state: DesiredState): () => string {
    const text = () => this.configText(state);
    if (listenersOfState(state) === this.committedListeners) this.committed = text;
    return text;
  }

  private async writeNow(content: string): Promise<void> {
    await this.toIoError(this.file.file, this.file.writeNow(content));
  }

  private async toIoError(file: string, writing: Promise<unknown>): Promise<void> {
    try {
      await writing;
    } catch (err) {
      this.ctx.counters.errors++;
      this.ctx.log.error({ file, err: errorMessage(err) }, 'cannot write a file of the state dir');
      throw new ProxyMgrError('IO_FAILED', `cannot write ${file}: ${errorMessage(err)}`, { cause: err });
    }
  }
}

/** A config's listeners (its `# listener fd@k address:port` lines, with the section names after them), as one key. */
export function listenersOf(config: string): string {
  return [...config.matchAll(/^# listener fd@\d+ \S+\nlisten \S+$/gm)].map((m) => m[0]).join('\n');
}

/** listenersOf the config `state` renders to, without rendering it. */
export function listenersOfState(state: DesiredState): string {
  return listenOrder(state)
    .map((s, i) => `# listener fd@${FIRST_LISTEN_FD + i} ${listenerAddress(s)}\nlisten ${s.name}`)
    .join('\n');
}
