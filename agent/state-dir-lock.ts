import { ftruncateSync, readFileSync, writeSync } from 'node:fs';
import * as path from 'node:path';
import { ConfigError, errorMessage } from '../common/platform/errors';
import { nativeAddon } from './haproxy/native';

/**
 * One agent per `agent.state_dir`: two agents started at once would both take the running HAProxy over and both
 * reload it. The lock is an flock on `<state_dir>/agent.lock` (which also records the holder's pid): the kernel
 * releases it when the holder exits, a kill -9 included, so a stale lock never blocks the next agent.
 */
export class StateDirLock {
  private constructor(
    private fd: number | undefined,
    private second?: number,
  ) {}

  /**
   * Takes the lock of `agent.state_dir` and the one of `haproxy.config_path` (the takeover finds HAProxy by its
   * config file: two agents with their own state_dir but one config_path would both take it over), or throws a
   * ConfigError naming what is in use and the agent that holds it.
   */
  static take(stateDir: string, configFile: string, haproxyConfig?: string): StateDirLock {
    const dirLock = StateDirLock.lock(path.join(stateDir, 'agent.lock'), `agent.state_dir ${stateDir}`, configFile);
    if (haproxyConfig === undefined) return dirLock;
    try {
      const cfgLock = StateDirLock.lock(`${haproxyConfig}.lock`, `haproxy.config_path ${haproxyConfig}`, configFile);
      return new StateDirLock(dirLock.fd, cfgLock.fd);
    } catch (err) {
      dirLock.release();
      throw err;
    }
  }

  private static lock(lockPath: string, what: string, configFile: string): StateDirLock {
    let fd: number;
    try {
      fd = nativeAddon().lockFile(lockPath);
    } catch (err) {
      if ((err as { code?: string }).code === 'ELOCKED') {
        let holder = '';
        try {
          holder = readFileSync(lockPath, 'utf8').trim();
        } catch {
          // unreadable: the message goes without the pid
        }
        throw new ConfigError(
          `${configFile}: ${what} is in use by another agent${/^\d+$/.test(holder) ? ` (pid ${holder})` : ''}: one agent per state_dir and config_path (two would both take the running HAProxy over and reload it)`,
        );
      }
      throw new ConfigError(`${configFile}: ${what}: cannot lock ${lockPath}: ${errorMessage(err)}`, {
        cause: err,
      });
    }
    ftruncateSync(fd, 0);
    writeSync(fd, `${process.pid}\n`, 0);
    return new StateDirLock(fd);
  }

  /** Lets the next agent in (stop, hand-over); the process's exit does the same. */
  release(): void {
    for (const fd of [this.fd, this.second]) if (fd !== undefined) nativeAddon().closeFd(fd);
    this.fd = this.second = undefined;
  }
}
