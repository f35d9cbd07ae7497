import { ChildProcess, spawn } from 'node:child_process';
import { readFileSync, renameSync, writeFileSync } from 'node:fs';
import * as net from 'node:net';
import { RuntimeApiError } from '../../common/platform/errors';
import { nativeAddon } from './native';
import { alive } from './orphan';
import { converse, refusedCommand, RuntimeCommands } from './runtime';
import type { AdminChannelSet, RuntimeApi } from '../ports';

/**
 * The agent's admin connection to one HAProxy process: a datagram socketpair whose other end HAProxy inherits as
 * `stats socket sockpair@3 level admin`. Each command is a new stream socketpair; one end is sent over the channel
 * (HAProxy takes it as a new CLI connection), the agent talks on the other.
 *
 * Why no path: a socket with a path is reachable by anything that runs as its owner — under the systemd layout
 * HAProxy runs as the agent's user, so a health check (`tcp-check connect addr /run/.../haproxy.sock` with
 * `tcp-check send-binary`) could drive the admin API. A socketpair has no address: HAProxy's own end only sends to
 * the agent's end (a `server x sockpair@3` written by hand reaches the agent, which reads nothing), so nothing
 * HAProxy is told to connect to leads to its CLI. The agent's end is also held by a keeper process (AdminChannels),
 * so that the next agent can take it over; HAProxy never holds it.
 */
export class AdminChannel extends RuntimeCommands {
  private agentEnd: number | undefined;
  private haproxyFd: number | undefined;

  /** A new channel; or, with `agentEnd`, the agent's end of an existing one (copied from a keeper). */
  constructor(
    private readonly timeoutMs = 5000,
    agentEnd?: number,
  ) {
    super();
    if (agentEnd !== undefined) this.agentEnd = agentEnd;
    else [this.agentEnd, this.haproxyFd] = nativeAddon().socketPair(true);
  }

  /** The agent's end (for a keeper to inherit), while open. */
  get end(): number | undefined {
    return this.agentEnd;
  }

  /** HAProxy's end, to hand to the process at render.ts ADMIN_CHANNEL_FD (then releaseHaproxyEnd). */
  get haproxyEnd(): number {
    if (this.haproxyFd === undefined) throw new RuntimeApiError("admin channel: HAProxy's end was already handed over");
    return this.haproxyFd;
  }

  /** Closes the agent's copy of HAProxy's end once the process has it (spawn duplicated it). */
  releaseHaproxyEnd(): void {
    if (this.haproxyFd === undefined) return;
    nativeAddon().closeFd(this.haproxyFd);
    this.haproxyFd = undefined;
  }

  command(cmd: string): Promise<string> {
    const refused = refusedCommand(cmd);
    if (refused) return Promise.reject(refused);
    if (this.agentEnd === undefined)
      return Promise.reject(new RuntimeApiError(`"${cmd}": the admin channel is closed`));
    const addon = nativeAddon();
    let mine: number;
    try {
      const [a, theirs] = addon.socketPair(false);
      mine = a;
      try {
        addon.sendFd(this.agentEnd, theirs);
      } catch (err) {
        addon.closeFd(mine);
        throw err;
      } finally {
        addon.closeFd(theirs); // the message in flight holds its own reference
      }
    } catch (err) {
      return Promise.reject(
        new RuntimeApiError(`admin channel: "${cmd}": ${(err as Error).message} (HAProxy gone or not answering)`, {
          cause: err,
        }),
      );
    }
    return converse(new net.Socket({ fd: mine, readable: true, writable: true }), cmd, 'admin channel', this.timeoutMs);
  }

  close(): void {
    this.releaseHaproxyEnd();
    if (this.agentEnd === undefined) return;
    nativeAddon().closeFd(this.agentEnd);
    this.agentEnd = undefined;
  }
}

/** What the supervisor needs to give each HAProxy it starts its own admin channel (AdminChannels, or a fake). */
export interface AdminChannelSource {
  /** A channel for a process about to start. */
  open(): OpenedChannel;
  /** The process behind `channel` (`haproxyPid`) answers and is the current one: commands go to it from now on. */
  activate(channel: OpenedChannel, haproxyPid?: number): void;
}

export interface OpenedChannel extends RuntimeApi {
  readonly haproxyEnd: number;
  releaseHaproxyEnd(): void;
  close(): void;
}

/** Where the keeper of the current HAProxy's channel is recorded, for the next agent. */
interface KeeperRecord {
  readonly haproxyPid: number;
  readonly keeperPid: number;
}

export interface AdminChannelsOptions {
  /** The read-only socket with a path (`haproxy.socket_path`): reads while no channel is known. */
  readonly observer: RuntimeApi;
  /** Where the keeper is recorded (in the state dir); "" = no keeper (a takeover then reloads once). */
  readonly keeperFile: string;
  readonly timeoutMs?: number;
}

/**
 * The runtime API of whichever HAProxy is current: commands go to its admin channel.
 *
 * A channel must outlive the agent, or a restarted agent could not change a running HAProxy without a reload (and a
 * kill -9 would take the agent's end along). So each current channel's agent end is also held by a keeper: a
 * `tail --pid=<haproxy> -f /dev/null` that inherits it as fd 3, does nothing else and exits soon after its HAProxy,
 * recorded in `keeperFile` with the HAProxy pid. The
 * next agent copies the end from the keeper (pidfd_getfd, as it copies HAProxy's listeners) and checks that the
 * HAProxy it adopted answers on it. HAProxy itself never holds the agent's end. When a newer HAProxy answers, the
 * previous keeper is stopped.
 *
 * Without a usable keeper (gone, or the check fails), reads (`show …`) go to the read-only `observer` socket and
 * anything else is refused: the agent's first change then reloads — seamlessly — and the new process comes with a
 * channel.
 */
export class AdminChannels extends RuntimeCommands implements AdminChannelSource, AdminChannelSet {
  private current: AdminChannel | undefined;
  private keeper: ChildProcess | number | undefined;
  private readonly observer: RuntimeApi;
  private readonly timeoutMs: number;

  constructor(private readonly opts: AdminChannelsOptions) {
    super();
    this.observer = opts.observer;
    this.timeoutMs = opts.timeoutMs ?? 5000;
  }

  /** Whether the current HAProxy has an admin channel (false after a takeover, until the next start or reload). */
  get connected(): boolean {
    return this.current !== undefined;
  }

  open(): AdminChannel {
    return new AdminChannel(this.timeoutMs);
  }

  activate(channel: OpenedChannel, haproxyPid?: number): void {
    if (!(channel instanceof AdminChannel)) throw new TypeError('AdminChannels.activate: not one of its channels');
    if (this.current === channel) return;
    // The old process soft-stops without its channel: a datagram pair whose peer closed does not wake it.
    this.current?.close();
    this.stopKeeper();
    this.current = channel;
    if (haproxyPid !== undefined) this.startKeeper(channel, haproxyPid);
  }

  /**
   * After a takeover of HAProxy `haproxyPid`: the channel its keeper holds, if the keeper is the one recorded for that
   * process and HAProxy answers on it with that pid. Returns why not otherwise (the agent then has no channel).
   */
  async recover(haproxyPid: number): Promise<string | undefined> {
    let record: KeeperRecord;
    try {
      record = JSON.parse(readFileSync(this.opts.keeperFile, 'utf8')) as KeeperRecord;
    } catch (err) {
      return `no keeper record (${(err as Error).message})`;
    }
    if (record.haproxyPid !== haproxyPid) return `the keeper record is for HAProxy pid ${record.haproxyPid}`;
    const keeperPid = record.keeperPid;
    if (!Number.isInteger(keeperPid) || keeperPid <= 0 || !alive(keeperPid) || !isKeeper(keeperPid, haproxyPid))
      return `keeper pid ${keeperPid} is not running`;
    let fd: number | null;
    try {
      fd = nativeAddon().dupFrom(keeperPid, 3);
    } catch (err) {
      return `cannot copy the channel from keeper pid ${keeperPid}: ${(err as Error).message}`;
    }
    if (fd === null) return `keeper pid ${keeperPid} holds no channel`;
    const channel = new AdminChannel(this.timeoutMs, fd);
    const answered = await channel.pid().catch((err: Error) => err);
    if (answered !== haproxyPid) {
      channel.close();
      return `HAProxy did not answer on the kept channel (${answered instanceof Error ? answered.message : `pid ${answered}`})`;
    }
    this.current?.close();
    this.current = channel;
    this.keeper = keeperPid;
    return undefined;
  }

  command(cmd: string): Promise<string> {
    if (this.current) return this.current.command(cmd);
    if (/^show /.test(cmd) && refusedCommand(cmd) === undefined) return this.observer.command(cmd);
    return Promise.reject(
      new RuntimeApiError(
        `"${cmd}": no admin channel to the running HAProxy (taken over from a previous agent, whose end of the channel is gone); the next reload opens one`,
      ),
    );
  }

  /** Stops the keeper and closes the channel (the agent stops HAProxy). */
  close(): void {
    this.stopKeeper();
    this.current?.close();
    this.current = undefined;
  }

  /** Leaves the keeper running for the next agent (a hand-over); closes only this process's copy. */
  release(): void {
    this.keeper = undefined;
    this.current?.close();
    this.current = undefined;
  }

  /** Stops the keeper a previous agent recorded, if it still runs (its HAProxy is gone or was not taken over). */
  stopRecordedKeeper(): void {
    try {
      const { keeperPid, haproxyPid } = JSON.parse(readFileSync(this.opts.keeperFile, 'utf8')) as KeeperRecord;
      if (Number.isInteger(keeperPid) && keeperPid > 0 && isKeeper(keeperPid, haproxyPid))
        process.kill(keeperPid, 'SIGKILL');
    } catch {
      // no record, or the keeper is gone
    }
  }

  private startKeeper(channel: AdminChannel, haproxyPid: number): void {
    if (this.opts.keeperFile === '' || channel.end === undefined) return;
    try {
      const child: ChildProcess = spawn(KEEPER_PROGRAM, keeperArgs(haproxyPid), {
        stdio: ['ignore', 'ignore', 'ignore', channel.end],
      });
      child.on('error', () => undefined); // no keeper: a takeover reloads once
      child.unref();
      this.keeper = child;
      if (child.pid === undefined) return; // the spawn failed ('error' follows)
      const tmp = `${this.opts.keeperFile}.tmp`;
      writeFileSync(tmp, JSON.stringify({ haproxyPid, keeperPid: child.pid } satisfies KeeperRecord), { mode: 0o600 });
      renameSync(tmp, this.opts.keeperFile);
    } catch {
      // No keeper (spawn or write failed): a takeover reloads once.
    }
  }

  private stopKeeper(): void {
    const k = this.keeper;
    this.keeper = undefined;
    if (k === undefined) return;
    try {
      if (typeof k === 'number') process.kill(k, 'SIGKILL');
      else k.kill('SIGKILL');
    } catch {
      // gone already
    }
  }
}

/** The keeper holds fd 3, does nothing else, and exits within a second of its HAProxy (coreutils `tail --pid`). */
const KEEPER_PROGRAM = 'tail';
const keeperArgs = (haproxyPid: number) => [`--pid=${haproxyPid}`, '-f', '/dev/null'];

/** Whether `pid` is the keeper of HAProxy `haproxyPid` (a recycled pid runs something else). */
function isKeeper(pid: number, haproxyPid: number): boolean {
  try {
    const argv = readFileSync(`/proc/${pid}/cmdline`, 'utf8').split('\0').slice(0, 4);
    return /(^|\/)tail$/.test(argv[0] ?? '') && argv.slice(1).join(' ') === keeperArgs(haproxyPid).join(' ');
  } catch {
    return false;
  }
}
