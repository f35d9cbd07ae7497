import { Digest, globalsVersion, PROTOCOL_VERSION, resourceVersion } from '../../common/protocol/resources';
import { fromProto, serviceFromProto } from '../../common/protocol/state-codec';
import { DesiredState, HaproxyGlobals, Service } from '../../common/protocol/types';
import { Push } from '../../common/gen/proxymgr/v1/stream';

/** Why a push cannot be taken: the agent asks for a resync (docs/protocol.md). */
export class PushMismatch extends Error {}

const EMPTY_GLOBALS: HaproxyGlobals = { global: [], defaults: [] };
const byName = (a: Service, b: Service) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0);

/** One resource held: the value kept for it and the version the control plane gave it. */
interface Entry<T> {
  readonly value: T;
  readonly version: string;
}

/** What one push changed in a ledger. */
export interface LedgerChange<T> {
  /** A full push: everything held was replaced. */
  readonly full: boolean;
  /** Values of the resources removed (a delta push). */
  readonly removed: readonly T[];
  /** Each resource upserted: its new value, and the value it replaces (undefined for a new name). */
  readonly upserted: readonly { readonly value: T; readonly before: T | undefined }[];
  /** Names came or went (a full push, a new name or a removal). */
  readonly namesChanged: boolean;
}

/**
 * The stream protocol's bookkeeping of held resources (docs/protocol.md), whatever is kept per resource: the version
 * held, each resource's version, the globals version and the digest over them; pushes are checked against it (the
 * base version, removals of what is held, the digest afterwards) and applied to it. The agent keeps services
 * (HeldState); the benchmarks' simulated agents keep server counts only, with the very same checks.
 */
export class ResourceLedger<T> {
  private held = '';
  private globals = '';
  private readonly entries = new Map<string, Entry<T>>();
  private digest = new Digest();

  /** The version held ('' for nothing). */
  get version(): string {
    return this.held;
  }

  get size(): number {
    return this.entries.size;
  }

  values(): IterableIterator<Entry<T>> {
    return this.entries.values();
  }

  /** The hello's base fields: what is held, so that nothing unchanged is re-sent. */
  hello(): {
    protocolVersion: number;
    baseVersion: string;
    baseResources: { [name: string]: string };
    baseGlobalsVersion: string;
  } {
    const baseResources: { [name: string]: string } = {};
    if (this.held) for (const [name, r] of this.entries) baseResources[name] = r.version;
    return {
      protocolVersion: PROTOCOL_VERSION,
      baseVersion: this.held,
      baseResources,
      baseGlobalsVersion: this.held ? this.globals : '',
    };
  }

  /** Holds exactly `entries` at `version`; a name twice is a PushMismatch (nothing is then held). */
  replace(version: string, globals: string, entries: readonly { name: string; value: T; version: string }[]): void {
    this.held = version;
    this.globals = globals;
    this.entries.clear();
    this.digest = new Digest();
    this.digest.toggleGlobals(globals);
    for (const e of entries) {
      if (this.entries.has(e.name)) {
        this.clear();
        throw new PushMismatch(`service ${JSON.stringify(e.name.slice(0, 60))} appears twice`);
      }
      this.entries.set(e.name, { value: e.value, version: e.version });
      this.digest.toggle(e.name, e.version);
    }
  }

  /** Holds nothing. */
  clear(): void {
    this.held = '';
    this.globals = '';
    this.entries.clear();
    this.digest = new Digest();
  }

  /**
   * Takes a full or delta push (not a whole state from before incremental pushes). `valueOf` makes the value kept
   * for an upserted resource (and may throw PushMismatch). Throws PushMismatch when the push does not build on what
   * is held (lost or reordered) or the digest afterwards differs from the control plane's; nothing is then held,
   * and only a full push is taken until one comes.
   */
  take(push: Push, valueOf: (r: Push['upserted'][number]) => T): LedgerChange<T> {
    try {
      return this.takeOrThrow(push, valueOf);
    } catch (err) {
      this.clear();
      throw err;
    }
  }

  private takeOrThrow(push: Push, valueOf: (r: Push['upserted'][number]) => T): LedgerChange<T> {
    let change: LedgerChange<T>;
    if (push.full) {
      if (!push.haproxy) throw new PushMismatch(`full push ${push.nonce} has no haproxy globals`);
      const entries = push.upserted.map((r) => ({ name: r.name, value: valueOf(r), version: r.version }));
      this.replace(push.version, push.globalsVersion, entries);
      change = {
        full: true,
        removed: [],
        upserted: entries.map((e) => ({ value: e.value, before: undefined })),
        namesChanged: true,
      };
    } else {
      if (!this.held)
        throw new PushMismatch(
          `push ${push.nonce} builds on version ${push.baseVersion}, but this agent holds nothing it can build on`,
        );
      if (push.baseVersion !== this.held)
        throw new PushMismatch(
          `push ${push.nonce} builds on version ${push.baseVersion}, but this agent holds ${this.held}: a push was lost or came out of order`,
        );
      change = this.patch(push, valueOf);
      this.held = push.version;
    }
    const digest = this.digest.hex();
    if (push.digest !== digest)
      throw new PushMismatch(
        `after push ${push.nonce} (version ${push.version}) this agent holds resources with digest ${digest}, the control plane says ${push.digest}`,
      );
    return change;
  }

  private patch(push: Push, valueOf: (r: Push['upserted'][number]) => T): LedgerChange<T> {
    if (push.haproxy) {
      this.digest.toggleGlobals(this.globals);
      this.globals = push.globalsVersion;
      this.digest.toggleGlobals(this.globals);
    }
    let namesChanged = false;
    const removed: T[] = [];
    for (const name of push.removed) {
      const had = this.entries.get(name);
      if (!had)
        throw new PushMismatch(
          `push ${push.nonce} removes service ${JSON.stringify(name.slice(0, 60))}, which this agent does not hold`,
        );
      this.digest.toggle(name, had.version);
      this.entries.delete(name);
      removed.push(had.value);
      namesChanged = true;
    }
    const upserted: { value: T; before: T | undefined }[] = [];
    for (const r of push.upserted) {
      const value = valueOf(r);
      const had = this.entries.get(r.name);
      if (had) this.digest.toggle(r.name, had.version);
      else namesChanged = true;
      this.entries.set(r.name, { value, version: r.version });
      this.digest.toggle(r.name, r.version);
      upserted.push({ value, before: had?.value });
    }
    return { full: false, removed, upserted, namesChanged };
  }
}

/**
 * What the agent holds of the control plane's desired state, as versioned resources (docs/protocol.md): pushes are
 * applied to it — services upserted or removed, the globals replaced — and it yields the whole state for the
 * agent to apply. Work per push is proportional to the push: the digest is updated per resource, and services
 * that did not change stay the same objects (the agent's apply path skips them by identity).
 */
export class HeldState {
  private readonly ledger = new ResourceLedger<Service>();
  private haproxy: HaproxyGlobals = EMPTY_GLOBALS;
  /** The services sorted by name, and each one's index in it (rebuilt only when names come or go). */
  private sorted: Service[] = [];
  private index = new Map<string, number>();

  /**
   * What an agent holds at start: its last applied state (the disk cache), hashed into resources; or nothing (also
   * when that state cannot be held, e.g. a service name twice: the control plane then sends a full push).
   */
  static of(state: DesiredState | undefined): HeldState {
    const held = new HeldState();
    try {
      if (state) held.replaceWhole(state.version, state.haproxy, state.services);
    } catch (err) {
      if (!(err instanceof PushMismatch)) throw err;
      held.clear();
    }
    return held;
  }

  get version(): string {
    return this.ledger.version;
  }

  /** The hello's base fields: what this agent holds, so that nothing unchanged is re-sent. */
  hello(): ReturnType<ResourceLedger<Service>['hello']> {
    return this.ledger.hello();
  }

  /** Forgets everything (after a push that did not fit: the next one must be full). */
  clear(): void {
    this.ledger.clear();
    this.haproxy = EMPTY_GLOBALS;
    this.resort();
  }

  /**
   * Takes a push and returns the whole state it leads to. Throws PushMismatch when the push does not build on what
   * is held (lost or reordered) or the result's digest differs from the control plane's; the held state is then
   * cleared, and only a full push is taken until one comes.
   */
  take(push: Push): DesiredState {
    try {
      return this.takeOrThrow(push);
    } catch (err) {
      this.clear();
      throw err;
    }
  }

  private takeOrThrow(push: Push): DesiredState {
    if (push.state) {
      // A control plane from before incremental pushes: every push is the whole state.
      const state = fromProto(push.state);
      this.replaceWhole(push.version, state.haproxy, state.services);
      return this.current();
    }
    const change = this.ledger.take(push, (r) => this.service(r.name, r.service, push.nonce));
    if (push.haproxy) this.haproxy = { global: [...push.haproxy.global], defaults: [...push.haproxy.defaults] };
    if (change.namesChanged) this.resort();
    else if (change.upserted.length > 0) {
      // Same names: a copy of the sorted list with the changed entries replaced (a new array: states are immutable).
      this.sorted = [...this.sorted];
      for (const { value } of change.upserted) this.sorted[this.index.get(value.name)!] = value;
    }
    return this.current();
  }

  private current(): DesiredState {
    return { version: this.ledger.version, haproxy: this.haproxy, services: this.sorted };
  }

  private service(name: string, pb: Push['upserted'][number]['service'], nonce: string): Service {
    if (!pb) throw new PushMismatch(`push ${nonce}: resource ${JSON.stringify(name.slice(0, 60))} has no service`);
    if (pb.name !== name)
      throw new PushMismatch(
        `push ${nonce}: resource ${JSON.stringify(name.slice(0, 60))} holds service ${JSON.stringify(pb.name.slice(0, 60))}`,
      );
    return serviceFromProto(pb);
  }

  /** Holds a whole state (the disk cache, or a push from before incremental pushes), each service hashed. */
  private replaceWhole(version: string, haproxy: HaproxyGlobals, services: readonly Service[]): void {
    this.ledger.replace(
      version,
      globalsVersion(haproxy),
      services.map((s) => ({ name: s.name, value: s, version: resourceVersion(s) })),
    );
    this.haproxy = { global: [...haproxy.global], defaults: [...haproxy.defaults] };
    this.resort();
  }

  private resort(): void {
    this.sorted = [...this.ledger.values()].map((r) => r.value).sort(byName);
    this.index = new Map(this.sorted.map((s, i) => [s.name, i]));
  }
}

/**
 * What the agent holds across its streams (a reconnect keeps it), and whether the newest push taken into it was
 * applied. A push taken but never applied (the stream ended while an earlier one was applying) must not be declared
 * as held in the next hello: the control plane would see nothing missing, and the agent would keep running the
 * earlier state. That stream's hello declares what runs instead.
 */
export class HeldAcrossStreams {
  private held: HeldState | undefined;
  /** Whether the newest push taken into `held` was applied (and answered). */
  private applied = true;

  /** `initialState`: what the agent ran before anything was taken (its disk cache), read whenever nothing is held. */
  constructor(private readonly initialState?: () => DesiredState | undefined) {}

  /**
   * What a new stream builds on. `unapplied` is the version of a push taken and never applied: it is forgotten, and
   * what the agent runs is held instead.
   */
  forStream(): { held: HeldState; unapplied: string | undefined } {
    let unapplied: string | undefined;
    if (this.held && !this.applied) {
      unapplied = this.held.version;
      this.held = undefined;
    }
    const held = (this.held ??= HeldState.of(this.initialState?.()));
    this.applied = true;
    return { held, unapplied };
  }

  /** A push was taken into what is held; it is not applied yet. */
  taken(): void {
    this.applied = false;
  }

  /** The push of `version` was applied (whether or not its stream was still there to answer). */
  appliedVersion(version: string): void {
    if (this.held?.version === version) this.applied = true;
  }
}
