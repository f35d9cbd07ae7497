import * as path from 'node:path';
import { errorMessage } from '../../common/platform/errors';
import type { FileWriter } from '../ports';
import type { ApplyContext } from './context';

/**
 * The ids of the servers this agent drains, in the state dir (agent-drains.json): an agent that takes HAProxy over
 * reads them to tell its predecessor's drains from an operator's (OverrideTracker.adopted). Written at once and only
 * when they changed: a few bytes, unlike haproxy.cfg.
 */
export class DrainJournal {
  readonly file: string;
  private written = '';

  constructor(
    private readonly ctx: ApplyContext,
    private readonly writeFile: FileWriter,
  ) {
    this.file = path.join(ctx.config.agent.stateDir, 'agent-drains.json');
  }

  /** Writes the drains (and `also`, about to be drained) when they changed. Never throws: a failed write is logged. */
  async save(also: readonly string[] = []): Promise<void> {
    const ids = new Set([...this.ctx.drains.ids(), ...also]);
    const text = `${JSON.stringify([...ids].sort())}\n`;
    if (text === this.written) return;
    try {
      await this.writeFile(this.file, text);
      this.written = text;
    } catch (err) {
      this.ctx.counters.errors++;
      this.ctx.log.warn(
        { file: this.file, err: errorMessage(err) },
        'cannot write the servers this agent drains; an agent that takes over after a kill -9 may read them as operator overrides',
      );
    }
  }
}

/** The journal DrainJournal writes: server ids ("backend/server"); anything else in it is ignored. */
export function parseDrainIds(text: string): Set<string> {
  try {
    const v: unknown = JSON.parse(text);
    return new Set(Array.isArray(v) ? v.filter((x): x is string => typeof x === 'string' && x.length <= 600) : []);
  } catch {
    return new Set();
  }
}
