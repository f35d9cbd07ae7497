import { Digest, globalsVersion, PROTOCOL_VERSION, resourceVersion } from '../../common/resources';
import { fromProto, serviceFromProto } from '../../common/state-codec';
import { DesiredState, HaproxyGlobals, Service } from '../../common/types';
import { Push } from '../../common/gen/proxymgr/v1/stream';

/** Why a push cannot be taken: the agent asks for a resync (docs/protocol.md). */
export class PushMismatch extends Error {}

const EMPTY_GLOBALS: HaproxyGlobals = { global: [], defaults: [] };
const byName = (a: Service, b: Service) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0);

/**
 * What the agent holds of the control plane's desired state, as versioned resources (docs/protocol.md): pushes are
 * applied to it — services upserted or removed, the globals replaced — and it yields the whole state for the
 * agent to apply. Work per push is proportional to the push: the digest is updated per resource, and services
 * that did not change stay the same objects (the agent's apply path skips them by identity).
 */
export class HeldState {
  private versionHeld = '';
  private haproxy: HaproxyGlobals = EMPTY_GLOBALS;
  private globalsVersion = '';
  private readonly services = new Map<string, { readonly service: Service; readonly version: string }>();
  private digest = new Digest();
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
      if (state)
        held.replace(
          state.version,
          state.haproxy,
          state.services.map((s) => ({ service: s, version: resourceVersion(s) })),
        );
    } catch (err) {
      if (!(err instanceof PushMismatch)) throw err;
      held.clear();
    }
    return held;
  }

  get version(): string {
    return this.versionHeld;
  }

  /** The hello's base fields: what this agent holds, so that nothing unchanged is re-sent. */
  hello(): {
    protocolVersion: number;
    baseVersion: string;
    baseResources: { [name: string]: string };
    baseGlobalsVersion: string;
  } {
    const baseResources: { [name: string]: string } = {};
    if (this.versionHeld) for (const [name, r] of this.services) baseResources[name] = r.version;
    return {
      protocolVersion: PROTOCOL_VERSION,
      baseVersion: this.versionHeld,
      baseResources,
      baseGlobalsVersion: this.versionHeld ? this.globalsVersion : '',
    };
  }

  /** Forgets everything (after a push that did not fit: the next one must be full). */
  clear(): void {
    this.replace('', EMPTY_GLOBALS, []);
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
      this.replace(
        push.version,
        state.haproxy,
        state.services.map((s) => ({ service: s, version: resourceVersion(s) })),
      );
      return { version: push.version, haproxy: this.haproxy, services: this.sorted };
    }
    if (push.full) {
      if (!push.haproxy) throw new PushMismatch(`full push ${push.nonce} has no haproxy globals`);
      this.replace(
        push.version,
        push.haproxy,
        push.upserted.map((r) => ({ service: this.service(r.name, r.service, push.nonce), version: r.version })),
        push.globalsVersion,
      );
    } else {
      if (!this.versionHeld)
        throw new PushMismatch(
          `push ${push.nonce} builds on version ${push.baseVersion}, but this agent holds nothing it can build on`,
        );
      if (push.baseVersion !== this.versionHeld)
        throw new PushMismatch(
          `push ${push.nonce} builds on version ${push.baseVersion}, but this agent holds ${this.versionHeld}: a push was lost or came out of order`,
        );
      this.patch(push);
    }
    this.versionHeld = push.version;
    const digest = this.digest.hex();
    if (push.digest !== digest)
      throw new PushMismatch(
        `after push ${push.nonce} (version ${push.version}) this agent holds resources with digest ${digest}, the control plane says ${push.digest}`,
      );
    return { version: push.version, haproxy: this.haproxy, services: this.sorted };
  }

  private patch(push: Push): void {
    if (push.haproxy) {
      this.digest.toggleGlobals(this.globalsVersion);
      this.haproxy = { global: [...push.haproxy.global], defaults: [...push.haproxy.defaults] };
      this.globalsVersion = push.globalsVersion;
      this.digest.toggleGlobals(this.globalsVersion);
    }
    let namesChanged = false;
    for (const name of push.removed) {
      const had = this.services.get(name);
      if (!had)
        throw new PushMismatch(
          `push ${push.nonce} removes service ${JSON.stringify(name.slice(0, 60))}, which this agent does not hold`,
        );
      this.digest.toggle(name, had.version);
      this.services.delete(name);
      namesChanged = true;
    }
    const updated: Service[] = [];
    for (const r of push.upserted) {
      const service = this.service(r.name, r.service, push.nonce);
      const had = this.services.get(r.name);
      if (had) this.digest.toggle(r.name, had.version);
      else namesChanged = true;
      this.services.set(r.name, { service, version: r.version });
      this.digest.toggle(r.name, r.version);
      updated.push(service);
    }
    if (namesChanged) return this.resort();
    if (updated.length === 0) return;
    // Same names: a copy of the sorted list with the changed entries replaced (a new array: states are immutable).
    this.sorted = [...this.sorted];
    for (const s of updated) this.sorted[this.index.get(s.name)!] = s;
  }

  private service(name: string, pb: Push['upserted'][number]['service'], nonce: string): Service {
    if (!pb) throw new PushMismatch(`push ${nonce}: resource ${JSON.stringify(name.slice(0, 60))} has no service`);
    if (pb.name !== name)
      throw new PushMismatch(
        `push ${nonce}: resource ${JSON.stringify(name.slice(0, 60))} holds service ${JSON.stringify(pb.name.slice(0, 60))}`,
      );
    return serviceFromProto(pb);
  }

  private replace(
    version: string,
    haproxy: HaproxyGlobals,
    services: readonly { service: Service; version: string }[],
    gv = globalsVersion(haproxy),
  ): void {
    this.versionHeld = version;
    this.haproxy = { global: [...haproxy.global], defaults: [...haproxy.defaults] };
    this.globalsVersion = gv;
    this.services.clear();
    this.digest = new Digest();
    this.digest.toggleGlobals(gv);
    for (const r of services) {
      if (this.services.has(r.service.name))
        throw new PushMismatch(`service ${JSON.stringify(r.service.name.slice(0, 60))} appears twice`);
      this.services.set(r.service.name, r);
      this.digest.toggle(r.service.name, r.version);
    }
    this.resort();
  }

  private resort(): void {
    this.sorted = [...this.services.values()].map((r) => r.service).sort(byName);
    this.index = new Map(this.sorted.map((s, i) => [s.name, i]));
  }
}
