import { PreflightReport, StateReport } from '../../common/gen/proxymgr/v1/stream';
import { DesiredState } from '../../common/protocol/types';

/**
 * Questions the control plane asks connected agents over their streams, each answered once by a report naming the
 * question's id: what their HAProxy has (`proxymgr ctl agent NODE`), or whether they could run a revision
 * (preflight). The agent stream registers each agent's way to send a question and hands the reports it receives
 * back here. An answer counts only from the agent it was asked of; a question whose stream closes is answered at
 * once with a sentence saying so.
 */
export class AgentQuestions<Q, A extends { readonly id: string }> {
  private readonly streams = new Map<string, (id: string, question: Q) => void>();
  private readonly pending = new Map<
    string,
    { nodeId: string; resolve: (r: A | string) => void; timer: NodeJS.Timeout }
  >();
  private counter = 0;

  /** `maxPending`: at most this many questions wait for answers at once (more are answered with a sentence). */
  constructor(
    private readonly what: string,
    private readonly maxPending: number,
  ) {}

  /** The stream of `nodeId` can take questions through `send`; returns the function that takes it back. */
  register(nodeId: string, send: (id: string, question: Q) => void): () => void {
    this.streams.set(nodeId, send);
    return () => {
      if (this.streams.get(nodeId) !== send) return;
      this.streams.delete(nodeId);
      for (const [id, p] of this.pending) {
        if (p.nodeId !== nodeId) continue;
        this.pending.delete(id);
        clearTimeout(p.timer);
        p.resolve(`agent ${nodeId} disconnected before it answered`);
      }
    };
  }

  /** Whether `nodeId` has a stream here that takes these questions. */
  has(nodeId: string): boolean {
    return this.streams.has(nodeId);
  }

  /** A report from the stream of `nodeId`. */
  answer(nodeId: string, report: A): void {
    const p = this.pending.get(report.id);
    if (!p || p.nodeId !== nodeId) return;
    this.pending.delete(report.id);
    clearTimeout(p.timer);
    p.resolve(report);
  }

  /** The agent's report, or why there is none (a sentence). */
  ask(nodeId: string, question: Q, timeoutMs: number): Promise<A | string> {
    const send = this.streams.get(nodeId);
    if (!send)
      return Promise.resolve(
        `agent ${nodeId} has no stream to this control plane that can answer (disconnected, or an agent from before ${this.what})`,
      );
    if (this.pending.size >= this.maxPending)
      return Promise.resolve(`${this.maxPending} questions to agents are already waiting; try again`);
    const id = `q${++this.counter}`;
    return new Promise((resolve) => {
      const timer = setTimeout(() => {
        this.pending.delete(id);
        resolve(`agent ${nodeId} did not answer within ${timeoutMs} ms`);
      }, timeoutMs);
      timer.unref();
      this.pending.set(id, { nodeId, resolve, timer });
      send(id, question);
    });
  }
}

/** `proxymgr ctl agent NODE`: what the agent's HAProxy has. At most 100 wait at once (each is an operator's). */
export class AgentStateRequests extends AgentQuestions<void, StateReport> {
  constructor() {
    super('stream protocol 2', 100);
  }
}

/** Preflight: could the agent run this state? Every agent of the fleet may be asked at once. */
export class AgentPreflights extends AgentQuestions<DesiredState, PreflightReport> {
  constructor() {
    super('preflight', 100_000);
  }
}
