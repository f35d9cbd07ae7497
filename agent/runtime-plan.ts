import { isIP } from 'node:net';
import { DesiredState, Server, Service } from '../common/protocol/types';
import { serverAddress, serverKeywords } from './haproxy/render';
import { ADMF_FDRAIN, ADMF_FMAINT, RuntimeServer, RuntimeState } from './haproxy/servers-state';

/** One runtime API command with the reason it is sent and how to recognise HAProxy's success reply. */
export interface RuntimeAction {
  readonly kind:
    | 'add'
    | 'enable-health'
    | 'enable-agent'
    | 'ready'
    | 'weight'
    | 'addr'
    | 'drain'
    | 'override'
    | 'maint'
    | 'shutdown-sessions'
    | 'delete';
  readonly backend: string;
  readonly server: string;
  readonly command: string;
  /** HAProxy answers these commands with an empty line or one of these texts on success. */
  readonly ok: RegExp;
  readonly reason: string;
}

/** Why a reload is needed: a kind (metrics label, tests) and the sentence logs, ACKs and RecentActions show. */
export type ReloadKind =
  | 'start'
  | 'global'
  | 'defaults'
  | 'new_service'
  | 'service_removed'
  | 'listen_address'
  | 'listen_options'
  | 'server_options'
  | 'static_algorithm'
  | 'hostname'
  | 'runtime_fallback'
  | 'state_unreadable';

/** A reason as data: logs, metrics and ACKs are made from it (never parsed back from the text). */
export interface Reason {
  readonly kind: ReloadKind | RuntimeAction['kind'];
  readonly text: string;
}

export const reason = (kind: Reason['kind'], text: string): Reason => ({ kind, text });

export interface Plan {
  /** Non-empty: the shape changed (or HAProxy cannot do it at runtime) and a reload is needed; one reason each. */
  readonly reloadReasons: readonly Reason[];
  /** Runtime commands, in order: capacity is added before it is taken away. */
  readonly actions: readonly RuntimeAction[];
}

/**
 * What HAProxy runs: the state it was last (re)loaded with, plus servers added at runtime since. Removed servers
 * stay in it (HAProxy still has them, draining) until the agent deletes them or the next reload.
 */
export type Running = DesiredState;

/** An admin state someone other than the agent set on a desired server (see Agent.overrides). */
export type OverrideState = 'drain' | 'maint';
/*
 * Overrides also hold the agent's own drains ('draining': a server on its way out, see agent/drains.ts), so that a
 * reload, whose config keeps draining servers, re-applies their drain state rather than readying them.
 */

/**
 * Servers whose admin state belongs to an operator (or its agent-check), backend → server → state: the plan never
 * readies them; one found ready (HAProxy restarted from an older server-state file) gets its state back.
 */
export type Overrides = ReadonlyMap<string, ReadonlyMap<string, OverrideState | 'draining'>>;

const EMPTY = /^\s*$/;
const EMPTY_BACKEND: ReadonlyMap<string, RuntimeServer> = new Map();

/** Services of a running state by name; cached per (immutable) state object. */
const servicesCache = new WeakMap<Running, ReadonlyMap<string, Service>>();
function servicesByName(state: Running): ReadonlyMap<string, Service> {
  let m = servicesCache.get(state);
  if (!m) servicesCache.set(state, (m = new Map(state.services.map((s) => [s.name, s]))));
  return m;
}

/** Servers of a running service by name; cached per (immutable) service object. */
const byNameCache = new WeakMap<Service, ReadonlyMap<string, Server>>();
function serversByName(service: Service): ReadonlyMap<string, Server> {
  let m = byNameCache.get(service);
  if (!m) byNameCache.set(service, (m = new Map(service.servers.map((s) => [s.name, s]))));
  return m;
}

/**
 * Compares the desired state with what runs (`running` = the shape HAProxy loaded, `actual` = `show servers
 * state`) and says what to do, each step with a human reason (pure). `overrides` are left in their admin state.
 * With `skipSame`, a desired service that is the very object `running` holds is not looked at server by server:
 * the caller vouches that `actual` is what its own last change left (not a fresh read, which may show drift).
 */
export function plan(
  desired: DesiredState,
  running: Running | undefined,
  actual: RuntimeState | undefined,
  overrides?: Overrides,
  skipSame = false,
): Plan {
  if (!running || !actual) return { reloadReasons: [reason('start', 'start: no HAProxy is running')], actions: [] };
  const reasons: Reason[] = [];
  if (!sameLines(desired.haproxy.global, running.haproxy.global))
    reasons.push(reason('global', 'reload: haproxy global section changed'));
  if (!sameLines(desired.haproxy.defaults, running.haproxy.defaults))
    reasons.push(reason('defaults', 'reload: haproxy defaults section changed'));

  const runningByName = servicesByName(running);
  const desiredNames = new Set(desired.services.map((s) => s.name));
  for (const s of running.services)
    if (!desiredNames.has(s.name)) reasons.push(reason('service_removed', `reload: service ${s.name} removed`));

  const adds: RuntimeAction[] = [];
  const updates: RuntimeAction[] = [];
  const removals: RuntimeAction[] = [];
  for (const service of desired.services) {
    const was = runningByName.get(service.name);
    if (skipSame && was === service) continue;
    if (!was) {
      reasons.push(reason('new_service', `reload: new service ${service.name}`));
      continue;
    }
    const shape = shapeChanges(service, was);
    if (shape.length > 0) {
      reasons.push(...shape);
      continue;
    }
    // The hot loop runs once per server of the fleet (2,000 × 20 in bench/scale): no per-call allocation
    // unless something differs, and the algorithm is only looked at when it matters.
    let staticAlgo: string | undefined | null = null;
    const algo = () =>
      staticAlgo === null ? (staticAlgo = staticAlgorithm(service, desired.haproxy.defaults)) : staticAlgo;
    const live = actual.get(service.name) ?? EMPTY_BACKEND;
    const held = overrides?.get(service.name);
    const defs = serversByName(was);
    let matched = 0;
    for (const server of service.servers) {
      const cur = live.get(server.name);
      if (!cur) {
        const why = cannotAdd(server, algo());
        if (why)
          reasons.push(
            reason(
              algo() ? 'static_algorithm' : 'hostname',
              `reload: new server ${service.name}/${server.name} (${why})`,
            ),
          );
        else adds.push(...addServer(service, server));
        continue;
      }
      matched++;
      const def = defs.get(server.name);
      const sameOptions = def === undefined || def === server || sameLines(def.options, server.options);
      const admin = cur.adminState & (ADMF_FMAINT | ADMF_FDRAIN);
      const hold = held === undefined ? undefined : held.get(server.name);
      if (
        sameOptions &&
        cur.weight === server.weight &&
        cur.port === server.port &&
        cur.address === server.address &&
        admin === 0 &&
        hold === undefined
      ) {
        continue; // the common case: nothing differs
      }
      const id = `${service.name}/${server.name}`;
      if (!sameOptions) {
        reasons.push(reason('server_options', `reload: options of server ${id} changed`));
        continue;
      }
      if (isIP(server.address) === 0) {
        if (def && def.address !== server.address)
          reasons.push(
            reason(
              'hostname',
              `reload: address of ${id} is now hostname ${server.address} (runtime API takes IP literals)`,
            ),
          );
      } else if (!sameAddress(cur, server)) {
        updates.push({
          kind: 'addr',
          backend: service.name,
          server: server.name,
          command: `set server ${id} addr ${server.address} port ${server.port}`,
          ok: /changed from|no need to change/,
          reason: `address of ${id} ${cur.address}:${cur.port} → ${server.address}:${server.port}`,
        });
      }
      if (cur.weight !== server.weight) {
        if (algo())
          reasons.push(
            reason(
              'static_algorithm',
              `reload: weight of ${id} changed and ${algo()} only takes 0% or 100% at runtime`,
            ),
          );
        else
          updates.push({
            kind: 'weight',
            backend: service.name,
            server: server.name,
            command: `set server ${id} weight ${server.weight}`,
            ok: EMPTY,
            reason: `weight of ${id} ${cur.weight} → ${server.weight}`,
          });
      }
      if (hold !== undefined) {
        if (admin === 0) {
          removals.push(
            hold === 'draining'
              ? {
                  kind: 'override',
                  backend: service.name,
                  server: server.name,
                  command: `set server ${id} state drain`,
                  ok: EMPTY,
                  reason: `server ${id} is draining: HAProxy restarted without its drain state`,
                }
              : {
                  kind: 'override',
                  backend: service.name,
                  server: server.name,
                  command: `set server ${id} state ${hold}`,
                  ok: EMPTY,
                  reason: `operator override of ${id} (${hold}) re-applied: HAProxy restarted without it`,
                },
          );
        }
      } else if (admin !== 0) {
        adds.push(ready(service.name, server.name, `server ${id} is desired again`));
      }
    }
    if (matched === live.size) continue; // every server HAProxy has is wanted: nothing to take out
    const wanted = new Set(service.servers.map((v) => v.name));
    for (const cur of live.values()) {
      if (wanted.has(cur.name)) continue;
      // A server that left: drained (no new sessions, the current ones finish); the agent deletes it once its
      // drain timeout passed (Agent's drains, which hold it in drain). One already on its way out: nothing to do.
      // One an operator had drained or put in maint: drained by the agent too, so that it is deleted in time.
      const hold = held?.get(cur.name);
      if (hold === 'draining' && (cur.adminState & (ADMF_FDRAIN | ADMF_FMAINT)) !== 0) continue;
      removals.push({
        kind: 'drain',
        backend: service.name,
        server: cur.name,
        command: `set server ${service.name}/${cur.name} state drain`,
        ok: EMPTY,
        reason:
          hold === 'draining'
            ? `server ${service.name}/${cur.name} is draining: HAProxy restarted without its drain state`
            : `server ${service.name}/${cur.name} is no longer in the desired state: draining`,
      });
    }
  }
  return { reloadReasons: reasons, actions: reasons.length > 0 ? [] : [...adds, ...updates, ...removals] };
}

/** Reasons a service's shape differs from what HAProxy loaded (each one forces a reload). */
function shapeChanges(service: Service, was: Service): Reason[] {
  const out: Reason[] = [];
  if (service.port !== was.port || service.bindAddress !== was.bindAddress) {
    out.push(
      reason(
        'listen_address',
        `reload: listen address of ${service.name} changed ${was.bindAddress}:${was.port} → ${service.bindAddress}:${service.port}`,
      ),
    );
  }
  if (!sameLines(service.listenOptions, was.listenOptions))
    out.push(reason('listen_options', `reload: listen_options of ${service.name} changed`));
  if (!sameLines(service.serverOptions, was.serverOptions))
    out.push(reason('server_options', `reload: server_options of ${service.name} changed`));
  return out;
}

function addServer(service: Service, server: Server): RuntimeAction[] {
  const id = `${service.name}/${server.name}`;
  const keywords = serverKeywords(service, server);
  const actions: RuntimeAction[] = [
    {
      kind: 'add',
      backend: service.name,
      server: server.name,
      // Dynamic servers do not inherit default-server: every keyword is spelled out, as in the config file.
      command: `add server ${id} ${serverAddress(server)} ${keywords.join(' ')}`.trim(),
      ok: /New server registered/,
      reason: `new server ${id} at ${server.address}:${server.port}`,
    },
  ];
  if (keywords.some((k) => /(^|\s)check(\s|$)/.test(k))) {
    actions.push({
      kind: 'enable-health',
      backend: service.name,
      server: server.name,
      command: `enable health ${id}`,
      ok: EMPTY,
      reason: `health checks for new server ${id}`,
    });
  }
  // Like health checks, agent checks of a dynamic server start disabled.
  if (keywords.some((k) => /(^|\s)agent-check(\s|$)/.test(k))) {
    actions.push({
      kind: 'enable-agent',
      backend: service.name,
      server: server.name,
      command: `enable agent ${id}`,
      ok: EMPTY,
      reason: `agent check for new server ${id}`,
    });
  }
  actions.push(ready(service.name, server.name, `new server ${id} starts in maint`));
  return actions;
}

function ready(backend: string, server: string, reason: string): RuntimeAction {
  return { kind: 'ready', backend, server, command: `set server ${backend}/${server} state ready`, ok: EMPTY, reason };
}

/** Why `add server` cannot take this server, or undefined when it can. */
function cannotAdd(server: Server, staticAlgo: string | undefined): string | undefined {
  if (staticAlgo) return `${staticAlgo} cannot take dynamic servers`;
  if (isIP(server.address) === 0)
    return `address ${server.address} is a hostname; add server takes IP literals on HAProxy 2.6`;
  return undefined;
}

const STATIC_BALANCE = new Set(['static-rr', 'source', 'uri', 'url_param', 'hdr', 'rdp-cookie', 'hash']);

/**
 * Returns a description like "balance source" when the service's load-balancing algorithm is static (map-based):
 * HAProxy then refuses dynamic servers and runtime weight changes other than 0%/100%.
 */
export function staticAlgorithm(service: Service, defaults: readonly string[]): string | undefined {
  const lines = [...defaults, ...service.listenOptions].map((l) => l.trim().split(/\s+/));
  let balance: string | undefined;
  let consistent = false;
  for (const words of lines) {
    if (words[0] === 'balance' && words[1]) balance = words[1].replace(/\(.*$/, '');
    if (words[0] === 'hash-type') consistent = words[1] === 'consistent';
  }
  if (!balance || !STATIC_BALANCE.has(balance)) return undefined;
  if (balance !== 'static-rr' && consistent) return undefined;
  return `balance ${balance}`;
}

function sameAddress(cur: RuntimeServer, server: Server): boolean {
  return (
    cur.port === server.port &&
    (cur.address === server.address || normalizeIp(cur.address) === normalizeIp(server.address))
  );
}

function normalizeIp(a: string): string {
  return a.replace(/^\[|\]$/g, '').toLowerCase();
}

function sameLines(a: readonly string[], b: readonly string[]): boolean {
  return a.length === b.length && a.every((v, i) => v === b[i]);
}

/**
 * The commands that end a drain whose timeout passed: maint, its remaining sessions shut down, deleted (`del server`;
 * HAProxy deletes only a server in maint). Each is idempotent, so a failed attempt starts again from the first.
 */
export function endOfDrain(backend: string, server: string, why: string): RuntimeAction[] {
  const id = `${backend}/${server}`;
  const of = { backend, server, reason: why };
  return [
    { ...of, kind: 'maint', command: `set server ${id} state maint`, ok: EMPTY },
    { ...of, kind: 'shutdown-sessions', command: `shutdown sessions server ${id}`, ok: EMPTY },
    { ...of, kind: 'delete', command: `del server ${id}`, ok: /Server deleted/ },
  ];
}
