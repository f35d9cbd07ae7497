import { promises as fsp } from 'node:fs';
import { errorMessage } from '../common/platform/errors';
import { Logger } from '../common/platform/log';
import { fromJson } from '../common/protocol/state-codec';
import { DesiredState } from '../common/protocol/types';

/** The state cache as read at start: the state, and when it was last known to be current (the file's mtime). */
export interface CachedState {
  readonly state: DesiredState;
  /** ms since the epoch: written, or touched while the control plane was connected (see AgentProcess). */
  readonly confirmedAt: number;
}

/** A cache stamped further ahead of the clock than this has an unknown age (the clock went back, or a planted file). */
const FUTURE_SLACK_MS = 60_000;

/**
 * Reads the state cache; undefined when there is none, or (logged, naming the file) when it cannot be read or is not
 * a desired state.
 */
export async function readStateCache(file: string, log: Logger): Promise<CachedState | undefined> {
  try {
    const [text, stat] = await Promise.all([fsp.readFile(file, 'utf8'), fsp.stat(file)]);
    return { state: replayed(fromJson(JSON.parse(text))), confirmedAt: stat.mtimeMs };
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'ENOENT')
      log.warn({ err: errorMessage(err), file }, 'ignoring an unreadable state cache');
    return undefined;
  }
}

/**
 * A cached state is what ran once, not what discovery says now: a service it has without servers is not an
 * affirmative empty (a kill -9 before the cache's write may have left it older than the servers HAProxy runs), so
 * replaying it keeps those servers (keepUnknownHosts) until the control plane says otherwise.
 */
export function replayed(state: DesiredState): DesiredState {
  if (!state.services.some((s) => s.servers.length === 0 && s.hosts === 'reported')) return state;
  return {
    ...state,
    services: state.services.map((s) =>
      s.servers.length === 0 && s.hosts === 'reported' ? { ...s, hosts: 'unknown' as const } : s,
    ),
  };
}

/** Touches the cache: what it holds was just confirmed current. A missing cache is fine (nothing applied yet). */
export async function confirmStateCache(file: string, now: number): Promise<void> {
  const t = new Date(now);
  await fsp.utimes(file, t, t).catch((err: unknown) => {
    if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err;
  });
}

export type CacheVerdict =
  | { readonly serve: true; readonly stale: boolean; readonly message: string }
  | { readonly serve: false; readonly message: string };

/**
 * Whether the state cache is served at start, before any control plane answers.
 * - No older than `maxAgeMs` (or `maxAgeMs` 0): served, as always.
 * - Older, with a HAProxy of this agent still running (an agent restart: the takeover): served. That HAProxy is what
 *   served traffic a moment ago, and the cache normally renders to exactly the config it runs, so the takeover
 *   keeps it as it is. Said as a warning.
 * - Older, with no HAProxy running (a reboot, or both died): not served. Starting a HAProxy from a days-old state
 *   would send traffic to addresses that may since belong to other hosts; the agent keeps its sockets (connections
 *   queue) and waits for the control plane, and says so as an error.
 * An age that cannot be known (the cache is stamped in the future) counts as too old.
 */
export function judgeStateCache(o: {
  readonly file: string;
  readonly version: string;
  readonly confirmedAt: number;
  readonly now: number;
  readonly maxAgeMs: number;
  readonly haproxyRunning: boolean;
}): CacheVerdict {
  const ageMs = o.now - o.confirmedAt;
  const unknown = ageMs < -FUTURE_SLACK_MS;
  if (o.maxAgeMs === 0 || (!unknown && ageMs <= o.maxAgeMs))
    return { serve: true, stale: false, message: 'serving the cached desired state until the control plane answers' };
  const age = unknown
    ? `stamped ${new Date(o.confirmedAt).toISOString()}, in the future: its age is unknown`
    : `last confirmed ${durationText(ageMs)} ago`;
  const limit = `agent.cache_max_age_ms is ${o.maxAgeMs} (${durationText(o.maxAgeMs)})`;
  if (o.haproxyRunning)
    return {
      serve: true,
      stale: true,
      message: `the state cache ${o.file} (version ${o.version}) was ${age}; ${limit}. A HAProxy of this agent still runs: taking it over with that state until the control plane answers`,
    };
  return {
    serve: false,
    message: `not starting HAProxy from the state cache ${o.file} (version ${o.version}): it was ${age}; ${limit}, and its servers may have moved since. No HAProxy runs: waiting for the control plane (set agent.cache_max_age_ms: 0 to serve a cache of any age)`,
  };
}

/** A duration for people ("90s", "45m", "3.5h", "12d"). */
export function durationText(ms: number): string {
  const s = ms / 1000;
  if (s < 120) return `${Math.round(s)}s`;
  if (s < 7200) return `${Math.round(s / 60)}m`;
  if (s < 172_800) return `${+(s / 3600).toFixed(1)}h`;
  return `${+(s / 86_400).toFixed(1)}d`;
}
