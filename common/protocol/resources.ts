import { createHash } from 'node:crypto';
import { DesiredState, HaproxyGlobals, Service } from './types';
import { canonicalJson, hashService } from './state-hash';

/**
 * The agent stream's resources (docs/protocol.md): each service is a resource named by its service name, and the
 * HAProxy globals are one more. A resource version is a hash of the content, so equal content has equal versions
 * in every process and across restarts. A set of resources has a digest that can be updated one resource at a
 * time: the XOR of one hash per (name, version), so the agent checks what it holds after each push in time
 * proportional to the push, not to the state.
 */

/** The stream protocol of this build: 2 = incremental pushes. Hellos without one (0) are agents from before. */
export const PROTOCOL_VERSION = 2;

/** A hello may declare this many resources (services) at most; the control plane refuses a hello with more. */
export const MAX_DECLARED_RESOURCES = 100_000;
/** An agent reports counters for at most this many services; the control plane drops the rest. */
export const MAX_COUNTED_SERVICES = 10_000;

const VERSION_CHARS = 32;

export function resourceVersion(service: Service): string {
  return hashService(service).slice(0, VERSION_CHARS);
}

const globalsVersions = new WeakMap<HaproxyGlobals, string>();
export function globalsVersion(haproxy: HaproxyGlobals): string {
  let v = globalsVersions.get(haproxy);
  if (v === undefined) {
    v = createHash('sha256')
      .update(canonicalJson({ global: haproxy.global, defaults: haproxy.defaults }))
      .digest('hex')
      .slice(0, VERSION_CHARS);
    globalsVersions.set(haproxy, v);
  }
  return v;
}

const DIGEST_BYTES = 16;
/** The globals' term uses a name no service can have (service names are `[A-Za-z0-9_.:-]+`). */
const GLOBALS_TERM = '\0globals';

/**
 * The digest term of (name, version); see Digest. Recent terms are kept: a resource toggled on is toggled off
 * later, and an agent's hello and its pushes name the same (name, version) pairs many times.
 */
const termCache = new Map<string, Buffer>();
const TERM_CACHE_MAX = 50_000;
function term(name: string, version: string): Buffer {
  const key = `${name}\0${version}`;
  let t = termCache.get(key);
  if (!t) {
    t = createHash('sha256').update(key).digest();
    if (termCache.size >= TERM_CACHE_MAX) termCache.clear();
    termCache.set(key, t);
  }
  return t;
}

/** Each service object's digest term, hashed once (a state of 500 services is then 500 XORs, not 500 hashes). */
const serviceTerms = new WeakMap<Service, Buffer>();

/** An order-independent digest of a resource set; add and remove are the same operation (XOR). */
export class Digest {
  private readonly acc = Buffer.alloc(DIGEST_BYTES);

  toggle(name: string, version: string): void {
    this.xor(term(name, version));
  }

  /** toggle(service.name, resourceVersion(service)), with the hash memoized per service object. */
  toggleService(service: Service): void {
    let t = serviceTerms.get(service);
    if (!t) serviceTerms.set(service, (t = term(service.name, resourceVersion(service))));
    this.xor(t);
  }

  private xor(h: Buffer): void {
    for (let i = 0; i < DIGEST_BYTES; i++) this.acc[i]! ^= h[i]!;
  }

  toggleGlobals(version: string): void {
    this.toggle(GLOBALS_TERM, version);
  }

  hex(): string {
    return this.acc.toString('hex');
  }

  copy(): Digest {
    const d = new Digest();
    this.acc.copy(d.acc);
    return d;
  }
}

/** What an agent holds, as resource versions: enough to compute what it lacks. */
export interface ResourceSet {
  readonly version: string;
  readonly globalsVersion: string;
  /** Service name → resource version. */
  readonly resources: ReadonlyMap<string, string>;
}

const resourceSets = new WeakMap<DesiredState, ResourceSet & { readonly digest: string }>();

/** A state's resource versions and digest, computed once per (immutable) state object. */
export function resourceSet(state: DesiredState): ResourceSet & { readonly digest: string } {
  let set = resourceSets.get(state);
  if (!set) {
    const digest = new Digest();
    const gv = globalsVersion(state.haproxy);
    digest.toggleGlobals(gv);
    const resources = new Map<string, string>();
    for (const s of state.services) {
      resources.set(s.name, resourceVersion(s));
      digest.toggleService(s);
    }
    set = { version: state.version, globalsVersion: gv, resources, digest: digest.hex() };
    resourceSets.set(state, set);
  }
  return set;
}

/** What turns one resource set into a state: the content of a push (protocol 2). */
export interface Delta {
  readonly version: string;
  /** The version it builds on; '' when `full`. */
  readonly baseVersion: string;
  readonly full: boolean;
  /** Set when the globals changed (always when full). */
  readonly haproxy: HaproxyGlobals | undefined;
  readonly globalsVersion: string;
  readonly upserted: readonly Service[];
  readonly removed: readonly string[];
  readonly digest: string;
}

/** The whole state as a delta that replaces whatever the agent holds. */
export function fullDelta(target: DesiredState): Delta {
  const t = resourceSet(target);
  return {
    version: target.version,
    baseVersion: '',
    full: true,
    haproxy: target.haproxy,
    globalsVersion: t.globalsVersion,
    upserted: target.services,
    removed: [],
    digest: t.digest,
  };
}

/**
 * What an agent holding `base` lacks to hold `target`: services whose version differs or that it lacks, names it
 * holds that `target` does not have, and the globals if they differ. O(services) comparisons of memoized
 * versions (unchanged service objects are not hashed again), done once per (base, target) pair by the caller.
 */
export function diff(base: ResourceSet, target: DesiredState): Delta {
  const t = resourceSet(target);
  const upserted: Service[] = [];
  for (const s of target.services) {
    if (base.resources.get(s.name) !== t.resources.get(s.name)) upserted.push(s);
  }
  const removed: string[] = [];
  for (const name of base.resources.keys()) if (!t.resources.has(name)) removed.push(name);
  const globalsChanged = base.globalsVersion !== t.globalsVersion;
  return {
    version: target.version,
    baseVersion: base.version,
    full: false,
    haproxy: globalsChanged ? target.haproxy : undefined,
    globalsVersion: t.globalsVersion,
    upserted,
    removed,
    digest: t.digest,
  };
}
