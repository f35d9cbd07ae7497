import { StateReport } from '../../common/gen/proxymgr/v1/stream';

/** At most this many questions may wait for answers at once (each is an operator's `ctl agent`). */
const MAX_PENDING = 100;

/**
 * Asks connected agents what their HAProxy has (`proxymgr ctl agent NODE`): the agent stream registers each agent's
 * way to send a StateRequest, and hands the StateReports it receives back here. An answer counts only from the
 * agent it was asked of.
 */
export class AgentStateRequests {
  private readonly streams = new Map<string, (id: string) => void>();
  private readonly pending = new Map<string, { nodeId: string; resolve: (r: StateReport | string) => void; timer: NodeJS.Timeout }>();
  private counter = 0;

  /** The stream of `nodeId` can take requests through `send`; returns the function that takes it back. */
  register(nodeId: string, send: (id: string) => void): () => void {
    this.streams.set(nodeId, send);
    return () => {
      if (this.streams.get(nodeId) !== send) return;
      this.streams.delete(nodeId);
      // Questions that stream will never answer: said now, not after their timeout.
      for (const [id, p] of this.pending) {
        if (p.nodeId !== nodeId) continue;
        this.pending.delete(id);
        clearTimeout(p.timer);
        p.resolve(`agent ${nodeId} disconnected before it answered`);
      }
    };
  }

  /** A StateReport from the stream of `nodeId`. */
  answer(nodeId: string, report: StateReport): void {
    const p = this.pending.get(report.id);
    if (!p || p.nodeId !== nodeId) return;
    this.pending.delete(report.id);
    clearTimeout(p.timer);
    p.resolve(report);
  }

  /** What the agent's HAProxy has, or why it cannot be known (a sentence). */
  ask(nodeId: string, timeoutMs: number): Promise<StateReport | string> {
    const send = this.streams.get(nodeId);
    if (!send) return Promise.resolve(`agent ${nodeId} has no stream to this control plane that can answer (disconnected, or an agent from before stream protocol 2)`);
    if (this.pending.size >= MAX_PENDING) return Promise.resolve(`${MAX_PENDING} questions to agents are already waiting; try again`);
    const id = `q${++this.counter}`;
    return new Promise((resolve) => {
      const timer = setTimeout(() => {
        this.pending.delete(id);
        resolve(`agent ${nodeId} did not answer within ${timeoutMs} ms`);
      }, timeoutMs);
      timer.unref();
      this.pending.set(id, { nodeId, resolve, timer });
      send(id);
    });
  }
}
